"""The homeserver's answers turned into sealroom's exceptions, one way for every caller.

A 4xx is a refusal (`MatrixRequestFailed`, carrying the M_* code); a 5xx, a non-JSON answer or
no answer at all means "try later" (`HomeserverUnavailable`). Raw answers (status and JSON body)
and nio's error values (`ErrorResponse`) both end up here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nio import ErrorResponse

from bridge.errors import HomeserverUnavailable, MatrixRequestFailed


def unreachable(what: str, err: BaseException) -> HomeserverUnavailable:
    """For `raise unreachable(what, err) from err`: names the failure's type, never its text."""
    return HomeserverUnavailable(f"{what}: {type(err).__name__}")


def refused(what: str, errcode: str, error: str | None = None) -> MatrixRequestFailed:
    """The homeserver said no; `error` is its explanation, left out when None."""
    text = f"{what}: {errcode}" if error is None else f"{what}: {errcode} {error}"
    return MatrixRequestFailed(text.rstrip(), errcode)


def raise_for_status(
    what: str, status: int, data: Mapping[str, Any], *, quote_error: bool = True
) -> None:
    """Raise for a 4xx or 5xx answer; return for anything below 400.

    `quote_error=False` leaves the homeserver's `error` text out of the message: some answers
    repeat what was asked for (Synapse: "No such registration token: <token>").

    Raises:
        HomeserverUnavailable: a 5xx answer.
        MatrixRequestFailed: a 4xx answer.
    """
    if status >= 500:
        raise HomeserverUnavailable(f"{what}: the homeserver answered {status}")
    if status >= 400:
        error = str(data.get("error", "")) if quote_error else None
        raise refused(what, str(data.get("errcode", status)), error)


def remote_server_failed(response: Any) -> bool:
    """Whether nio's error value is Synapse's 502/504: the *other* server in a federated call
    (an invite to its user, say) did not answer ours."""
    if not isinstance(response, ErrorResponse):
        return False
    status = getattr(getattr(response, "transport_response", None), "status", None)
    return status in (502, 504)


def raise_for_error(response: Any, what: str) -> None:
    """Raise for one of nio's error values (a `*Error` response); return for anything else."""
    if not isinstance(response, ErrorResponse):
        return
    transport = getattr(response, "transport_response", None)
    status = getattr(transport, "status", None)
    errcode = response.status_code
    if errcode is None or (isinstance(status, int) and status >= 500) or errcode == 502:
        raise HomeserverUnavailable(f"{what}: the homeserver answered with an error ({status})")
    raise refused(what, str(errcode), response.message)
