"""Typed identifiers and the Matrix user ID grammar."""

from __future__ import annotations

import re
from typing import NewType

from bridge.errors import MatrixIdInvalid

UserID = NewType("UserID", str)
RoomID = NewType("RoomID", str)
EventID = NewType("EventID", str)
SessionID = NewType("SessionID", str)
TicketRef = NewType("TicketRef", str)

# https://spec.matrix.org/v1.16/appendices/#user-identifiers: the historical grammar allows any
# printable ASCII except ':' in the localpart; new IDs use [a-z0-9._=/+-]. The server name is a
# hostname, an IPv4 literal or a bracketed IPv6 literal, with an optional port.
_LOCALPART = r"[\x21-\x39\x3b-\x7e]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
_HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*"
_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_IPV6 = r"\[[0-9A-Fa-f:.]{2,45}\]"
_SERVER_NAME = rf"(?:{_IPV4}|{_IPV6}|{_HOSTNAME})(?::\d{{1,5}})?"
_USER_ID = re.compile(rf"@({_LOCALPART}):({_SERVER_NAME})")


def parse_user_id(text: str) -> UserID:
    """Return the Matrix user ID in `text`, trimmed, or raise MatrixIdInvalid.

    Raises:
        MatrixIdInvalid: with a message saying what is wrong.
    """
    candidate = text.strip()
    if not candidate:
        raise MatrixIdInvalid("Enter your Matrix ID, for example @name:example.org.")
    if len(candidate.encode()) > 255:
        raise MatrixIdInvalid("A Matrix ID is at most 255 bytes long.")
    if not candidate.startswith("@"):
        raise MatrixIdInvalid("A Matrix ID starts with @, for example @name:example.org.")
    if ":" not in candidate:
        raise MatrixIdInvalid(
            "A Matrix ID names its server after a colon, for example @name:example.org."
        )
    if _USER_ID.fullmatch(candidate) is None:
        raise MatrixIdInvalid(
            "This is not a valid Matrix ID: use @name:server with no spaces, for example "
            "@name:example.org."
        )
    return UserID(candidate)


def server_of(user_id: UserID) -> str:
    """The server name of a (valid) Matrix user ID."""
    return user_id.split(":", 1)[1]


def is_user_id(text: str) -> bool:
    try:
        parse_user_id(text)
    except MatrixIdInvalid:
        return False
    return True


def agent_map(value: dict[str, str], whose: str) -> dict[str, str]:
    """A helpdesk-agent -> Matrix ID map, keys normalised as the webhook's agent is looked up.

    Raises:
        ValueError: naming the agents not mapped to a valid Matrix user ID.
    """
    bad = [key for key, user_id in value.items() if not is_user_id(user_id)]
    if bad:
        raise ValueError(
            f"{', '.join(bad)}: map each of {whose} agents to a Matrix user ID like "
            "@alice:example.org"
        )
    return {key.strip().lower(): user_id for key, user_id in value.items()}
