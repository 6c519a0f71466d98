"""Hostile request bodies against every POST endpoint, on SQLite and PostgreSQL side by side.

The promise (DESIGN.md): bad input gets a clear error, never a 500 with a traceback, and the
answer does not depend on the database. Each body below goes to the same app on both backends
(real aiohttp app, real SessionService, real database; recording fakes for the Matrix side and
the homeserver's admin API), and the test asserts: no 5xx, the same status on both, a clean
JSON error body, and no traceback in the captured log. A fixed corpus covers the known traps;
Hypothesis adds generated bodies (derandomized: CI sees the same examples every run).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.deliveries import DeliveryService
from bridge.helpdesk.integration import Integration
from bridge.helpdesk.kinds.standard_webhooks import StandardWebhooksVerifier, signed_headers
from bridge.invites import InviteService
from bridge.registration import RegistrationService
from bridge.sessions import SessionService
from bridge.web.app import make_app
from bridge.web.keys import Readiness, Services, WebSettings
from bridge.web.server import make_runner
from store.limits import AGENT_REF_MAX, SUBJECT_MAX, TICKET_REF_MAX
from tests.support.databases import BACKENDS, migrated_database
from tests.support.domain import AGENT, AGENT_ID, make_settings
from tests.support.fakes import Clock
from tests.support.logs import captured

SECRET = "whsec_" + "c2VhbHJvb20taG9zdGlsZS10ZXN0LWtleQ=="  # "sealroom-hostile-test-key"
MAX_BODY = 65536  # the production default: big bodies reach the parser, bigger ones get 413
SERVER_NAME = "example.org"
ENDPOINTS = (
    "/hooks/helpdesk",
    "/i/lookup",
    "/i/redeem",
    "/i/register/start",
    "/i/register/finish",
    "/i/register/abandon",
)
TOKEN = "@@TOKEN@@"  # replaced by a live invite token of the backend at hand
REG_TOKEN = "@@REG@@"  # replaced by the registration token the fake homeserver minted last


class FakeRegistrationTokens:
    """`bridge.ports.RegistrationTokens`, as Synapse's admin API answers for a used token."""

    def __init__(self) -> None:
        self.minted: list[str] = []

    async def mint(self, expires_at: datetime) -> str:
        self.minted.append(f"regtoken{len(self.minted) + 1:04d}")
        return self.minted[-1]

    async def completed(self, token: str) -> int | None:
        return 1 if token in self.minted else None

    async def revoke(self, token: str) -> None:
        return None

    async def list_valid(self) -> list[str]:
        return []

    async def user_created_at(self, user_id: str) -> datetime | None:
        return datetime.now(UTC)


@dataclass
class Side:
    """The app on one backend."""

    backend: str
    client: TestClient[Any, Any]
    tokens: FakeRegistrationTokens
    live_token: str = ""
    opened: int = 0

    async def open_ticket(self) -> str:
        """A new ticket and its live invite token (every call the same on both backends)."""
        self.opened += 1
        body = json.dumps(
            {
                "event": "open",
                "ticket": {"id": f"SETUP-{self.opened}", "subject": "setup"},
                "agent": "alice@example.com",
            }
        ).encode()
        response = await self.client.post(
            "/hooks/helpdesk", data=body, headers=signed_headers(SECRET, body)
        )
        assert response.status == 201, await response.text()
        self.live_token = str((await response.json())["invite_url"]).split("#", 1)[1]
        return self.live_token

    async def send(self, path: str, body: bytes, *, signed: bool) -> tuple[int, str]:
        body = body.replace(TOKEN.encode(), self.live_token.encode())
        last = self.tokens.minted[-1] if self.tokens.minted else "regtoken0000"
        body = body.replace(REG_TOKEN.encode(), last.encode())
        headers = {"Content-Type": "application/json"}
        if signed:
            headers.update(signed_headers(SECRET, body, f"msg_{secrets.token_hex(8)}"))
        response = await self.client.post(path, data=body, headers=headers)
        return response.status, await response.text()


