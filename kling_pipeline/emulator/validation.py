"""Checking a ``POST /apps/run`` body: the keys, the app reference, the webhook and the input."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, ValidationError

from ..core.schemas import AppSpec
from .ident import new_id
from .outputs import resolve_ref
from .problems import Problem

if TYPE_CHECKING:
    from .apps import ServedApp

__all__ = ["RUN_KEYS", "InputChecker", "RunRequest", "is_loopback_url", "parse_run_body"]

RUN_KEYS = frozenset(
    {
        "app", "input", "webhook", "setup", "function", "metadata", "wait", "stream",
        "infra", "workers", "session", "session_timeout", "run_at",
    }
)  # fmt: skip
_FILE_PATH = re.compile(r"^/files/([0-9a-z]+)$")


@dataclass(frozen=True, slots=True)
class RunRequest:
    version: str | None
    function: str
    input: dict[str, Any]
    webhook: str | None
    session_id: str | None


def is_loopback_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises for a bad port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    return is_loopback_host(host)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _path_text(error: ValidationError) -> str:
    text = ""
    for part in error.absolute_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(error: ValidationError, known: frozenset[str]) -> list[dict[str, str]]:
    path = _path_text(error)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [p for p in required if p not in instance and repr(p) in error.message]
        return [{"path": _join(path, p), "message": f"{p!r} is a required property"} for p in missing[:1]]
    if error.validator == "additionalProperties" and isinstance(instance, dict) and not path:
        extra = sorted(set(instance) - known)
        return [{"path": k, "message": f"unknown field {k!r}: the app's input has no such field"} for k in extra]
    return [{"path": path, "message": error.message}]


def _file_like(node: Any, root: Mapping[str, Any]) -> bool:
    """A schema for one file: ``format: file``, ``x-file`` limits, or a branch that is one
    (a URI string, or an object with a ``uri``)."""
    node = resolve_ref(node, root)
    if not isinstance(node, Mapping):
        return False
    if node.get("format") == "file" or "x-file" in node:
        return True
    branches = [resolve_ref(b, root) for b in (*node.get("anyOf", ()), *node.get("oneOf", ()))]
    return any(
        isinstance(b, Mapping) and (b.get("format") == "file" or "uri" in (b.get("properties") or {}))
        for b in branches
    )


def _file_shape(prop: Any, root: Mapping[str, Any]) -> str | None:
    """``one`` for a file field, ``many`` for a list of files, else None."""
    if _file_like(prop, root):
        return "one"
    node = resolve_ref(prop, root)
    branches = [node, *(resolve_ref(b, root) for b in node.get("anyOf", ()))] if isinstance(node, Mapping) else []
    arrays = [b for b in branches if isinstance(b, Mapping) and b.get("type") == "array"]
    return "many" if any(_file_like(b.get("items"), root) for b in arrays) else None


class InputChecker:
    """Validates an input against the app's schema, then its file references (single or lists)."""

    def __init__(self, spec: AppSpec) -> None:
        schema = dict(spec.input_schema)
        self._validator = Draft202012Validator(schema)
        properties = schema.get("properties", {})
        self._known = frozenset(properties)
        self._limits: dict[str, Mapping[str, Any]] = {name: prop.get("x-file", {}) for name, prop in properties.items()}
        shapes = {name: _file_shape(prop, schema) for name, prop in properties.items()}
        self._file_fields = tuple((name, shape) for name, shape in shapes.items() if shape is not None)

    def _references(self, value: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
        """(path, field, reference) of each file reference given as a string."""
        for name, shape in self._file_fields:
            ref = value.get(name)
            if shape == "one" and isinstance(ref, str):
                yield name, name, ref
            elif shape == "many" and isinstance(ref, list):
                yield from ((f"{name}[{i}]", name, r) for i, r in enumerate(ref) if isinstance(r, str))

    def violations(
        self, value: object, own_netloc: str, file_ready: Callable[[str], bool] | None
    ) -> list[dict[str, str]]:
        """Everything wrong with ``value`` (empty when it is acceptable); file references are
        checked only when ``file_ready`` is given."""
        errors: list[dict[str, str]] = []
        for error in self._validator.iter_errors(value):
            errors.extend(_describe(error, self._known))
        if isinstance(value, dict) and file_ready is not None:
            for path, _, ref in self._references(value):
                problem = self._file_problem(ref, own_netloc, file_ready)
                if problem:
                    errors.append({"path": path, "message": problem})
        errors.sort(key=lambda e: (e["path"], e["message"]))
        return errors

    def own_files(self, value: Mapping[str, Any], own_netloc: str) -> list[tuple[str, str, Mapping[str, Any]]]:
        """(path, file id, the field's ``x-file`` limits) for each input file this server stores."""
        found = []
        for path, name, ref in self._references(value):
            parts = urlsplit(ref)
            match = _FILE_PATH.match(parts.path)
            if parts.netloc == own_netloc and match is not None:
                found.append((path, match.group(1), self._limits.get(name, {})))
        return found

    @staticmethod
    def _file_problem(ref: str, own_netloc: str, file_ready: Callable[[str], bool]) -> str | None:
        if ref.startswith("data:"):
            return "data: URIs are refused by Kling; upload the file first (POST /files) and pass its uri"
        try:
            parts = urlsplit(ref)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            return "must be an http(s) URL: an uploaded file's uri or a public URL"
        match = _FILE_PATH.match(parts.path)
        if parts.netloc == own_netloc and (match is None or not file_ready(match.group(1))):
            return f"no uploaded file at {ref} (upload it with POST /files and PUT its bytes first)"
        return None


def parse_run_body(
    body: Mapping[str, Any],
    lookup: Callable[[str, str | None], ServedApp],
    own_netloc: str,
    file_ready: Callable[[str], bool],
) -> tuple[ServedApp, RunRequest]:
    """The app version a run names and its request, or a ``Problem`` (400/404/422) saying
    what is wrong; ``lookup`` answers 404 for an unknown app or version."""
    unknown = sorted(set(body) - RUN_KEYS)
    if unknown:
        raise Problem(400, "invalid_request", "Unknown request keys", f"unknown key(s): {', '.join(unknown)}")
    app = body.get("app")
    if not isinstance(app, str) or not app:
        raise Problem(400, "invalid_request", "Missing app", "'app' must be 'namespace/name[@version]'")
    name, _, version = app.partition("@")
    function = body.get("function")
    if ":" in version:
        version, _, function = version.partition(":")
    served = lookup(name, version if "@" in app else None)
    if function not in (None, "", "run"):
        raise Problem(404, "not_found", "Function not found", f"app {name!r} has no function {function!r}")
    webhook = body.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not is_loopback_url(webhook)):
        raise Problem(
            400,
            "invalid_webhook",
            "Webhook refused",
            "the emulator delivers webhooks only to loopback http(s) URLs (127.0.0.1, localhost, ::1)",
        )
    value = body.get("input", {})
    errors = served.checker.violations(value, own_netloc, file_ready)
    if errors:
        detail = "; ".join(f"{e['path'] or '(input)'}: {e['message']}" for e in errors)
        raise Problem(422, "invalid_input", "Input does not match the app's schema", detail, errors=errors)
    session = body.get("session")
    session_id = None
    if session == "new":
        session_id = "sess_" + new_id()
    elif isinstance(session, str) and session:
        session_id = session
    if not isinstance(value, dict):  # the schema's "type": "object" already said so
        raise Problem(422, "invalid_input", "Input does not match the app's schema", "input must be an object")
    return served, RunRequest(version or None, "run", value, webhook, session_id)
