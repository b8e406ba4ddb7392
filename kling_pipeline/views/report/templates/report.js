
// Facet switching. Without this script every facet is shown, one after another.
(function () {
  "use strict";
  var controls = document.getElementById("facet-controls");
  if (!controls) { return; }
  var selects = Array.prototype.slice.call(controls.querySelectorAll("select"));
  var facets = Array.prototype.slice.call(document.querySelectorAll("section.facet"));
  var shownNote = document.getElementById("facet-shown");
  var index = document.getElementById("facet-index");

  function matches(facet) {
    return selects.every(function (select) {
      return select.value === "" || facet.getAttribute("data-f-" + select.getAttribute("data-axis")) === select.value;
    });
  }

  function apply() {
    var shown = 0;
    facets.forEach(function (facet) {
      var ok = matches(facet);
      facet.hidden = !ok;
      if (ok) { shown += 1; }
    });
    if (shownNote) {
      shownNote.textContent = shown === 1 ? "1 of " + facets.length + " facets shown"
        : shown + " of " + facets.length + " facets shown";
    }
  }

  function fromHash() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var target = id ? document.getElementById(id) : null;
    if (!target || facets.indexOf(target) < 0) { return; }
    selects.forEach(function (select) {
      select.value = target.getAttribute("data-f-" + select.getAttribute("data-axis")) || "";
    });
  }

  selects.forEach(function (select) { select.addEventListener("change", apply); });
  window.addEventListener("hashchange", function () { fromHash(); apply(); });
  controls.hidden = false;
  if (index) { index.hidden = true; }
  fromHash();
  apply();
}());
