"""apierrors: every documented answer mapped to its class, every httpx transport failure to
``ConnectFailed`` (provably not sent) or ``ResponseLost`` (maybe sent), and Retry-After."""

from __future__ import annotations

import httpx
import pytest

from kling_pipeline.api.apierrors import (
    ApiError,
    AppGone,
    AuthFailed,
    BadRequest,
    ConnectFailed,
    NotFound,
    PaymentRequired,
    RateLimited,
    RequirementsNotMet,
    ResponseLost,
    ServerError,
    TransportError,
    Unavailable,
    from_problem,
    parse_retry_after,
    translate_transport,
)
from kling_pipeline.api.wire import Problem
from kling_pipeline.core.errors import KlingError

# status, code -> class, created, fatal, retryable
MAPPING = [
    (401, "unauthorized", AuthFailed, False, True, False),
    (403, "forbidden", AuthFailed, False, True, False),
    (402, "payment_required", PaymentRequired, False, True, False),
    (402, "payment_method_required", PaymentRequired, False, True, False),
    (402, "limit_exceeded", PaymentRequired, False, True, False),
    (412, "requirements_not_met", RequirementsNotMet, False, True, False),
    (410, "app_retired", AppGone, False, True, False),
    (429, "rate_limited", RateLimited, False, False, True),
    (503, "app_maintenance", Unavailable, False, False, True),
    (503, "", Unavailable, False, False, True),
    (500, "entitlement_unavailable", Unavailable, False, False, True),
    (500, "internal", ServerError, None, False, False),
    (500, "", ServerError, None, False, False),
    (502, "", ServerError, None, False, False),
    (504, "", ServerError, None, False, False),
    (599, "", ServerError, None, False, False),
    (404, "not_found", NotFound, False, False, False),
    (400, "bad_request", BadRequest, False, False, False),
    (422, "validation_failed", BadRequest, False, False, False),
    (409, "invalid_transition", BadRequest, False, False, False),
    (413, "", BadRequest, False, False, False),
]


@pytest.mark.parametrize(("status", "code", "cls", "created", "fatal", "retryable"), MAPPING)
def test_from_problem_classes(status: int, code: str, cls: type[ApiError], created: bool | None, fatal: bool,
                              retryable: bool) -> None:
    exc = from_problem(Problem(status, code, "some detail"), 4.0, "submit")
    assert type(exc) is cls
    assert (exc.created, exc.fatal, exc.retryable) == (created, fatal, retryable)
    assert (exc.status, exc.code, exc.retry_after) == (status, code, 4.0)
    assert isinstance(exc, KlingError)


@pytest.mark.parametrize(("problem", "message"), [
    (Problem(401, "", "bad key"), "submit: the API key was refused (HTTP 401); check INFERENCE_API_KEY"),
    (Problem(403, "forbidden", ""), "submit: the API key was refused (HTTP 403); check INFERENCE_API_KEY"),
    (Problem(402, "payment_required", "no balance"),
     "submit: no balance (HTTP 402, payment_required) — add balance or raise the plan limit; "
     "nothing more is submitted"),
    (Problem(412, "requirements_not_met", "missing integration",
             ({"message": "Connect your OpenAI account"}, {"action": "set secret X"}, {"key": "k"})),
     "submit: missing integration (HTTP 412, requirements_not_met): Connect your OpenAI account; set secret X; "
     "{'key': 'k'}"),
    (Problem(412, "requirements_not_met", "missing integration"),
     "submit: missing integration (HTTP 412, requirements_not_met)"),
    (Problem(410, "app_retired", "version gone"),
     "submit: version gone (HTTP 410, app_retired) — the app version is retired; re-pin the recipe's app"),
    (Problem(429, "rate_limited", "slow down"), "submit: slow down (HTTP 429, rate_limited)"),
    (Problem(500, "", ""), "submit: HTTP 500 (HTTP 500)"),
    (Problem(404, "", "no such task"), "submit: no such task (HTTP 404)"),
])
def test_from_problem_messages(problem: Problem, message: str) -> None:
    assert str(from_problem(problem, None, "submit")) == message


