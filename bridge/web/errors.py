"""The one place where errcodes become HTTP statuses and public messages."""

from __future__ import annotations

from typing import Any

from bridge.errors import (
    AgentUnknown,
    ApiDisabled,
    ApiTokenInvalid,
    HomeserverUnavailable,
    IntegrationUnknown,
    InviteGone,
    MatrixIdInvalid,
    MatrixServerUnreachable,
    MatrixUserUnknown,
    PayloadInvalid,
    PayloadTooLarge,
    PurgeUnavailable,
    RegistrationDisabled,
    RegistrationNotVerified,
    SealroomError,
    SessionClosed,
    SessionUnknown,
    SignatureInvalid,
    TicketUnknown,
    TooManyAttempts,
)


class RequestTimeout(SealroomError):
    """The client did not send its request body in time (HTTP only, hence defined here)."""

    errcode = "SEALROOM_REQUEST_TIMEOUT"
    default_message = "The request body did not arrive in time. Send it again."


STATUS: dict[type[SealroomError], int] = {
    SignatureInvalid: 401,
    IntegrationUnknown: 404,
    TicketUnknown: 404,
    SessionUnknown: 404,
    PayloadInvalid: 400,
    MatrixIdInvalid: 400,
    MatrixUserUnknown: 400,
    AgentUnknown: 422,
    PayloadTooLarge: 413,
    InviteGone: 410,
    SessionClosed: 409,
    PurgeUnavailable: 409,
    HomeserverUnavailable: 503,
    MatrixServerUnreachable: 502,
    RegistrationDisabled: 403,
    RegistrationNotVerified: 403,
    TooManyAttempts: 429,
    RequestTimeout: 408,
    ApiTokenInvalid: 401,
    ApiDisabled: 403,
}


def status_for(err: SealroomError) -> int:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def public_message(err: SealroomError) -> str:
    """What a caller may read. A homeserver failure's detail ("minting a registration token:
    TimeoutError") is for the log only: the answer says what happened in general terms."""
    if isinstance(err, HomeserverUnavailable):
        return HomeserverUnavailable.default_message + " Try again in a few minutes."
    return err.message


def body_for(err: SealroomError, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "errcode": err.errcode,
        "error": public_message(err),
        "request_id": request_id,
    }
    if isinstance(err, PayloadInvalid) and err.fields:
        body["fields"] = err.fields
    return body
