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
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring
from typing import Any, cast

from .jobs import canonical_json
from .matrix import AxisValue
from .render import CompiledTemplate, TemplateSet
from .schemas import Pricing
from .validate import RequestValidator

__all__ = ["Kernel"]

Picks = tuple[AxisValue, ...]
Field = Callable[[Picks, int], str | None]  # a field's '"name":<json>' for a job, None: not plain
Units = Callable[[Picks, int], int]
Text = Callable[[Picks, int, str, str], str | None]  # (picks, repeat index, job id, key) -> text, None: not plain


class _Bail(Exception):
    """A template the kernel leaves to the general path for every job."""


class _Ref:
    """Where a reference's root comes from, for one tuple of matrix keys: a constant (a var,
    the recipe's name), the combination's pick at ``index``, or the job (``repeat_index``,
    and in file names ``job_id``, ``short_key``, ``image_index``)."""

    __slots__ = ("const", "index", "job")

    def __init__(self, const: Any = None, index: int = -1, job: str = "") -> None:
        self.const, self.index, self.job = const, index, job


_NOT_PLAIN = object()


def _walk(value: Any, attrs: tuple[str, ...]) -> Any:
    """``value.a.b`` through mapping keys, as the general path's lookups do; else _NOT_PLAIN
    (Jinja decides what it means: an error, or an attribute of the value)."""
    for attr in attrs:
        if type(value) is not dict or attr not in value:
            return _NOT_PLAIN
        value = value[attr]
    return value


class Kernel:
    """The compiled per-job work of one plan (see the module docs)."""

    def __init__(self, recipe_name: str, vars_: Mapping[str, Any], fields: list[tuple[str, CompiledTemplate]],
                 filename: CompiledTemplate, validator: RequestValidator, pricing: Pricing, app_ref: str) -> None:
        self.recipe_name, self.vars = recipe_name, vars_
        self.fields = sorted(fields, key=lambda item: item[0])  # canonical JSON sorts the keys
        self.filename_leaf = filename
        self.validator, self.pricing = validator, pricing
        self.returned = pricing.images_returned_per_task
        self.head = '{"app":' + canonical_json(app_ref) + ',"input":{'
        self._bindings: dict[tuple[str, ...], _Binding | None] = {}
        self._last: tuple[tuple[str, ...], _Binding | None] | None = None

    @classmethod
    def build(cls, recipe_name: str, vars_: Mapping[str, Any], templates: TemplateSet, filename: CompiledTemplate,
              validator: RequestValidator, pricing: Pricing, app_ref: str) -> Kernel | None:
        """The kernel for these templates, or None when they are not plain."""
        fields = templates.flat()
        if fields is None or validator.checks_whole:
            return None
        for name, leaf in fields:
            if not isinstance(name, str) or name in validator.file_fields:  # local files: read and hashed
                return None
            if leaf.kind != "const" and leaf.parts is None:
                return None
        return cls(recipe_name, vars_, fields, filename, validator, pricing, app_ref)

    def binding(self, keys: tuple[str, ...]) -> _Binding | None:
        """The fields compiled for combinations of these matrix keys (None: not plain)."""
        last = self._last
        if last is not None and last[0] is keys:
            return last[1]
        if keys in self._bindings:
            found = self._bindings[keys]
        else:
            try:
                found = _Compiler(self, keys).binding()
            except _Bail:
                found = None
            self._bindings[keys] = found
        self._last = (keys, found)
        return found

    def resolve(self, root: str, index: Mapping[str, int], filename: bool) -> _Ref:
        """Where ``root`` comes from, as the template context would give it."""
        if filename and root in ("job_id", "short_key"):
            return _Ref(job=root)
        if filename and root == "image_index":  # the name is made for a job's first image
            return _Ref(const=0)
        if root == "recipe":
            return _Ref(const=self.recipe_name)
        if root == "repeat_index":
            return _Ref(job=root)
        if root in index:
            return _Ref(index=index[root])
        if root in self.vars:
            return _Ref(const=self.vars[root])
        raise _Bail(root)  # undefined here: the general path says so, per job

    def request(self, picks: Picks, r: int, binding: _Binding) -> tuple[str, int] | None:
        """The job's content key and billed units, or None: leave the job to the general path."""
        pieces = binding.pieces.copy()
        for slot, field in binding.varying:
            piece = field(picks, r)
            if piece is None:
                return None
            pieces[slot] = piece
        units = binding.units if binding.units >= 0 else binding.units_of(picks, r)
        if units > self.returned:  # the general path warns
            return None
        blob = self.head + ",".join(pieces) + '},"repeat_index":' + str(r) + "}"
        return hashlib.sha256(blob.encode("utf-8")).hexdigest(), units


