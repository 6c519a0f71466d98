"""Matrix user IDs, webhook payloads and invite tokens: the small parsers at sealroom's edges."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from bridge import invites
from bridge.errors import MatrixIdInvalid, PayloadInvalid
from bridge.helpdesk import payloads
from bridge.ids import is_user_id, parse_user_id

# -- Matrix user IDs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_id",
    [
        "@alice:example.org",
        "@alice:matrix.example.org:8448",
        "@bob:localhost",
        "@bob:localhost:8008",
        "@carol:127.0.0.1",
        "@carol:192.168.1.20:8448",
        "@dave:[::1]",
        "@dave:[2001:db8::1]:8448",
        "@new.style_id=1/2+3-x:example.org",
        "@Alice!#$%&'()*~:example.org",  # historical localparts: any printable ASCII but ':'
        "@1234:xn--bcher-kva.example",
    ],
)
def test_valid_user_ids_are_accepted(user_id: str) -> None:
    assert parse_user_id(user_id) == user_id
    assert is_user_id(user_id)


def test_surrounding_whitespace_is_trimmed() -> None:
    assert parse_user_id("  @alice:example.org\n") == "@alice:example.org"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        pytest.param("", "Enter your Matrix ID", id="empty"),
        pytest.param("   ", "Enter your Matrix ID", id="blank"),
        pytest.param("alice:example.org", "starts with @", id="missing-at"),
        pytest.param("alice@example.org", "starts with @", id="an-email-address"),
        pytest.param("@alice", "colon", id="missing-server"),
        pytest.param("@alice smith:example.org", "no spaces", id="space-in-localpart"),
        pytest.param("@alice:example .org", "no spaces", id="space-in-server"),
        pytest.param("@alice:", "@name:server", id="empty-server"),
        pytest.param("@:example.org", "@name:server", id="empty-localpart"),
        pytest.param("@alice:-bad-.org", "@name:server", id="bad-hostname"),
        pytest.param("@alice:example.org:port", "@name:server", id="bad-port"),
        pytest.param("@alice:[::1", "@name:server", id="unclosed-ipv6"),
        pytest.param("@al\u00e9ce:example.org", "@name:server", id="non-ascii-localpart"),
        pytest.param("@" + "a" * 250 + ":example.org", "255", id="too-long"),
    ],
)
def test_invalid_user_ids_are_refused_with_a_helpful_message(text: str, hint: str) -> None:
    with pytest.raises(MatrixIdInvalid) as info:
        parse_user_id(text)

    assert hint in info.value.message
    assert "example.org" in info.value.message or "255" in info.value.message
    assert not is_user_id(text)


def test_the_length_limit_is_255_bytes_including_the_sigil() -> None:
    server = ":example.org"
    longest = "@" + "a" * (255 - 1 - len(server)) + server
    assert len(longest) == 255

    assert parse_user_id(longest) == longest
    with pytest.raises(MatrixIdInvalid, match="255"):
        parse_user_id("@a" + longest[1:])


# -- webhook payloads -----------------------------------------------------------------------------


def body(data: object) -> bytes:
    return json.dumps(data).encode()


OPEN = {
    "event": "open",
    "ticket": {"id": "T-1", "subject": "VPN access"},
    "agent": "alice@example.com",
}


def test_a_complete_open_payload_is_parsed() -> None:
    parsed = payloads.parse(body(OPEN))

    assert parsed.event == "open"
    assert parsed.ticket.id == "T-1"
    assert parsed.ticket.subject == "VPN access"
    assert parsed.agent == "alice@example.com"


@pytest.mark.parametrize("ticket_id", [42, "42"])
def test_numeric_ticket_ids_are_accepted_as_strings(ticket_id: object) -> None:
    parsed = payloads.parse(body({**OPEN, "ticket": {"id": ticket_id}}))

    assert parsed.ticket.id == "42"


@pytest.mark.parametrize(
    "agent", [{"email": "alice@example.com"}, {"id": "alice@example.com"}, "alice@example.com"]
)
def test_the_agent_may_be_a_string_or_an_object(agent: object) -> None:
    assert payloads.parse(body({**OPEN, "agent": agent})).agent == "alice@example.com"


def test_close_needs_no_agent() -> None:
    parsed = payloads.parse(body({"event": "close", "ticket": {"id": 7}}))

    assert parsed.event == "close"
    assert parsed.ticket.id == "7"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param({"ticket": {"id": "T-1"}, "agent": "a"}, "event", id="missing-event"),
        pytest.param({**OPEN, "event": "reopen"}, "event", id="unknown-event"),
        pytest.param({**OPEN, "ticket": {"subject": "x"}}, "ticket.id", id="missing-ticket-id"),
        pytest.param({**OPEN, "ticket": {"id": ""}}, "ticket.id", id="empty-ticket-id"),
        pytest.param({**OPEN, "ticket": {"id": True}}, "ticket.id", id="boolean-ticket-id"),
        pytest.param({**OPEN, "ticket": {"id": None}}, "ticket.id", id="null-ticket-id"),
        pytest.param({**OPEN, "ticket": {"id": "x" * 256}}, "ticket.id", id="long-ticket-id"),
        pytest.param({"event": "open", "agent": "a"}, "ticket", id="missing-ticket"),
        pytest.param({**OPEN, "ticket": "T-1"}, "ticket", id="ticket-not-an-object"),
        pytest.param({"event": "open", "ticket": {"id": "T-1"}}, "agent", id="open-without-agent"),
        pytest.param({**OPEN, "agent": ""}, "agent", id="open-with-empty-agent"),
        pytest.param({**OPEN, "agent": {"name": "Alice"}}, "agent", id="agent-without-id"),
    ],
)
def test_errors_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(PayloadInvalid) as info:
        payloads.parse(body(data))

    assert field in info.value.fields
    assert field in info.value.message


def test_several_bad_fields_are_named_together() -> None:
    with pytest.raises(PayloadInvalid) as info:
        payloads.parse(body({"ticket": {}}))

    assert set(info.value.fields) == {"event", "ticket.id"}


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        pytest.param(b'{"event": "open",', "not valid JSON (line 1", id="truncated"),
        pytest.param(b"", "not valid JSON", id="empty"),
        pytest.param(b"event=open&ticket=1", "not valid JSON", id="form-encoded"),
        pytest.param(b'\xff\xfe{"event": 1}', "not valid JSON", id="not-utf8"),
        pytest.param(b"[1, 2]", "must be a JSON object", id="array"),
        pytest.param(b'"open"', "must be a JSON object", id="string"),
        pytest.param(b"42", "must be a JSON object", id="number"),
        pytest.param(b"null", "must be a JSON object", id="null"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_refused(raw: bytes, hint: str) -> None:
    with pytest.raises(PayloadInvalid, match=re.escape(hint)):
        payloads.parse(raw)


def test_unknown_fields_are_ignored_and_not_kept() -> None:
    parsed = payloads.parse(body({**OPEN, "password": "hunter2", "ticket": {"id": 1, "x": 2}}))

    assert "hunter2" not in repr(parsed)
    assert "hunter2" not in parsed.model_dump_json()


# -- invite tokens --------------------------------------------------------------------------------


def test_tokens_carry_256_bits_in_43_url_safe_characters() -> None:
    token = invites.mint_token()

    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert invites.looks_like_token(token)


def test_tokens_are_not_repeated() -> None:
    assert len({invites.mint_token() for _ in range(1000)}) == 1000


def test_the_stored_hash_is_sha256_hex() -> None:
    token = invites.mint_token()

    stored = invites.hash_token(token)

    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert token not in stored


def test_token_matches_its_own_hash_only() -> None:
    token, other = invites.mint_token(), invites.mint_token()
    stored = invites.hash_token(token)

    assert invites.token_matches(token, stored)
    assert not invites.token_matches(other, stored)
    assert not invites.token_matches(token[:-1], stored)
    assert not invites.token_matches(token, stored.upper())
    assert not invites.token_matches(token, "")


@pytest.mark.parametrize(
    "junk", ["", "short", "a" * 31, "a" * 65, "a" * 42 + "!", "a" * 42 + " ", "a" * 42 + "="]
)
def test_junk_is_not_taken_for_a_token(junk: str) -> None:
    assert not invites.looks_like_token(junk)


@pytest.mark.parametrize("junk", ["\u00e9" * 43, "\u0661" * 43], ids=["latin", "arabic-digits"])
def test_non_ascii_is_not_taken_for_a_token(junk: str) -> None:
    assert not invites.looks_like_token(junk)
