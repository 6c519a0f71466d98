"""bridge.untrusted: the one JSON reader for request bodies, and the text rules for fields."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bridge.errors import PayloadInvalid
from bridge.helpdesk import payloads
from bridge.untrusted import MAX_DEPTH, MAX_NUMBER_CHARS, loads_object, text_problem
from store.limits import AGENT_REF_MAX, SUBJECT_MAX, TICKET_REF_MAX


def refused(body: bytes, hint: str) -> None:
    with pytest.raises(PayloadInvalid, match=re.escape(hint)):
        loads_object(body)


# -- depth ------------------------------------------------------------------------------------


def test_nesting_up_to_the_limit_is_read() -> None:
    body = b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"

    assert loads_object(body)["a"] is not None


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 2000, 100_000])
def test_nesting_beyond_the_limit_is_refused_before_parsing(depth: int) -> None:
    refused(b'{"a": ' + b"[" * depth + b"]" * depth + b"}", "levels deep")
    refused(b"[" * depth, "levels deep")  # unterminated: still no RecursionError


def test_brackets_inside_strings_do_not_count() -> None:
    text = '[{"' + '\\"' + "[" * 500 + '"}]'
    body = json.dumps({"a": "[" * 5000, "b": "{" * 5000, "c": text}).encode()

    assert loads_object(body)["a"] == "[" * 5000


def test_an_unterminated_string_does_not_make_the_scan_backtrack() -> None:
    refused(b'{"a": "' + b'x\\"' * 50_000, "not valid JSON")


# -- numbers ----------------------------------------------------------------------------------


def test_numbers_within_the_limit_are_read() -> None:
    digits = "9" * MAX_NUMBER_CHARS
    data = loads_object(f'{{"a": {digits}, "b": -1.5e10, "c": 0}}'.encode())

    assert data == {"a": int(digits), "b": -1.5e10, "c": 0}


@pytest.mark.parametrize(
    ("literal", "hint"),
    [
        pytest.param(b"1" + b"0" * MAX_NUMBER_CHARS, "longer than", id="41-digits"),
        pytest.param(b"1" + b"0" * 4300, "longer than", id="4301-digits"),
        pytest.param(b"0." + b"1" * 100, "longer than", id="long-fraction"),
        pytest.param(b"1e999", "too large", id="overflowing-float"),
        pytest.param(b"-1e999", "too large", id="overflowing-negative"),
        pytest.param(b"NaN", "NaN is not a JSON value", id="nan"),
        pytest.param(b"Infinity", "Infinity is not a JSON value", id="infinity"),
        pytest.param(b"-Infinity", "-Infinity is not a JSON value", id="minus-infinity"),
    ],
)
def test_numbers_json_loads_would_choke_on_or_invent_are_refused(
    literal: bytes, hint: str
) -> None:
    refused(b'{"a": ' + literal + b"}", hint)


# -- text -------------------------------------------------------------------------------------


def test_a_lone_surrogate_anywhere_is_refused() -> None:
    for body in (
        b'{"a": "\\ud800"}',
        b'{"\\udfff": 1}',
        b'{"a": [{"b": ["x\\udc00y"]}]}',
    ):
        refused(body, "unpaired surrogate")


def test_a_surrogate_pair_is_one_character() -> None:
    assert loads_object(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"a": "\xff"}', id="invalid-byte"),
        pytest.param(b'{"a": "\xc3\x28"}', id="broken-sequence"),
        pytest.param(b'{"a": "\xc0\xaf"}', id="overlong"),
        pytest.param(b'{"a": "\xed\xa0\x80"}', id="encoded-surrogate"),
        pytest.param(b'\xff\xfe{\x00"\x00a\x00"\x00:\x001\x00}\x00', id="utf-16"),
    ],
)
def test_bytes_that_are_not_utf8_are_refused(body: bytes) -> None:
    refused(body, "not valid JSON: it is not UTF-8 text")


def test_a_key_twice_in_one_object_is_refused() -> None:
    refused(b'{"token": "a", "token": "b"}', "'token' appears twice")
    assert loads_object(b'{"a": {"k": 1}, "b": {"k": 2}}') == {"a": {"k": 1}, "b": {"k": 2}}


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"1", b"null", b"true"])
def test_the_top_level_must_be_an_object(body: bytes) -> None:
    refused(body, "must be a JSON object")


# -- the text rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["T-1", "4711", "alice@example.com", "INC 0001", "\U0001f600" * 3, "\u0130", "\u05e9\u05dc"],
)
def test_identifiers_that_are_fine(value: str) -> None:
    assert text_problem(value, identifier=True) is None


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("T-1\x00", "U+0000"),
        ("a\tb", "U+0009"),
        ("a\nb", "U+000A"),
        ("\x7f", "U+007F"),
        ("\x85", "U+0085"),
        ("\u202eT-1", "U+202E"),
        ("T\u200b-1", "U+200B"),
        ("\ufeffT", "U+FEFF"),
        ("a\u2028b", "U+2028"),
    ],
)
def test_identifiers_refuse_control_and_invisible_characters(value: str, code: str) -> None:
    problem = text_problem(value, identifier=True)

    assert problem is not None
    assert code in problem


@pytest.mark.parametrize(
    "value",
    [
        "VPN\taccess",
        "line\r\nbreak",
        "\u200f\u05e9\u05dc\u05d5\u05dd",
        "\U0001f469\u200d\U0001f4bb",
    ],
)
def test_free_text_keeps_whitespace_and_format_characters(value: str) -> None:
    assert text_problem(value, identifier=False) is None


@pytest.mark.parametrize("value", ["VPN\x00", "\x07bell", "\x1b[31m", "\x9b"])
def test_free_text_refuses_other_control_characters(value: str) -> None:
    assert text_problem(value, identifier=False) is not None


# -- the webhook payload model ----------------------------------------------------------------


def body(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


OPEN = {"event": "open", "ticket": {"id": "T-1"}, "agent": "alice@example.com"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param({**OPEN, "ticket": {"id": "T\x00"}}, "ticket.id", id="nul-ticket-id"),
        pytest.param({**OPEN, "ticket": {"id": "\u202e1"}}, "ticket.id", id="rtl-ticket-id"),
        pytest.param(
            {**OPEN, "ticket": {"id": "x" * (TICKET_REF_MAX + 1)}}, "ticket.id", id="long-id"
        ),
        pytest.param(
            {**OPEN, "ticket": {"id": "1", "subject": "a\x00"}}, "ticket.subject", id="nul-subject"
        ),
        pytest.param(
            {**OPEN, "ticket": {"id": "1", "subject": "x" * (SUBJECT_MAX + 1)}},
            "ticket.subject",
            id="long-subject",
        ),
        pytest.param({**OPEN, "agent": "a" * (AGENT_REF_MAX + 1)}, "agent", id="long-agent"),
        pytest.param({**OPEN, "agent": "al\x00ice"}, "agent", id="nul-agent"),
        pytest.param({**OPEN, "agent": {"email": ["x"]}}, "agent", id="agent-email-a-list"),
        pytest.param(
            {**OPEN, "customer": {"email": "c\x00@x"}}, "customer.email", id="nul-customer-email"
        ),
    ],
)
def test_the_payload_model_names_the_field_it_refuses(data: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadInvalid) as info:
        payloads.parse(body(data))

    assert info.value.fields == [field]
    assert info.value.message.startswith(f"Invalid webhook body: {field} ")


def test_the_payload_model_accepts_text_at_its_limits() -> None:
    parsed = payloads.parse(
        body(
            {
                "event": "open",
                "ticket": {"id": "\U0001f600" * TICKET_REF_MAX, "subject": "\t" * SUBJECT_MAX},
                "agent": {"id": 10**30},
            }
        )
    )

    assert len(parsed.ticket.id) == TICKET_REF_MAX
    assert parsed.agent == str(10**30)