@dataclass
class Pair:
    """The same app on SQLite and on PostgreSQL, and the log they share."""

    sides: list[Side]
    log: io.StringIO
    results: list[tuple[str, bytes, bool, list[int]]] = field(default_factory=list)

    async def open_ticket(self) -> None:
        for side in self.sides:
            await side.open_ticket()

    async def start_registration(self) -> None:
        body = json.dumps({"token": TOKEN}).encode()
        for side in self.sides:
            await side.send("/i/register/start", body, signed=False)

    async def send(self, path: str, body: bytes, *, signed: bool) -> list[int]:
        """Send to both backends; assert a clean answer from each and the same status."""
        statuses = []
        for side in self.sides:
            status, text = await side.send(path, body, signed=signed)
            where = f"{side.backend} {path} {'signed' if signed else 'unsigned'} {body[:120]!r}"
            assert status < 500, f"{status} from {where}: {text[:300]}"
            assert "Traceback" not in text, where
            if status >= 400:
                error = json.loads(text)
                assert error["errcode"].startswith("SEALROOM_"), where
                assert len(error["error"]) >= 5, where
            statuses.append(status)
        assert len(set(statuses)) == 1, f"backends disagree on {path} {body[:120]!r}: {statuses}"
        self.results.append((path, body, signed, statuses))
        return statuses

    def assert_clean_log(self) -> None:
        text = self.log.getvalue()
        assert "Traceback" not in text
        events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        crashed = [
            e for e in events if e.get("level") in ("error", "critical") or "exception" in e
        ]
        assert crashed == [], crashed[:3]


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    with captured("INFO") as buffer:
        yield buffer


async def _ready() -> str | None:
    return None