class _Binding:
    """A kernel's fields, units and file name compiled for one tuple of matrix keys."""

    __slots__ = ("filename", "pieces", "units", "units_of", "varying")

    def __init__(self, pieces: list[str], varying: list[tuple[int, Field]], units: int | Units,
                 filename: Text | None) -> None:
        # the request's '"name":<json>' pieces in key order: the constant ones written in, the others made per job
        self.pieces, self.varying = pieces, varying
        self.units, self.units_of = (units, _no_units) if isinstance(units, int) else (-1, units)
        self.filename = filename


class _Compiler:
    """Compiles a kernel's templates for one tuple of matrix keys (see ``binding``)."""

    def __init__(self, kernel: Kernel, keys: tuple[str, ...]) -> None:
        self.kernel = kernel
        self.index = {k: i for i, k in enumerate(keys)}
        self.values: dict[str, Any] = {}  # field -> its value, when it is the same for every job

    def binding(self) -> _Binding:
        """The binding; raises ``_Bail`` when no job of these keys is plain."""
        kernel = self.kernel
        pieces: list[str] = []
        varying: list[tuple[int, Field]] = []
        for name, leaf in kernel.fields:
            piece = self._field(name, leaf)
            if piece is None:  # refused for every job: the general path says why
                raise _Bail(name)
            if isinstance(piece, str):
                pieces.append(piece)
            else:
                varying.append((len(pieces), piece))
                pieces.append("")
        units = self._units()
        if isinstance(units, int) and units > kernel.returned:  # every job warns
            raise _Bail(kernel.pricing.quantity_field)
        try:
            filename: Text | None = self._filename(kernel.filename_leaf)
        except _Bail:
            filename = None
        return _Binding(pieces, varying, units, filename)

    # --- request fields ---

    def _piece(self, name: str) -> Callable[[Any], str | None]:
        """value -> '"name":<canonical JSON>' when the schema accepts it, else None."""
        accept = self.kernel.validator.acceptor(name)
        head = encode_basestring(name) + ":"

        def piece(value: Any) -> str | None:
            if value is _NOT_PLAIN or not accept(value):
                return None
            try:
                return head + canonical_json(value)
            except Exception:  # not JSON data: the general path fails as it does
                return None

        return piece

    def _field(self, name: str, leaf: CompiledTemplate) -> str | Field | None:
        """The field's piece when it is the same for every job (None: refused), else a function."""
        piece = self._piece(name)
        if leaf.kind == "const":
            self.values[name] = leaf.source
            return piece(leaf.source)
        assert leaf.parts is not None
        if leaf.kind == "name":
            assert isinstance(leaf.parts[0], tuple)
            return self._name_field(name, leaf.parts[0], piece)
        text, reads = self._text(leaf.parts, filename=False)
        accept = self.kernel.validator.acceptor(name)
        head = encode_basestring(name) + ":"

        def text_field(picks: Picks, r: int) -> str | None:
            value = text(picks, r, "", "")
            if value is None or not accept(value):
                return None
            return head + encode_basestring(value)  # what canonical_json gives for text

        return text_field if reads is None else _while_same(text_field, reads)

    def _name_field(self, name: str, ref: tuple[str, ...], piece: Callable[[Any], str | None]) -> str | Field | None:
        where = self.kernel.resolve(ref[0], self.index, filename=False)
        attrs = ref[1:]
        if not where.job and where.index < 0:
            value = self.values[name] = _walk(where.const, attrs)
            return piece(value)
        known: dict[Any, tuple[Any, str | None]] = {}  # pick id (or repeat index) -> (pick kept alive, piece)
        if where.job:  # repeat_index

            def repeat_field(_picks: Picks, r: int) -> str | None:
                found = known.get(r)
                if found is None:
                    found = known[r] = (r, piece(_walk(r, attrs)))
                return found[1]

            return repeat_field
        i = where.index

        def pick_field(picks: Picks, _r: int) -> str | None:
            pick = picks[i]
            found = known.get(id(pick))
            if found is None:
                found = known[id(pick)] = (pick, piece(_walk(pick.value, attrs)))
            return found[1]

        return pick_field

    def _units(self) -> int | Units:
        """The billed units: a number when they are the same for every job."""
        pricing = self.kernel.pricing
        field = pricing.quantity_field
        leaf = dict(self.kernel.fields).get(field)
        if leaf is None or field in self.values:
            return pricing.quantity({field: self.values[field]} if leaf is not None else {})
        if leaf.kind == "text":  # text is never a number: the default quantity
            return pricing.quantity({field: ""})
        assert leaf.parts is not None and isinstance(leaf.parts[0], tuple)
        where = self.kernel.resolve(leaf.parts[0][0], self.index, filename=False)
        attrs = leaf.parts[0][1:]
        if where.job:
            return lambda _picks, r: pricing.quantity({field: _walk(r, attrs)})
        i = where.index
        return lambda picks, _r: pricing.quantity({field: _walk(picks[i].value, attrs)})

    # --- text: literals and references ---

    def _text(self, parts: tuple[str | tuple[str, ...], ...], filename: bool) -> tuple[Text, list[int] | None]:
        """A renderer of text parts (``str()`` of each reference; stripped in a file name), and
        the picks it reads when nothing else in it varies."""
        out: list[str] = []  # the literals (and constant references), with a slot for each part that varies
        picked: list[tuple[int, int, tuple[str, ...], dict[int, tuple[AxisValue, str | None]]]] = []
        per_job: list[tuple[int, str, tuple[str, ...]]] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            where = self.kernel.resolve(part[0], self.index, filename)
            attrs = part[1:]
            if where.job:
                per_job.append((len(out), where.job, attrs))
                out.append("")
            elif where.index >= 0:
                picked.append((len(out), where.index, attrs, {}))
                out.append("")
            else:
                value = _walk(where.const, attrs)
                if value is _NOT_PLAIN:
                    raise _Bail(part)
                out.append(str(value))
        if not picked and not any(attrs for _slot, _name, attrs in per_job):
            return _job_text(out, per_job, strip=filename), None

        def text(picks: Picks, r: int, job_id: str, key: str) -> str | None:
            filled = out.copy()
            for slot, i, attrs, known in picked:
                pick = picks[i]
                found = known.get(id(pick))  # str() of the value, once per pick (kept alive here)
                if found is None:
                    value = _walk(pick.value, attrs)
                    found = known[id(pick)] = (pick, None if value is _NOT_PLAIN else str(value))
                if found[1] is None:
                    return None
                filled[slot] = found[1]
            for slot, name, attrs in per_job:
                value = _walk(r if name == "repeat_index" else job_id if name == "job_id" else key[:10], attrs)
                if value is _NOT_PLAIN:
                    return None
                filled[slot] = str(value)
            return "".join(filled).strip() if filename else "".join(filled)

        return text, (None if per_job else [i for _slot, i, _attrs, _known in picked])

    def _filename(self, leaf: CompiledTemplate) -> Text:
        """The job's output name (stripped), as ``str()`` of the rendered filename template."""
        if leaf.kind == "const":
            name = str(leaf.source).strip()
            return lambda _picks, _r, _job_id, _key: name
        if leaf.parts is None:
            raise _Bail(leaf.source)
        return self._text(leaf.parts, filename=True)[0]