def transport_errors() -> list[type[httpx.HTTPError]]:
    """Every subclass of httpx's transport and timeout errors (recursively), and DecodingError."""
    found: list[type[httpx.HTTPError]] = []
    todo: list[type[httpx.HTTPError]] = [httpx.TransportError, httpx.TimeoutException, httpx.DecodingError]
    while todo:
        cls = todo.pop()
        if cls not in found:
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


NOT_SENT = {httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol}


def test_the_walk_finds_httpx_s_whole_family() -> None:
    names = {c.__name__ for c in transport_errors()}
    assert names >= {"TransportError", "TimeoutException", "ConnectTimeout", "ReadTimeout", "WriteTimeout",
                     "PoolTimeout", "NetworkError", "ConnectError", "ReadError", "WriteError", "CloseError",
                     "ProxyError", "UnsupportedProtocol", "ProtocolError", "LocalProtocolError",
                     "RemoteProtocolError", "DecodingError"}


@pytest.mark.parametrize("cls", transport_errors(), ids=lambda c: c.__name__)
def test_every_transport_error_is_translated(cls: type[httpx.HTTPError]) -> None:
    with pytest.raises(TransportError) as info, translate_transport("submit"):
        raise cls("it broke\nsecond line")
    exc = info.value
    if cls in NOT_SENT:
        assert type(exc) is ConnectFailed
        assert (exc.created, exc.retryable, exc.fatal) == (False, True, False)
        assert str(exc) == "submit: cannot connect: it broke"
    else:  # the request may have reached the server: its outcome is unknown
        assert type(exc) is ResponseLost
        assert (exc.created, exc.retryable, exc.fatal) == (None, False, False)
        if issubclass(cls, httpx.TimeoutException):
            assert str(exc) == f"submit: no answer in time ({cls.__name__})"
        else:
            assert str(exc) == "submit: connection lost before the answer: it broke"
    # the httpx exception (which may carry the request, and so its headers) is not chained
    assert exc.__cause__ is None and exc.__suppress_context__


def test_transport_error_without_text_is_named() -> None:
    with pytest.raises(ConnectFailed, match=r"^download a\.png: cannot connect: ConnectError$"), \
            translate_transport("download a.png"):
        raise httpx.ConnectError("")


def test_long_transport_messages_are_cut() -> None:
    with pytest.raises(ResponseLost) as info, translate_transport("x"):
        raise httpx.ReadError("y" * 1000)
    assert str(info.value) == "x: connection lost before the answer: " + "y" * 200


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(ValueError, match=r"^not a transport error$"), translate_transport("x"):
        raise ValueError("not a transport error")
    api = RateLimited("r")
    with pytest.raises(RateLimited) as info, translate_transport("x"):
        raise api
    assert info.value is api


def test_nothing_raised_nothing_translated() -> None:
    with translate_transport("x"):
        value = 1
    assert value == 1


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None), ("", None), ("5", 5.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0), ("1e3", 1000.0),
    ("99999", 3600.0), ("inf", 3600.0), ("nan", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("soon", None),
])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(("retry_after", "reset", "seconds"), [
    (None, "7", 7.0),  # X-RateLimit-Reset in seconds, when Retry-After is absent
    ("2", "7", 2.0),  # Retry-After wins
    (None, "1800000030", 30.0),  # an epoch timestamp: seconds from now
    (None, "1799999990", 0.0),  # already past
    (None, "soon", None),
])
def test_rate_limit_reset_is_honoured_when_retry_after_is_absent(retry_after: str | None, reset: str,
                                                                 seconds: float | None) -> None:
    assert parse_retry_after(retry_after, reset, now=1_800_000_000.0) == seconds