class ProductionRunnerServer(TestServer):
    """aiohttp's TestServer on the runner `sealroom run` uses (header deadline, quiet 400s)."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return make_runner(self.app, client_timeout=30, **kwargs)


@pytest_asyncio.fixture
async def pair(tmp_path: Path, captured_log: io.StringIO) -> AsyncIterator[Pair]:
    sides: list[Side] = []
    async with contextlib.AsyncExitStack() as stack:
        for backend in BACKENDS:
            folder = tmp_path / backend
            folder.mkdir()
            database = await stack.enter_async_context(migrated_database(backend, folder))
            tokens = FakeRegistrationTokens()
            sessions = SessionService(
                database,
                make_settings(
                    server_name=SERVER_NAME,
                    topic_template="Secure room for ticket {ticket_ref} ({subject})",
                    room_version=None,
                    # An agent name at the length limit is mapped too: it must be storable.
                    agents={AGENT: AGENT_ID, "a" * AGENT_REF_MAX: "@longest:example.org"},
                ),
                clock=Clock(),
            )
            invites = InviteService(database, sessions)
            app = make_app(
                Services(
                    DeliveryService(database, sessions, invites),
                    invites,
                    RegistrationService(database, sessions, invites, tokens),
                ),
                {"helpdesk": Integration(StandardWebhooksVerifier(SECRET, tolerance_seconds=300))},
                WebSettings(
                    public_base_url="https://sealroom.example.org",
                    homeserver_url="https://matrix.example.org",
                    server_name=SERVER_NAME,
                    web_client_template="https://app.element.io/#/room/{room}",
                    registration_enabled=True,
                    homeserver_browser_url="https://matrix.example.org",
                ),
                Readiness({"database": _ready}, {}),
                max_body_bytes=MAX_BODY,
            )
            client: TestClient[Any, Any] = TestClient(ProductionRunnerServer(app))
            await client.start_server()
            stack.push_async_callback(client.close)
            sides.append(Side(backend, client, tokens))
        yield Pair(sides, captured_log)


# -- the corpus -----------------------------------------------------------------------------------

EMOJI = "\U0001f600"  # four bytes in UTF-8, two UTF-16 units, one character

# Values for one field at a time: wrong types, control and invisible characters, lengths at and
# just over each limit, and text that is harmless but unusual.
FIELD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    10**38,
    [],
    ["x"],
    {},
    {"email": "alice@example.com"},
    {"id": ["x"]},
    "",
    " ",
    "\u0000",
    "T-1\u0000",
    "a\tb",
    "a\nb",
    "\r\n",
    "\x07",
    "\x7f",
    "\u0085",  # NEL, a C1 control
    "\u202eT-1",  # right-to-left override
    "T\u200b-1",  # zero-width space
    "\u200f\u05e9\u05dc\u05d5\u05dd",  # right-to-left mark and Hebrew
    "\u2028",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "e\u0301" * 200,  # combining accents
    "\u0130" * 200,  # "İ": lower() makes it longer
    "x" * (TICKET_REF_MAX - 1),
    "x" * TICKET_REF_MAX,
    "x" * (TICKET_REF_MAX + 1),
    "x" * 320,
    "x" * 321,
    "x" * SUBJECT_MAX,
    "x" * (SUBJECT_MAX + 1),
    EMOJI * TICKET_REF_MAX,
    EMOJI * (TICKET_REF_MAX + 1),
    "x" * 20000,
    "@customer:example.org",
    "@customer\u0000:example.org",
    "@\u202ecustomer:example.org",
    "@customer:example.org\n",
    "../../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR '1'='1",
    "%00",
    "regtoken0001",
    "reg/../admin",
    TOKEN,
    TOKEN + "x",
]

# Placed into a field as raw JSON text, where json.dumps cannot produce it.
RAW_FIELD_VALUES: list[bytes] = [
    b'"\\ud800"',  # a lone surrogate, escaped
    b'"\\udc00x"',
    b'"\\ud83d\\ude00"',  # a valid surrogate pair: one emoji
    b'"\\u0000"',
    b"1" + b"0" * 5000,  # 5,001 digits: json.loads raises ValueError
    b"1e999",
    b"-1e999",
    b"NaN",
    b"Infinity",
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
    b'"\xc3\x28"',  # invalid UTF-8 inside a string
    b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8 (CESU-8)
    b'"\xc0\xaf"',  # an overlong encoding
    b'"\x00"',  # a raw NUL byte inside a string: not JSON
]

# Whole bodies, whatever the endpoint.
WHOLE_BODIES: list[bytes] = [
    b"",
    b"{",
    b"}",
    b"[]",
    b"null",
    b"1",
    b'"x"',
    b"{}",
    b"\xff\xfe{\x00}\x00",
    b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
    b"[" * 2000,
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 2000 + b"{}" + b"}" * 2000,
    b"{" * 100000,  # over the body limit: 413
    b'{"token": 1' + b"0" * 4400 + b"}",
    b'{"token": "a", "token": "b"}',
    b'{"\\ud800": 1}',
    b'{"token": "' + b"a" * 60000 + b'"}',
    b"{" + b",".join(b'"k%d": %d' % (i, i) for i in range(5000)) + b"}",
    b'{"event": "open", "ticket": {"id": "T-1"}, "agent": "alice@example.com"}\x00',
    b"\x00" * 100,
]

# Each endpoint's well-formed body; one field at a time is replaced.
TEMPLATES: dict[str, dict[str, Any]] = {
    "/hooks/helpdesk": {
        "event": "open",
        "ticket": {"id": "T-1", "subject": "VPN access"},
        "agent": "alice@example.com",
        "customer": {"name": "Carol", "email": "carol@example.net"},
    },
    "/i/lookup": {"token": TOKEN},
    "/i/redeem": {"token": TOKEN, "user_id": "@customer:example.net"},
    "/i/register/start": {"token": TOKEN},
    "/i/register/finish": {
        "token": TOKEN,
        "user_id": "@newcustomer:example.org",
        "registration_token": REG_TOKEN,
    },
    "/i/register/abandon": {
        "token": TOKEN,
        "registration_token": REG_TOKEN,
        "user_id": "@newcustomer:example.org",
    },
}
MARKER = "@@FIELD@@"


def _paths(template: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for key, value in template.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found += _paths(value, (*prefix, key))
    return found


def _with(template: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(template))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def field_bodies(endpoint: str) -> list[bytes]:
    """Every field of the endpoint's body replaced, in turn, by every hostile value."""
    template = TEMPLATES[endpoint]
    bodies = []
    for path in _paths(template):
        for value in FIELD_VALUES:
            bodies.append(json.dumps(_with(template, path, value)).encode())
        marked = json.dumps(_with(template, path, MARKER)).encode()
        for raw in RAW_FIELD_VALUES:
            bodies.append(marked.replace(b'"' + MARKER.encode() + b'"', raw))
    if endpoint == "/hooks/helpdesk":
        close = {"event": "close", "ticket": {"id": "T-1"}}
        for value in FIELD_VALUES:
            bodies.append(json.dumps(_with(close, ("ticket", "id"), value)).encode())
    return bodies


async def _prepare(pair: Pair, endpoint: str) -> None:
    """A live invite (and a started registration) so that bodies reach the deep code paths."""
    await pair.open_ticket()
    if endpoint in ("/i/register/finish", "/i/register/abandon"):
        await pair.start_registration()


