"""The per-job work of a plan, compiled for plain request templates.

Most request templates are a flat mapping of constants, plain references
(``{{ ratio }}``, ``{{ style.text }}``) and text made of literals and references
(``"A {{ subject }}, {{ style.text }}"``): they render without Jinja's runtime (see
``render``). For those, each field's value depends only on the matrix values it
names, so the kernel works out once per such value what the general path works out
per job — the field's value, its check against the app schema, its canonical JSON —
and a job's content key is the hash of those pieces put together, without building
the template context or the request.

The kernel does what the general path (``build.Builder``) does, or nothing: whenever a
job is anything but plain — a reference that does not resolve through mapping keys, a
value the schema refuses (or its fast checks cannot decide), a value that is not JSON,
a billed quantity that warns — it answers None and the general path does that job,
with its messages. ``tests/core/test_kernel.py`` checks that both give the same plans.
The compiling is in ``kernelcompile``; ``Builder.run`` calls a binding's ``request``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .jobs import canonical_json
from .kernelcompile import Bail, Binding, Compiler, Ref
from .render import CompiledTemplate, TemplateSet
from .schemas import Pricing
from .validate import RequestValidator

__all__ = ["Kernel"]


class Kernel:
    """The compiled per-job work of one plan (see the module docs)."""

    def __init__(self, recipe_name: str, vars_: Mapping[str, Any], fields: list[tuple[str, CompiledTemplate]],
                 filename: CompiledTemplate, validator: RequestValidator, pricing: Pricing, app_ref: str,
                 returned: int) -> None:
        self.recipe_name, self.vars = recipe_name, vars_
        self.fields = sorted(fields, key=lambda item: item[0])  # canonical JSON sorts the keys
        self.filename_leaf = filename
        self.validator, self.pricing = validator, pricing
        self.returned = returned  # billed units above it warn: the general path does those jobs
        self.head = '{"app":' + canonical_json(app_ref) + ',"input":{'
        self._bindings: dict[tuple[str, ...], Binding | None] = {}
        self._last: tuple[tuple[str, ...], Binding | None] | None = None

    @classmethod
    def build(cls, recipe_name: str, vars_: Mapping[str, Any], templates: TemplateSet, filename: CompiledTemplate,
              validator: RequestValidator, pricing: Pricing, app_ref: str, returned: int) -> Kernel | None:
        """The kernel for these templates, or None when they are not plain."""
        fields = templates.flat()
        if fields is None or validator.checks_whole or pricing.rates:  # rates: a price that reads other fields
            return None
        for name, leaf in fields:
            if not isinstance(name, str) or name in validator.file_fields:  # local files: read and hashed
                return None
            if leaf.kind != "const" and leaf.parts is None:
                return None
        return cls(recipe_name, vars_, fields, filename, validator, pricing, app_ref, returned)

    def binding(self, keys: tuple[str, ...]) -> Binding | None:
        """The fields compiled for combinations of these matrix keys (None: not plain)."""
        last = self._last
        if last is not None and last[0] is keys:
            return last[1]
        if keys in self._bindings:
            found = self._bindings[keys]
        else:
            try:
                found = Compiler(self, keys).binding()
            except Bail:
                found = None
            self._bindings[keys] = found
        self._last = (keys, found)
        return found

    def resolve(self, root: str, index: Mapping[str, int], filename: bool) -> Ref:
        """Where ``root`` comes from, as the template context would give it."""
        if filename and root in ("job_id", "short_key"):
            return Ref(job=root)
        if filename and root == "image_index":  # the name is made for a job's first image
            return Ref(const=0)
        if root == "recipe":
            return Ref(const=self.recipe_name)
        if root == "repeat_index":
            return Ref(job=root)
        if root in index:
            return Ref(index=index[root])
        if root in self.vars:
            return Ref(const=self.vars[root])
        raise Bail(root)  # undefined here: the general path says so, per job
