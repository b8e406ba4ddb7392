// Facet jump: one select per facet axis picks a facet; "open" goes to the grid page that holds it.
// Without this script the controls stay hidden and the list of pages below does the same job.
(function () {
  "use strict";
  var controls = document.getElementById("facet-jump");
  if (!controls) { return; }
  var selects = Array.prototype.slice.call(controls.querySelectorAll("select"));
  var links = Array.prototype.slice.call(document.querySelectorAll("#contents a[data-first]"));
  var note = document.getElementById("facet-note");

  function codes(text) {
    return text === "" ? [] : text.split(".").map(Number);
  }

  function compare(a, b) {
    for (var i = 0; i < a.length; i += 1) {
      if (a[i] !== b[i]) { return a[i] - b[i]; }
    }
    return 0;
  }

  function target() {
    var wanted = selects.map(function (select) { return Number(select.value); });
    for (var i = 0; i < links.length; i += 1) {
      var first = codes(links[i].getAttribute("data-first"));
      var last = codes(links[i].getAttribute("data-last"));
      if (compare(first, wanted) <= 0 && compare(wanted, last) <= 0) {
        return links[i].getAttribute("href") + "#f-" + wanted.join("-");
      }
    }
    return null;
  }

  document.getElementById("facet-open").addEventListener("click", function () {
    var href = target();
    if (href) {
      window.location.href = href;
    } else {
      note.textContent = "no job has these values";
    }
  });
  selects.forEach(function (select) {
    select.addEventListener("change", function () { note.textContent = ""; });
  });
  controls.hidden = false;
}());
