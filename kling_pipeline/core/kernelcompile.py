"""Compiling a kernel's templates for one tuple of matrix keys (see ``kernel``).

Each request field becomes its canonical-JSON piece when it is the same for every job,
or a ``Varying`` that works it out: once per pick it reads (``ByPick``), again only when
the picks it reads change (``WhileSame``: the last axes vary fastest), or per job
(``Each``). ``request_function`` then writes one Python function per binding that puts a
job's pieces together and hashes them — the loop over the fields unrolled and the
lookups inline, as ``dataclasses`` writes ``__init__`` — so that a job costs a few
dictionary lookups and one hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

from .jobs import canonical_json
from .matrix import AxisValue
from .render import CompiledTemplate

if TYPE_CHECKING:
    from .kernel import Kernel

__all__ = ["NOT_PLAIN", "Bail", "Binding", "ByPick", "Compiler", "Each", "Ref", "WhileSame", "request_function",
           "walk"]

Picks = tuple[AxisValue, ...]
Field = Callable[[Picks, int], str | None]  # a field's '"name":<json>' for a job, None: not plain
Units = Callable[[Picks, int], int]
Text = Callable[[Picks, int, str, str], str | None]  # (picks, repeat index, job id, key) -> text, None: not plain
Request = Callable[[Picks, int], tuple[str, int] | None]  # -> (content key, units), None: not plain


class Bail(Exception):
    """A template the kernel leaves to the general path for every job."""


class Ref:
    """Where a reference's root comes from, for one tuple of matrix keys: a constant (a var,
    the recipe's name), the combination's pick at ``index``, or the job (``repeat_index``,
    and in file names ``job_id``, ``short_key``)."""

    __slots__ = ("const", "index", "job")

    def __init__(self, const: Any = None, index: int = -1, job: str = "") -> None:
        self.const, self.index, self.job = const, index, job


NOT_PLAIN = object()


def walk(value: Any, attrs: tuple[str, ...]) -> Any:
    """``value.a.b`` through mapping keys, as the general path's lookups do; else NOT_PLAIN
    (Jinja decides what it means: an error, or an attribute of the value)."""
    for attr in attrs:
        if type(value) is not dict or attr not in value:
            return NOT_PLAIN
        value = value[attr]
    return value


class ByPick:
    """A field whose piece depends on one pick: ``fill(pick)`` works it out and keeps it in
    ``known`` (by the pick's id; the pick is kept alive, so the id stays its own)."""

    __slots__ = ("fill", "index", "known")

    def __init__(self, index: int, make: Callable[[AxisValue], str | None]) -> None:
        self.index = index
        known: dict[int, str | None] = {}
        alive: list[AxisValue] = []

        def fill(pick: AxisValue) -> str | None:  # (refers to no self: a plan leaves no cycles to collect)
            if id(pick) not in known:
                alive.append(pick)
            found = known[id(pick)] = make(pick)
            return found

        self.known, self.fill = known, fill


class WhileSame:
    """A field whose piece depends on the picks at ``reads``: ``refill`` works it out again
    when one of them is not the last one seen (``last``: those picks, then the piece)."""

    __slots__ = ("last", "reads", "refill")

    def __init__(self, reads: list[int], field: Field) -> None:
        self.reads = reads
        last: list[Any] = [None] * (len(reads) + 1)

        def refill(picks: Picks, r: int) -> str | None:
            found = field(picks, r)
            last[:] = [*(picks[i] for i in reads), found]
            return found

        self.last, self.refill = last, refill


class Each:
    """A field worked out for every job."""

    __slots__ = ("field",)

    def __init__(self, field: Field) -> None:
        self.field = field


Varying = ByPick | WhileSame | Each


class Binding:
    """A kernel's request and file name compiled for one tuple of matrix keys."""

    __slots__ = ("filename", "request")

    def __init__(self, request: Request, filename: Text | None) -> None:
        self.request, self.filename = request, filename


class Compiler:
    """Compiles a kernel's templates for one tuple of matrix keys (see ``binding``)."""

    def __init__(self, kernel: Kernel, keys: tuple[str, ...]) -> None:
        self.kernel = kernel
        self.index = {k: i for i, k in enumerate(keys)}
        self.values: dict[str, Any] = {}  # field -> its value, when it is the same for every job

    def binding(self) -> Binding:
        """The binding; raises ``Bail`` when no job of these keys is plain."""
        kernel = self.kernel
        pieces: list[str | Varying] = []
        for name, leaf in kernel.fields:
            piece = self._field(name, leaf)
            if piece is None:  # refused for every job: the general path says why
                raise Bail(name)
            pieces.append(piece)
        units = self._units()
        if isinstance(units, int) and units > kernel.returned:  # every job warns
            raise Bail(kernel.pricing.quantity_field)
        try:
            filename: Text | None = self._filename(kernel.filename_leaf)
        except Bail:
            filename = None
        return Binding(request_function(kernel.head, pieces, units, kernel.returned), filename)

    # --- request fields ---

    def _piece(self, name: str) -> Callable[[Any], str | None]:
        """value -> '"name":<canonical JSON>' when the schema accepts it, else None."""
        accept = self.kernel.validator.acceptor(name)
        head = encode_basestring(name) + ":"

        def piece(value: Any) -> str | None:
            if value is NOT_PLAIN or not accept(value):
                return None
            try:
                return head + canonical_json(value)
            except Exception:  # not JSON data: the general path fails as it does
                return None

        return piece

    def _field(self, name: str, leaf: CompiledTemplate) -> str | Varying | None:
        """The field's piece when it is the same for every job (None: refused), else how to work it out."""
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

        if reads is None:
            return Each(text_field)
        return WhileSame(reads, text_field) if reads else text_field((), 0)  # no reads: the same for every job

    def _name_field(self, name: str, ref: tuple[str, ...], piece: Callable[[Any], str | None]) -> str | Varying | None:
        where = self.kernel.resolve(ref[0], self.index, filename=False)
        attrs = ref[1:]
        if not where.job and where.index < 0:
            value = self.values[name] = walk(where.const, attrs)
            return piece(value)
        if where.job:  # repeat_index
            by_repeat: dict[int, str | None] = {}

            def repeat_field(_picks: Picks, r: int) -> str | None:
                if r not in by_repeat:
                    by_repeat[r] = piece(walk(r, attrs))
                return by_repeat[r]

            return Each(repeat_field)
        return ByPick(where.index, lambda pick: piece(walk(pick.value, attrs)))

    def _units(self) -> int | Units:
        """The billed units: a number when they are the same for every job."""
        pricing = self.kernel.pricing
        field = pricing.quantity_field
        leaf = dict(self.kernel.fields).get(field)
        if leaf is None or field in self.values:
            return pricing.quantity({field: self.values[field]} if leaf is not None else {})
        if leaf.kind == "text":  # a text's value is never a number: the default quantity, unless its length counts
            if pricing.quantity_of != "value":
                raise Bail(field)
            return pricing.quantity({field: ""})
        assert leaf.parts is not None and isinstance(leaf.parts[0], tuple)
        where = self.kernel.resolve(leaf.parts[0][0], self.index, filename=False)
        attrs = leaf.parts[0][1:]
        if where.job:
            return lambda _picks, r: pricing.quantity({field: walk(r, attrs)})
        i = where.index
        return lambda picks, _r: pricing.quantity({field: walk(picks[i].value, attrs)})

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
                value = walk(where.const, attrs)
                if value is NOT_PLAIN:
                    raise Bail(part)
                out.append(str(value))
        if not picked and not any(attrs for _slot, _name, attrs in per_job):
            return _job_text(out, per_job, strip=filename), (None if per_job else [])

        def text(picks: Picks, r: int, job_id: str, key: str) -> str | None:
            filled = out.copy()
            for slot, i, attrs, known in picked:
                pick = picks[i]
                found = known.get(id(pick))  # str() of the value, once per pick (kept alive here)
                if found is None:
                    value = walk(pick.value, attrs)
                    found = known[id(pick)] = (pick, None if value is NOT_PLAIN else str(value))
                if found[1] is None:
                    return None
                filled[slot] = found[1]
            for slot, name, attrs in per_job:
                value = walk(r if name == "repeat_index" else job_id if name == "job_id" else key[:10], attrs)
                if value is NOT_PLAIN:
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
            raise Bail(leaf.source)
        return self._text(leaf.parts, filename=True)[0]


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


def request_function(head: str, pieces: list[str | Varying], units: int | Units, returned: int) -> Request:
    """``(picks, r) -> (content key, units)``, or None when the job is not plain: the canonical
    JSON of ``{"app": ..., "input": <the pieces>, "repeat_index": r}``, hashed. Written out
    as one function for these pieces; the generated text holds only names and indices —
    every value it uses is passed in ``scope``."""
    scope: dict[str, Any] = {"sha256": hashlib.sha256, "units_of": units, "RETURNED": returned}
    lines = ["def request(picks, r):"]
    blob: list[str] = []  # the expression: constants and pieces, in order
    text = head
    for n, piece in enumerate(pieces):
        text += "," if n else ""
        if isinstance(piece, str):
            text += piece
            continue
        scope[f"C{n}"] = text
        blob += [f"C{n}", f"v{n}"]
        text = ""
        if isinstance(piece, ByPick):
            scope[f"known{n}"], scope[f"fill{n}"] = piece.known, piece.fill
            lines += [f"    p = picks[{piece.index}]",
                      f"    v{n} = known{n}.get(id(p))",
                      f"    if v{n} is None:",
                      f"        v{n} = fill{n}(p)"]
        elif isinstance(piece, WhileSame):
            scope[f"last{n}"], scope[f"refill{n}"] = piece.last, piece.refill
            same = " and ".join(f"picks[{i}] is last{n}[{k}]" for k, i in enumerate(piece.reads)) or "True"
            lines += [f"    if {same}:",
                      f"        v{n} = last{n}[{len(piece.reads)}]",
                      "    else:",
                      f"        v{n} = refill{n}(picks, r)"]
        else:
            scope[f"field{n}"] = piece.field
            lines.append(f"    v{n} = field{n}(picks, r)")
        lines += [f"    if v{n} is None:", "        return None"]
    scope["TAIL"] = text + '},"repeat_index":'
    blob.append("TAIL")
    if isinstance(units, int):
        scope["UNITS"] = units
        lines.append("    units = UNITS")
    else:
        lines += ["    units = units_of(picks, r)", "    if units > RETURNED:", "        return None"]
    lines.append(f"    return sha256(({' + '.join(blob)} + str(r) + '}}').encode()).hexdigest(), units")
    exec(compile("\n".join(lines), "<kling_pipeline.kernel request>", "exec"), scope)  # noqa: S102
    request: Request = scope.pop("request")  # (its scope does not hold it: no cycle)
    return request