# -- the corpus, on both backends -----------------------------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_hostile_bodies_never_get_a_5xx_and_agree_across_backends(
    pair: Pair, endpoint: str
) -> None:
    await _prepare(pair, endpoint)
    bodies = WHOLE_BODIES + field_bodies(endpoint)
    for body in bodies:
        if TOKEN.encode() in body and pair.results and pair.results[-1][3][0] in (200, 201):
            await _prepare(pair, endpoint)  # the last body spent the invite: take a fresh one
        for signed in (True, False):
            await pair.send(endpoint, body, signed=signed)

    pair.assert_clean_log()
    statuses = {status for _, _, _, (status, _) in pair.results}
    # The corpus must reach both refusals and acceptances, or it proves little.
    assert any(status < 300 for status in statuses) or endpoint == "/i/register/abandon"
    assert 400 in statuses
    if endpoint == "/hooks/helpdesk":
        unsigned = {s for _, _, signed, (s, _) in pair.results if not signed}
        # Only an oversized body is refused before the signature is looked at.
        assert unsigned == {401, 413}, "an unsigned webhook must never get past the signature"


# Generated bodies: any JSON value in any field, and arbitrary bytes.
_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**50), max_value=10**50)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)
    | st.text(alphabet=st.characters(codec="utf-8"), min_size=250, max_size=330)
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _generated_request(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    endpoint = draw(st.sampled_from(ENDPOINTS))
    signed = draw(st.booleans())
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return endpoint, draw(st.binary(max_size=200)), signed
    template = TEMPLATES[endpoint]
    path = draw(st.sampled_from(_paths(template)))
    return endpoint, json.dumps(_with(template, path, draw(_json_value))).encode(), signed


@pytest.mark.timeout(600)
@settings(
    max_examples=120,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=_generated_request())
async def test_generated_bodies_never_get_a_5xx_and_agree_across_backends(
    pair: Pair, request: tuple[str, bytes, bool]
) -> None:
    endpoint, body, signed = request
    if TOKEN.encode() in body:
        await _prepare(pair, endpoint)
    await pair.send(endpoint, body, signed=signed)
    pair.assert_clean_log()


# -- one focused test per fix: each failed before it ----------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_json_nested_2000_deep_is_400_not_500(pair: Pair, endpoint: str) -> None:
    await pair.open_ticket()
    body = b'{"token": "' + TOKEN.encode() + b'", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"

    statuses = await pair.send(endpoint, body, signed=True)

    assert statuses == [400, 400]
    pair.assert_clean_log()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_an_integer_of_4301_digits_is_400_not_500(pair: Pair, endpoint: str) -> None:
    body = b'{"token": 1' + b"0" * 4300 + b', "ticket": {"id": 1}, "event": "open"}'

    statuses = await pair.send(endpoint, body, signed=True)

    assert statuses == [400, 400]
    text = (await pair.sides[0].send(endpoint, body, signed=True))[1]
    assert "number" in json.loads(text)["error"]


@pytest.mark.parametrize(
    ("ticket", "agent", "field"),
    [
        pytest.param({"id": "T-1\u0000"}, "alice@example.com", "ticket.id", id="nul-in-ticket-id"),
        pytest.param(
            {"id": "T-1", "subject": "VPN\u0000"},
            "alice@example.com",
            "ticket.subject",
            id="nul-in-subject",
        ),
        pytest.param({"id": "T-1"}, "a" * 300, "agent", id="agent-longer-than-its-column"),
        pytest.param({"id": "T-1"}, "alice\u0000@example.com", "agent", id="nul-in-agent"),
        pytest.param({"id": "\u202e1-T"}, "alice@example.com", "ticket.id", id="rtl-in-ticket-id"),
    ],
)
async def test_text_postgresql_cannot_store_is_400_naming_the_field(
    pair: Pair, ticket: dict[str, Any], agent: str, field: str
) -> None:
    body = json.dumps({"event": "open", "ticket": ticket, "agent": agent}).encode()

    statuses = await pair.send("/hooks/helpdesk", body, signed=True)

    assert statuses == [400, 400]
    answer = json.loads((await pair.sides[1].send("/hooks/helpdesk", body, signed=True))[1])
    assert answer["fields"] == [field]
    assert field in answer["error"]


async def test_text_at_the_limits_is_accepted_on_both_backends(pair: Pair) -> None:
    body = json.dumps(
        {
            "event": "open",
            "ticket": {"id": EMOJI * TICKET_REF_MAX, "subject": "\t\u200f" + EMOJI * 400},
            "agent": "a" * AGENT_REF_MAX,
        }
    ).encode()

    assert await pair.send("/hooks/helpdesk", body, signed=True) == [201, 201]


async def test_a_lone_surrogate_in_a_matrix_id_is_400_not_500(pair: Pair) -> None:
    await pair.open_ticket()
    body = b'{"token": "' + TOKEN.encode() + b'", "user_id": "@\\ud800:example.org"}'

    assert await pair.send("/i/redeem", body, signed=False) == [400, 400]
    # The link is not spent by the refusal.
    lookup = json.dumps({"token": TOKEN}).encode()
    assert await pair.send("/i/lookup", lookup, signed=False) == [200, 200]


async def test_abandon_reads_its_body_once_with_the_safe_reader(pair: Pair) -> None:
    await pair.open_ticket()
    await pair.start_registration()
    body = (
        b'{"token": "'
        + TOKEN.encode()
        + b'", "registration_token": "'
        + REG_TOKEN.encode()
        + b'", "user_id": '
        + b"[" * 40
        + b"]" * 40
        + b"}"
    )

    assert await pair.send("/i/register/abandon", body, signed=False) == [400, 400]


async def test_a_registration_token_synapse_cannot_have_made_is_400(pair: Pair) -> None:
    await pair.open_ticket()
    await pair.start_registration()
    body = json.dumps(
        {"token": TOKEN, "registration_token": "../../v1/users", "user_id": "@x:example.org"}
    ).encode()

    assert await pair.send("/i/register/finish", body, signed=False) == [400, 400]


async def test_a_webhook_id_that_is_not_plain_ascii_is_401_not_500(pair: Pair) -> None:
    """Raw bytes in a header arrive as surrogate escapes; signing them used to raise."""
    body = b'{"event": "close", "ticket": {"id": "T-1"}}'
    for side in pair.sides:
        port = side.client.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        timestamp = int(time.time())
        writer.write(
            b"POST /hooks/helpdesk HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"webhook-id: msg_\xff\xfe\r\nwebhook-timestamp: " + str(timestamp).encode() + b"\r\n"
            b"webhook-signature: v1,AAAA\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    pair.assert_clean_log()


MALFORMED_HTTP = [
    pytest.param(b"POST /i/lookup\x00 HTTP/1.1\r\nHost: x\r\n\r\n", id="nul-in-path"),
    pytest.param(b"FOO BAR\r\n\r\n", id="not-http"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, id="tls-hello"),
    pytest.param(
        b"POST /i/lookup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_CANARY\x01\r\n\r\n",
        id="control-char-in-a-secret-header",
    ),
    pytest.param(
        b"POST /hooks/helpdesk HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        id="bad-content-length",
    ),
    pytest.param(
        b"POST /hooks/helpdesk HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        id="smuggling-headers",
    ),
    pytest.param(
        b"POST /i/lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\nzz\r\n',
        id="bad-chunk-after-headers",
    ),
]


@pytest.mark.parametrize("raw", MALFORMED_HTTP)
async def test_malformed_http_is_400_and_one_short_log_line(pair: Pair, raw: bytes) -> None:
    """Anyone can send it: a traceback per request would be a log flood (and echo secrets)."""
    mark = len(pair.log.getvalue())
    for side in pair.sides:
        reader, writer = await asyncio.open_connection("127.0.0.1", side.client.port)
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert answer.split(b" ", 2)[1] == b"400", answer[:200]

    pair.assert_clean_log()
    assert "sk_CANARY" not in pair.log.getvalue()
    lines = pair.log.getvalue()[mark:].strip().splitlines()
    assert len(lines) <= len(pair.sides), lines  # a non-HTTP first line is not even logged
    assert all(len(line) < 400 for line in lines), lines


async def test_a_refused_request_is_one_short_log_line(pair: Pair) -> None:
    body = b'{"token": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    side = pair.sides[0]
    response = await side.client.post(
        "/i/lookup", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    request_id = response.headers["X-Request-ID"]

    lines = [line for line in pair.log.getvalue().splitlines() if request_id in line]

    assert len(lines) == 1, lines
    assert len(lines[0]) < 400, lines[0]
    event = json.loads(lines[0])
    assert event["event"] == "http.request"
    assert event["status"] == 400
    assert event["errcode"] == "SEALROOM_PAYLOAD_INVALID"
