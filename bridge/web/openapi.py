"""The OpenAPI 3.1 document of every HTTP endpoint, served at GET /api/v1/openapi.json.

Built from code so that it stays true: each operation names the errors its handler can raise and
their statuses come from `bridge.web.errors.STATUS`, the same table the middleware answers with.
`tests/web/test_openapi.py` checks that every route of the app is here and nothing else, and
runs schemathesis against it.
"""

from __future__ import annotations

import functools
import json
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
from bridge.session_queries import LIMIT_DEFAULT, LIMIT_MAX, WipeOutcome
from bridge.sessions import SessionState
from bridge.web.errors import RequestTimeout, status_for

Schema = dict[str, Any]

_NULLABLE_STRING: Schema = {"type": ["string", "null"]}
_TIME: Schema = {"type": "string", "format": "date-time"}
_NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
# Reading a body can fail on its own: unreadable or not JSON (400), too large, too slow.
_BODY_ERRORS: tuple[type[SealroomError], ...] = (PayloadInvalid, PayloadTooLarge, RequestTimeout)
_API_ERRORS: tuple[type[SealroomError], ...] = (ApiTokenInvalid, ApiDisabled)


def _object(properties: dict[str, Schema], *required: str, closed: bool = False) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# What a session in a list shows (bridge.session_queries.SessionSummary), and what its detail
# adds besides the audit trail. Closed objects: an unexpected field fails the schemathesis run.
_SUMMARY: dict[str, Schema] = {
    "id": {"type": "string", "format": "uuid"},
    "state": {"enum": [state.value for state in SessionState]},
    "integration": {"type": "string"},
    "ticket_ref": {"type": "string"},
    "agent_user_id": _NULLABLE_STRING,
    "customer_user_id": _NULLABLE_STRING,
    "room_id": _NULLABLE_STRING,
    "created_at": _TIME,
    "updated_at": _TIME,
    "expires_at": _TIME,
    "closed_at": _NULLABLE_TIME,
    "close_reason": _NULLABLE_STRING,
    "bot_left_at": _NULLABLE_TIME,
    "purged_at": _NULLABLE_TIME,
}
_DETAIL: dict[str, Schema] = {"agent_ref": {"type": "string"}, "room_alias": {"type": "string"}}

SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        {
            "errcode": {"type": "string", "pattern": "^SEALROOM_[A-Z_]+$"},
            "error": {"type": "string", "minLength": 1},
            "request_id": {"type": "string"},
            "fields": {"type": "array", "items": {"type": "string"}},
        },
        "errcode",
        "error",
        "request_id",
    ),
    "WebhookBody": _object(
        {
            "event": {"enum": ["open", "close"]},
            "ticket": _object(
                {
                    "id": {"type": ["string", "integer"]},
                    "subject": {"type": "string"},
                },
                "id",
            ),
            "agent": {
                "description": "The helpdesk's agent (id or e-mail, mapped under `agents:`); "
                'also {"email": ...} or {"id": ...}.',
                "type": ["string", "object"],
            },
            "customer": _object({"name": {"type": "string"}, "email": {"type": "string"}}),
        },
        "event",
        "ticket",
    ),
    "WebhookOpened": _object(
        {
            "session_id": {"type": "string", "format": "uuid"},
            "expires_at": _TIME,
            "session_expires_at": _TIME,
            "state": {"type": "string"},
            "invite_url": {
                "type": "string",
                "description": "Only in the first answer: the customer's single-use link.",
            },
            "replayed": {"const": True},
        },
        "session_id",
        "expires_at",
        "session_expires_at",
        "state",
    ),
    "WebhookClosing": _object(
        {
            "session_id": {"type": "string", "format": "uuid"},
            "state": {"const": "closing"},
            "replayed": {"const": True},
        },
        "session_id",
        "state",
    ),
    "InviteView": _object(
        {"ticket_ref": {"type": "string"}, "subject": {"type": "string"}, "expires_at": _TIME},
        "ticket_ref",
        "subject",
        "expires_at",
    ),
    "Redeemed": _object(
        {
            "user_id": {"type": "string"},
            "room_alias": {"type": "string"},
            "room_id": _NULLABLE_STRING,
            "homeserver": {"type": "string"},
            "matrix_to_url": {"type": "string"},
            "web_client_url": _NULLABLE_STRING,
        },
        "user_id",
        "room_alias",
        "room_id",
        "homeserver",
        "matrix_to_url",
        "web_client_url",
    ),
    "RegistrationStarted": _object(
        {
            "registration_token": {"type": "string"},
            "expires_at": _TIME,
            "homeserver_url": {"type": "string"},
            "server_name": {"type": "string"},
        },
        "registration_token",
        "expires_at",
        "homeserver_url",
        "server_name",
    ),
    "AuditEntry": _object(
        {
            "at": _TIME,
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "detail": {"type": "object"},
        },
        "at",
        "actor",
        "action",
        "detail",
        closed=True,
    ),
    "SessionSummary": _object(_SUMMARY, *_SUMMARY, closed=True),
    "SessionDetail": _object(
        {**_SUMMARY, **_DETAIL, "audit": {"type": "array", "items": _ref("AuditEntry")}},
        *_SUMMARY,
        *_DETAIL,
        "audit",
        closed=True,
    ),
    "SessionWipe": _object(
        {
            "outcome": {"enum": [outcome.value for outcome in WipeOutcome]},
            "session": _ref("SessionDetail"),
        },
        "outcome",
        "session",
        closed=True,
    ),
    "SessionPage": _object(
        {
            "sessions": {"type": "array", "items": _ref("SessionSummary")},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Send it back as `cursor` for the next, older page.",
            },
        },
        "sessions",
        "next_cursor",
        closed=True,
    ),
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*errors: type[SealroomError]) -> dict[str, Schema]:
    """Responses for the errors a handler can raise, by the status the middleware gives them,
    plus the 500 any handler can end in (never on purpose: the tests look for it)."""
    by_status: dict[int, list[str]] = {}
    for error in errors:
        by_status.setdefault(status_for(error()), []).append(error.errcode)
    by_status.setdefault(500, []).append("SEALROOM_INTERNAL")
    return {
        str(status): _json(_ref("Error"), ", ".join(sorted(set(codes))))
        for status, codes in sorted(by_status.items())
    }


