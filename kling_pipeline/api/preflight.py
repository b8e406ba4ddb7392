"""Before the first submit: does the service have the app (and the pinned version) at all?

One read (``GET /apps/{namespace}/{name}``) instead of sending every job into a 404.
Only a clear "no" stops the run; when the service cannot be asked (unreachable, an
error of its own), the submits find out as they would have.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import Position
from ..core.schemas import AppRef
from .apierrors import ApiError, NotFound
from .client import ApiClient

__all__ = ["AppUnavailable", "check_app"]


class AppUnavailable(ApiError):
    """The service has no such app, or not the pinned version: nothing was sent."""

    invalid = True
    fatal = True


def _versions(app: dict[str, Any]) -> set[str]:
    """The version ids the app document names (its current one and any list of versions)."""
    found = {str(app[k]) for k in ("version_id",) if app.get(k)}
    current = app.get("version")
    if isinstance(current, dict) and current.get("id"):
        found.add(str(current["id"]))
    for item in app.get("versions") or []:
        if isinstance(item, dict) and item.get("id"):
            found.add(str(item["id"]))
        elif isinstance(item, str):
            found.add(item)
    return found


async def check_app(api: ApiClient, ref: AppRef, where: Position | None = None) -> None:
    """Raise ``AppUnavailable`` when the service says the app, or its pinned version, does not exist."""
    at = f"{where}: " if where else ""
    try:
        app = await api.get_app(ref.name)
    except NotFound:
        raise AppUnavailable(f"{at}the service has no app {ref.name!r} (GET /apps/{ref.name} answered 404); "
                             "check the recipe's app — nothing was sent", status=404) from None
    except ApiError as exc:
        if exc.fatal:
            raise
        return  # cannot tell now: the submits will
    versions = _versions(app)
    listed = bool(app.get("versions"))
    if ref.version and versions and ref.version not in versions and listed:
        known = ", ".join(sorted(versions))
        raise AppUnavailable(f"{at}app {ref.name} has no version {ref.version!r} at the service (it lists: {known}); "
                             f"re-pin the recipe's app, e.g. {ref.name}@{app.get('version_id') or known.split(',')[0]} "
                             "— nothing was sent", status=404)
