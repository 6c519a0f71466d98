"""Expected failures of sealroom, each with a stable errcode.

No HTTP here: `bridge.web.errors` maps errcodes to statuses. Messages are meant for the person
who has to act on them and never contain a secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


class SealroomError(Exception):
    """Base of every expected failure."""

    errcode = "SEALROOM_ERROR"
    default_message = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class ConfigError(SealroomError):
    """The configuration file has one or more problems, each named by its key path."""

    errcode = "SEALROOM_CONFIG_INVALID"

    def __init__(self, problems: list[str], data_dir: Path | None = None) -> None:
        self.problems = problems
        # bot.data_dir when the bot's section is valid: check-config checks it in the same run.
        self.data_dir = data_dir
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


class SignatureInvalid(SealroomError):
    errcode = "SEALROOM_SIGNATURE_INVALID"
    default_message = "The webhook signature is missing or invalid."


class IntegrationUnknown(SealroomError):
    errcode = "SEALROOM_INTEGRATION_UNKNOWN"
    default_message = "No integration with this name is configured."


class PayloadInvalid(SealroomError):
    errcode = "SEALROOM_PAYLOAD_INVALID"
    default_message = "The request body is not valid."

    def __init__(self, message: str | None = None, fields: list[str] | None = None) -> None:
        self.fields = fields or []
        super().__init__(message)


class PayloadTooLarge(SealroomError):
    errcode = "SEALROOM_PAYLOAD_TOO_LARGE"
    default_message = "The request body is too large."


class TicketUnknown(SealroomError):
    errcode = "SEALROOM_TICKET_UNKNOWN"
    default_message = "There is no open secure session for this ticket."


class AgentUnknown(PayloadInvalid):
    """The webhook names an agent with no Matrix account mapped under `agents:`."""

    errcode = "SEALROOM_AGENT_UNKNOWN"
    default_message = "The agent is not mapped to a Matrix account in sealroom's configuration."


class InviteGone(SealroomError):
    """Used, expired, revoked or unknown: deliberately one error, so nobody learns which."""

    errcode = "SEALROOM_INVITE_GONE"
    default_message = (
        "This invite link can no longer be used: it was already used, it expired, or it never "
        "existed. Ask your support agent for a new link."
    )


class MatrixIdInvalid(SealroomError):
    errcode = "SEALROOM_MATRIX_ID_INVALID"
    default_message = "This is not a valid Matrix ID. It looks like @name:example.org."


class MatrixUserUnknown(SealroomError):
    """The Matrix ID is well-formed but no such account exists (checked before the link is
    spent, so the customer can correct it)."""

    errcode = "SEALROOM_MATRIX_USER_UNKNOWN"
    default_message = (
        "There is no account with this Matrix ID. Check it for typos (it looks like "
        "@name:example.org), or create an account; your link still works."
    )


class MatrixServerUnreachable(SealroomError):
    """The homeserver of a Matrix ID on another server did not answer ours (over federation).

    Not `HomeserverUnavailable`: sealroom's own homeserver is fine, and the person who typed
    the Matrix ID is the one who can act (check it, or try later).
    """

    errcode = "SEALROOM_MATRIX_SERVER_UNREACHABLE"

    def __init__(self, server: str = "", what: str | None = None) -> None:
        self.server = server
        named = f"The homeserver {server} (from your Matrix ID)" if server else "Your homeserver"
        if what is None:
            message = (
                f"{named} did not answer. Check the Matrix ID for typos, or try again in a few "
                "minutes; your link still works."
            )
        else:
            message = f"{what}: the homeserver {server} did not answer over federation"
        super().__init__(message)


class SessionClosed(SealroomError):
    errcode = "SEALROOM_SESSION_CLOSED"
    default_message = "This secure session is already closed."


class HomeserverUnavailable(SealroomError):
    """The homeserver could not be reached or answered with a server error; retry later."""

    errcode = "SEALROOM_HOMESERVER_UNAVAILABLE"
    default_message = "The Matrix homeserver is not reachable right now."


class MatrixRequestFailed(SealroomError):
    """The homeserver refused a request; `matrix_errcode` is its M_* code.

    `retry_after_ms` is how long a rate-limited caller (`M_LIMIT_EXCEEDED`) is asked to wait.
    """

    errcode = "SEALROOM_MATRIX_REQUEST_FAILED"

    def __init__(
        self, message: str, matrix_errcode: str | None = None, retry_after_ms: int | None = None
    ) -> None:
        self.matrix_errcode = matrix_errcode
        self.retry_after_ms = retry_after_ms
        super().__init__(message)


class RegistrationDisabled(SealroomError):
    errcode = "SEALROOM_REGISTRATION_DISABLED"
    default_message = (
        "Creating an account is not offered here. Use an existing Matrix account, or ask your "
        "support agent."
    )


class RegistrationNotVerified(SealroomError):
    """The account the page reports was not made with this invite's registration token."""

    errcode = "SEALROOM_REGISTRATION_NOT_VERIFIED"
    default_message = (
        "This account was not created with this invite. Create the account from this page, or "
        "use the 'I have a Matrix account' option."
    )


class TooManyAttempts(SealroomError):
    errcode = "SEALROOM_TOO_MANY_ATTEMPTS"
    default_message = "Too many attempts with this link. Ask your support agent for a new link."


class TicketSystemUnavailable(SealroomError):
    """The helpdesk's API could not be reached or answered with a server error; retry later."""

    errcode = "SEALROOM_TICKET_SYSTEM_UNAVAILABLE"
    default_message = "The helpdesk's API is not reachable right now."


class TicketSystemRefused(SealroomError):
    """The helpdesk's API refused for good, or the call is not allowed (host, redirect)."""

    errcode = "SEALROOM_TICKET_SYSTEM_REFUSED"
    default_message = "The helpdesk's API refused the request."


class SessionUnknown(SealroomError):
    errcode = "SEALROOM_SESSION_UNKNOWN"
    default_message = "There is no secure session with this id."


class PurgeUnavailable(SealroomError):
    """A closed session's room cannot be purged: no `homeserver.admin_token` is configured."""

    errcode = "SEALROOM_PURGE_UNAVAILABLE"
    default_message = (
        "This room can only be wiped through the homeserver's admin API: set "
        "homeserver.admin_token (or admin_token_file) in sealroom's configuration, restart it, "
        "and ask again."
    )


class ApiDisabled(SealroomError):
    """The session API is off because no `api.token` is configured."""

    errcode = "SEALROOM_API_DISABLED"
    default_message = (
        "The session API is turned off. To turn it on, set api.token (or api.token_file) in "
        "sealroom's configuration."
    )


class ApiTokenInvalid(SealroomError):
    """The request has no bearer token or not the one configured in `api.token`."""

    errcode = "SEALROOM_API_TOKEN_INVALID"
    default_message = (
        "Send the session API token configured in api.token as 'Authorization: Bearer <token>'."
    )