def _json_body(schema: Schema) -> Schema:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _strings(*names: str, optional: tuple[str, ...] = ()) -> Schema:
    properties = {name: {"type": "string"} for name in (*names, *optional)}
    return _object(properties, *names)


_SESSION_ID: Schema = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The session's id (a UUID), as the open webhook's answer gave it.",
}
_BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _landing_post(
    summary: str, body: Schema, answer: Schema, *errors: type[SealroomError]
) -> Schema:
    return {
        "post": {
            "summary": summary,
            "tags": ["landing"],
            "requestBody": _json_body(body),
            "responses": {"200": _json(answer, "Done."), **_errors(*_BODY_ERRORS, *errors)},
        }
    }


PATHS: dict[str, Schema] = {
    "/hooks/{integration}": {
        "post": {
            "summary": "A helpdesk's webhook (Standard Webhooks): open or close a ticket's room",
            "tags": ["webhooks"],
            "parameters": [
                {
                    "name": "integration",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
                *(
                    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
                    for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
                ),
            ],
            "requestBody": _json_body(_ref("WebhookBody")),
            "responses": {
                "201": _json(_ref("WebhookOpened"), "A new secure session and its link."),
                "200": _json(_ref("WebhookOpened"), "The ticket's live session, a fresh link."),
                "202": _json(_ref("WebhookClosing"), "The session is being closed."),
                **_errors(
                    *_BODY_ERRORS,
                    IntegrationUnknown,
                    SignatureInvalid,
                    AgentUnknown,
                    TicketUnknown,
                    SessionClosed,
                ),
            },
        }
    },
    "/i": {
        "get": {
            "summary": "The customer's landing page (the invite token is in the URL fragment)",
            "tags": ["landing"],
            "responses": {
                "200": {
                    "description": "The page.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
                **_errors(),
            },
        }
    },
    "/branding/theme.css": {
        "get": {
            "summary": "The landing page's accent colour (config branding.accent_colour)",
            "tags": ["landing"],
            "responses": {
                "200": {
                    "description": "A stylesheet setting --accent.",
                    "content": {"text/css": {"schema": {"type": "string"}}},
                },
                **_errors(),
            },
        }
    },
    "/branding/logo": {
        "get": {
            "summary": "The organisation's logo (config branding.logo_file)",
            "tags": ["landing"],
            "responses": {
                "200": {
                    "description": "The logo file as configured.",
                    "content": {
                        media_type: {"schema": {"type": "string", "format": "binary"}}
                        for media_type in (
                            "image/png",
                            "image/svg+xml",
                            "image/jpeg",
                            "image/webp",
                        )
                    },
                },
                "404": _json(_ref("Error"), "SEALROOM_HTTP: no logo is configured"),
                **_errors(),
            },
        }
    },
    "/i/lookup": _landing_post(
        "What an invite is for, without spending it",
        _strings("token"),
        _ref("InviteView"),
        InviteGone,
    ),
    "/i/redeem": _landing_post(
        "Spend the invite for an existing Matrix account",
        _strings("token", "user_id"),
        _ref("Redeemed"),
        InviteGone,
        MatrixIdInvalid,
        MatrixUserUnknown,
        MatrixServerUnreachable,
        HomeserverUnavailable,
    ),
    "/i/register/start": _landing_post(
        "Mint a single-use registration token for this invite",
        _strings("token"),
        _ref("RegistrationStarted"),
        InviteGone,
        RegistrationDisabled,
        TooManyAttempts,
        HomeserverUnavailable,
    ),
    "/i/register/finish": _landing_post(
        "The account was made with the registration token: spend the invite for it",
        _strings("token", "user_id", "registration_token"),
        _ref("Redeemed"),
        InviteGone,
        MatrixIdInvalid,
        RegistrationDisabled,
        RegistrationNotVerified,
        HomeserverUnavailable,
    ),
    "/i/register/abandon": _landing_post(
        "The page was left halfway: revoke the registration token, or tell the agent",
        _strings("token", "registration_token", optional=("user_id",)),
        _object({"status": {"const": "noted"}}, "status"),
        InviteGone,
        MatrixIdInvalid,
        RegistrationDisabled,
        RegistrationNotVerified,
        HomeserverUnavailable,
    ),
    "/healthz": {
        "get": {
            "summary": "Alive",
            "tags": ["health"],
            "responses": {
                "200": _json(_object({"status": {"const": "ok"}}, "status"), "Alive."),
                **_errors(),
            },
        }
    },
    "/readyz": {
        "get": {
            "summary": "Ready: database, homeserver, sync, the bot's identity (and notes)",
            "tags": ["health"],
            "responses": {
                **{
                    str(status): _json(
                        _object(
                            {
                                "status": {"const": state},
                                "checks": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            },
                            "status",
                            "checks",
                        ),
                        "Each check: ok or why not.",
                    )
                    for status, state in ((200, "ready"), (503, "not ready"))
                },
                **_errors(),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "tags": ["health"],
            "responses": {
                "200": {
                    "description": "Prometheus text exposition.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(),
            },
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "summary": "This document",
            "tags": ["api"],
            "responses": {
                "200": _json({"type": "object"}, "The OpenAPI 3.1 document."),
                **_errors(),
            },
        }
    },
    "/api/v1/sessions": {
        "get": {
            "summary": "Secure sessions, newest first, a page at a time",
            "tags": ["sessions"],
            "security": _BEARER,
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"enum": [state.value for state in SessionState]},
                },
                {"name": "integration", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": LIMIT_MAX,
                        "default": LIMIT_DEFAULT,
                    },
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "`next_cursor` of the previous page.",
                },
            ],
            "responses": {
                "200": _json(_ref("SessionPage"), "A page of sessions."),
                **_errors(PayloadInvalid, *_API_ERRORS),
            },
        }
    },
    "/api/v1/sessions/{session_id}": {
        "get": {
            "summary": "One session with its audit trail (metadata only, never a secret)",
            "tags": ["sessions"],
            "security": _BEARER,
            "parameters": [_SESSION_ID],
            "responses": {
                "200": _json(_ref("SessionDetail"), "The session."),
                **_errors(SessionUnknown, *_API_ERRORS),
            },
        }
    },
    "/api/v1/sessions/{session_id}/close": {
        "post": {
            "summary": "Close a live session (the running service's job runner closes the room)",
            "tags": ["sessions"],
            "security": _BEARER,
            "parameters": [_SESSION_ID],
            "responses": {
                "202": _json(_ref("SessionDetail"), "The close is recorded; state: closing."),
                **_errors(SessionUnknown, SessionClosed, *_API_ERRORS),
            },
        }
    },
    "/api/v1/sessions/{session_id}/wipe": {
        "post": {
            "summary": "Wipe a session's room: close a live session (the whole wipe), or purge "
            "the room of one closed without a purge; asking again does no harm",
            "tags": ["sessions"],
            "security": _BEARER,
            "parameters": [_SESSION_ID],
            "responses": {
                "200": _json(
                    _ref("SessionWipe"),
                    "Nothing left to wipe (outcome already_wiped or no_room).",
                ),
                "202": _json(
                    _ref("SessionWipe"),
                    "The running service wipes the room now (outcome closing, "
                    "already_closing or purging).",
                ),
                **_errors(SessionUnknown, PurgeUnavailable, *_API_ERRORS),
            },
        }
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sealroom",
            "version": "1",
            "description": "Secure credential hand-off rooms on Matrix, driven by your helpdesk. "
            "Every error is JSON: errcode, error (a message for people), request_id.",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token configured in api.token.",
                }
            },
        },
    }


@functools.cache
def document_bytes() -> bytes:
    return json.dumps(document(), indent=2).encode()
