"""retry: each policy retries exactly what it names, as often as it says — run without sleeping
(stamina's test mode keeps the attempts and drops the waits)."""

from __future__ import annotations

import pytest
import stamina

from kling_pipeline.api.apierrors import (
    AuthFailed,
    BadRequest,
    ConnectFailed,
    DownloadFailed,
    NotFound,
    ResponseLost,
    ServerError,
)
from kling_pipeline.api.retry import DOWNLOAD, FOLLOW, UPLOAD, Policy, StillRunning, call


@pytest.fixture(autouse=True)
def no_sleeping() -> object:
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


async def calls_until(policy: Policy, failures: list[Exception]) -> int:
    """Run a call that fails with ``failures`` in turn, then succeeds; how many calls were made."""
    made = 0

    async def fn() -> int:
        nonlocal made
        made += 1
        if failures:
            raise failures.pop(0)
        return made

    assert await call(policy, fn) == made
    return made


@pytest.mark.anyio
@pytest.mark.parametrize("error", [ConnectFailed("no route"), ResponseLost("reset")])
async def test_uploads_repeat_transient_failures(error: Exception) -> None:
    assert await calls_until(UPLOAD, [error, error, error]) == 4


@pytest.mark.anyio
async def test_uploads_give_up_after_four_attempts() -> None:
    with pytest.raises(ConnectFailed):
        await calls_until(UPLOAD, [ConnectFailed("x")] * 5)


@pytest.mark.anyio
@pytest.mark.parametrize("error", [BadRequest("422"), AuthFailed("401"), ServerError("500")])
async def test_uploads_never_repeat_an_answer_that_will_not_change(error: Exception) -> None:
    with pytest.raises(type(error)):
        await calls_until(UPLOAD, [error])


@pytest.mark.anyio
async def test_downloads_repeat_a_failed_fetch_but_not_a_file_that_can_never_pass() -> None:
    assert await calls_until(DOWNLOAD, [DownloadFailed("HTTP 500"), ResponseLost("cut")]) == 3
    with pytest.raises(DownloadFailed, match="too big"):
        await calls_until(DOWNLOAD, [DownloadFailed("too big", permanent=True)])


@pytest.mark.anyio
async def test_following_looks_again_while_the_task_runs_or_a_read_fails_but_not_when_it_is_gone() -> None:
    assert await calls_until(FOLLOW, [StillRunning(), ServerError("502"), StillRunning()]) == 4
    with pytest.raises(NotFound):
        await calls_until(FOLLOW, [NotFound("no task")])