def _no_units(_picks: Picks, _r: int) -> int:  # pragma: no cover - the units are a constant then
    raise AssertionError("constant units")


def _job_text(out: list[str], per_job: list[tuple[int, str, tuple[str, ...]]], strip: bool) -> Text:
    """Text of literals and the job's own values (the default file name, ``{{ job_id }}_{{ short_key }}_0``)."""
    fields = {"job_id": "{0}", "short_key": "{1}", "repeat_index": "{2}"}
    names = {slot: fields[name] for slot, name, _attrs in per_job}
    template = "".join(names[i] if i in names else part.replace("{", "{{").replace("}", "}}")
                       for i, part in enumerate(out))
    fill = template.format

    def text(_picks: Picks, r: int, job_id: str, key: str) -> str:
        return fill(job_id, key[:10], r)

    def stripped(_picks: Picks, r: int, job_id: str, key: str) -> str:
        return fill(job_id, key[:10], r).strip()

    return stripped if strip else text


def _while_same(field: Field, reads: list[int]) -> Field:
    """``field``, answering again at once while the picks it reads stay the same (the last
    axes vary fastest: a text of the first axes is the same for every value of the others)."""
    last: list[Any] = [None, None]  # the picks read (kept alive: compared by identity), the answer
    if len(reads) == 1:
        (i,) = reads

        def same_one(picks: Picks, r: int) -> str | None:
            pick = picks[i]
            if pick is not last[0]:
                last[0], last[1] = pick, field(picks, r)
            return cast(str | None, last[1])

        return same_one
    if len(reads) == 2:
        i, j = reads

        def same_two(picks: Picks, r: int) -> str | None:
            seen = last[0]
            if seen is None or picks[i] is not seen[0] or picks[j] is not seen[1]:
                last[0], last[1] = (picks[i], picks[j]), field(picks, r)
            return cast(str | None, last[1])

        return same_two

    def same_field(picks: Picks, r: int) -> str | None:
        read = [picks[i] for i in reads]
        seen = last[0]
        if seen is None or not all(a is b for a, b in zip(read, seen, strict=True)):
            last[0], last[1] = read, field(picks, r)
        return cast(str | None, last[1])

    return same_field
