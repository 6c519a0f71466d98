"""The session API in-process: bearer token, list/show/close, errors, and no secret in any answer.

The real aiohttp app, domain and SQLite store (tests/support/api_app.py); the Matrix side is not
needed: closing only records the close and schedules the room's closing job.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

import store.sessions
from bridge.helpdesk.kinds.standard_webhooks import sign
from bridge.invites import hash_token
from store import Invite, Job
from tests.support.api_app import API_TOKEN, PUBLIC_BASE_URL, WEBHOOK_SECRET, ApiApp

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


class Api:
    def __init__(self, client: TestClient[Any, Any], built: ApiApp) -> None:
        self.client = client
        self.built = built

    async def hook(self, payload: dict[str, Any], webhook_id: str | None = None) -> ClientResponse:
        raw = json.dumps(payload).encode()
        webhook_id = webhook_id or f"msg_{secrets.token_hex(8)}"
        timestamp = int(time.time())
        return await self.client.post(
            "/hooks/helpdesk",
            data=raw,
            headers={
                "Content-Type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(WEBHOOK_SECRET, webhook_id, timestamp, raw),
            },
        )

    async def open(self, ticket_ref: str, **extra: Any) -> dict[str, Any]:
        response = await self.hook(
            {
                "event": "open",
                "ticket": {"id": ticket_ref, "subject": "VPN access"},
                "agent": "alice@example.com",
                **extra,
            }
        )
        assert response.status == 201, await response.text()
        return dict(await response.json())

    async def get(self, path: str, **params: Any) -> ClientResponse:
        return await self.client.get(path, params=params, headers=AUTH)

    async def json(self, path: str, **params: Any) -> Any:
        response = await self.get(path, **params)
        assert response.status == 200, await response.text()
        return await response.json()

    async def close(self, session_id: str) -> ClientResponse:
        return await self.client.post(f"/api/v1/sessions/{session_id}/close", headers=AUTH)

    async def wipe(self, session_id: str) -> ClientResponse:
        return await self.client.post(f"/api/v1/sessions/{session_id}/wipe", headers=AUTH)


MakeApi = Callable[..., Awaitable[Api]]


@pytest_asyncio.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[MakeApi]:
    opened: list[tuple[TestClient[Any, Any], ApiApp]] = []

    async def make(api_token: str | None = API_TOKEN, can_purge: bool = True) -> Api:
        built = await ApiApp.build(
            tmp_path / f"sealroom-{len(opened)}.db", api_token=api_token, can_purge=can_purge
        )
        client: TestClient[Any, Any] = TestClient(TestServer(built.app))
        await client.start_server()
        opened.append((client, built))
        return Api(client, built)

    yield make
    for client, built in opened:
        await client.close()
        await built.database.close()


@pytest_asyncio.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api()


async def error_of(response: ClientResponse, status: int, errcode: str) -> dict[str, Any]:
    text = await response.text()
    assert response.status == status, text
    body = json.loads(text)
    assert body["errcode"] == errcode
    assert body["request_id"] == response.headers["X-Request-ID"]
    return dict(body)


ENDPOINTS = [
    ("GET", "/api/v1/sessions"),
    ("GET", "/api/v1/sessions/00000000-0000-4000-8000-000000000000"),
    ("POST", "/api/v1/sessions/00000000-0000-4000-8000-000000000000/close"),
    ("POST", "/api/v1/sessions/00000000-0000-4000-8000-000000000000/wipe"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_without_a_configured_token_the_api_is_403_saying_how_to_turn_it_on(
    make_api: MakeApi, method: str, path: str
) -> None:
    api = await make_api(api_token=None)

    response = await api.client.request(method, path, headers=AUTH)

    body = await error_of(response, 403, "SEALROOM_API_DISABLED")
    assert "api.token" in body["error"]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic " + API_TOKEN, API_TOKEN, "Bearer " + API_TOKEN[:-1]],
)
async def test_a_missing_or_wrong_bearer_token_is_401(
    api: Api, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await api.client.request(method, path, headers=headers)

    await error_of(response, 401, "SEALROOM_API_TOKEN_INVALID")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_the_scheme_is_case_insensitive_as_http_says(api: Api) -> None:
    response = await api.client.get(
        "/api/v1/sessions", headers={"Authorization": f"bearer {API_TOKEN}"}
    )

    assert response.status == 200, await response.text()


async def test_list_is_newest_first_and_filters_by_state_and_integration(api: Api) -> None:
    first = await api.open("T-1")
    api.built.clock.advance(minutes=1)
    second = await api.open("T-2")
    api.built.clock.advance(minutes=1)
    third = await api.open("T-3")
    assert (await api.close(second["session_id"])).status == 202

    page = await api.json("/api/v1/sessions")
    closing = await api.json("/api/v1/sessions", state="closing")
    pending = await api.json("/api/v1/sessions", state="pending", integration="helpdesk")
    elsewhere = await api.json("/api/v1/sessions", integration="other")

    assert [s["id"] for s in page["sessions"]] == [
        third["session_id"],
        second["session_id"],
        first["session_id"],
    ]
    assert page["next_cursor"] is None
    assert [s["id"] for s in closing["sessions"]] == [second["session_id"]]
    assert [s["id"] for s in pending["sessions"]] == [third["session_id"], first["session_id"]]
    assert elsewhere == {"sessions": [], "next_cursor": None}
    assert page["sessions"][2] == {
        "id": first["session_id"],
        "state": "pending",
        "integration": "helpdesk",
        "ticket_ref": "T-1",
        "agent_user_id": "@alice:example.org",
        "customer_user_id": None,
        "room_id": None,
        "created_at": page["sessions"][2]["created_at"],
        "updated_at": page["sessions"][2]["updated_at"],
        "expires_at": first["session_expires_at"],
        "closed_at": None,
        "close_reason": None,
        "bot_left_at": None,
        "purged_at": None,
    }


async def test_pages_follow_the_cursor_without_gaps_or_twins(api: Api) -> None:
    opened = []
    for n in range(5):
        opened.append((await api.open(f"T-{n}"))["session_id"])
        if n % 2:
            api.built.clock.advance(seconds=1)  # some share a timestamp: the id breaks the tie

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = await api.json("/api/v1/sessions", **params)
        assert len(page["sessions"]) <= 2
        seen += [s["id"] for s in page["sessions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert sorted(seen) == sorted(opened)
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "purged"}, "state"),
        ({"integration": "Nope!"}, "integration"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "9" * 5000}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "WyJ4IiwieSJd"}, "cursor"),  # ["x","y"]
    ],
)
async def test_a_bad_filter_is_400_naming_it(api: Api, params: dict[str, str], field: str) -> None:
    response = await api.get("/api/v1/sessions", **params)

    body = await error_of(response, 400, "SEALROOM_PAYLOAD_INVALID")
    assert body["fields"] == [field]


async def test_show_has_the_state_the_people_and_the_audit_trail(api: Api) -> None:
    opened = await api.open("T-1")
    session_id = opened["session_id"]

    detail = await api.json(f"/api/v1/sessions/{session_id}")

    assert detail["id"] == session_id
    assert detail["state"] == "pending"
    assert detail["ticket_ref"] == "T-1"
    assert detail["agent_ref"] == "alice@example.com"
    assert detail["room_alias"] == f"#sealroom-{session_id}:example.org"
    assert [entry["action"] for entry in detail["audit"]] == ["session.opened"]
    assert detail["audit"][0]["actor"] == "alice@example.com"


@pytest.mark.parametrize(
    "session_id", ["00000000-0000-4000-8000-000000000000", "nope", "00000000-0000-4000-8000-00"]
)
async def test_an_unknown_session_is_404(api: Api, session_id: str) -> None:
    await error_of(
        await api.get(f"/api/v1/sessions/{session_id}"), 404, "SEALROOM_SESSION_UNKNOWN"
    )
    await error_of(await api.close(session_id), 404, "SEALROOM_SESSION_UNKNOWN")


async def test_close_records_it_schedules_the_room_close_and_a_second_close_is_409(
    api: Api,
) -> None:
    session_id = (await api.open("T-1"))["session_id"]

    response = await api.close(session_id)
    again = await api.close(session_id)

    assert response.status == 202, await response.text()
    detail = await response.json()
    assert detail["state"] == "closing"
    assert detail["close_reason"] == "admin"
    closing = [entry for entry in detail["audit"] if entry["action"] == "session.closing"]
    assert closing == [
        {
            "at": closing[0]["at"],
            "actor": "api",
            "action": "session.closing",
            "detail": {"reason": "admin"},
        }
    ]
    async with api.built.database.transaction() as db:
        jobs = (await db.execute(select(Job.action).where(Job.session_id == session_id))).all()
    assert ("close_room",) in jobs
    body = await error_of(again, 409, "SEALROOM_SESSION_CLOSED")
    assert "closing" in body["error"]


async def _closed_with_room(api: Api, ticket_ref: str) -> str:
    """A session closed without a purge (as before an admin token was configured)."""
    session_id = str((await api.open(ticket_ref))["session_id"])
    now = api.built.clock()
    async with api.built.database.transaction() as db:
        session = await store.sessions.get(db, session_id)
        assert session is not None
        session.room_id = f"!room-{ticket_ref}:example.org"
        session.state = "closed"
        session.closed_at = now
    return session_id


async def test_wipe_closes_a_live_session_and_purges_a_closed_one_once(api: Api) -> None:
    live = (await api.open("T-1"))["session_id"]
    closed = await _closed_with_room(api, "T-2")

    closing = await api.wipe(live)
    still_closing = await api.wipe(live)
    purging = await api.wipe(closed)
    purging_again = await api.wipe(closed)
    async with api.built.database.transaction() as db:
        query = select(Job).where(Job.session_id == closed, Job.action == "purge_room")
        jobs = list((await db.execute(query)).scalars())
        session = await store.sessions.get(db, closed)
        assert session is not None
        session.purged_at = api.built.clock()
    wiped = await api.wipe(closed)

    assert closing.status == 202, await closing.text()
    body = await closing.json()
    assert (body["outcome"], body["session"]["state"]) == ("closing", "closing")
    assert still_closing.status == 202
    assert (await still_closing.json())["outcome"] == "already_closing"
    assert (purging.status, (await purging.json())["outcome"]) == (202, "purging")
    assert (await purging_again.json())["outcome"] == "purging"
    assert [(job.action, job.params) for job in jobs] == [("purge_room", {"actor": "api"})]
    assert wiped.status == 200
    assert (await wiped.json())["outcome"] == "already_wiped"


async def test_wipe_of_a_closed_room_without_an_admin_token_is_409_saying_what_to_set(
    make_api: MakeApi,
) -> None:
    api = await make_api(can_purge=False)
    closed = await _closed_with_room(api, "T-1")

    body = await error_of(await api.wipe(closed), 409, "SEALROOM_PURGE_UNAVAILABLE")

    assert "homeserver.admin_token" in body["error"]
    async with api.built.database.transaction() as db:
        jobs = (await db.execute(select(Job.action).where(Job.session_id == closed))).all()
    assert ("purge_room",) not in jobs


async def test_the_openapi_document_needs_no_token(api: Api) -> None:
    response = await api.client.get("/api/v1/openapi.json")

    assert response.status == 200
    assert (await response.json())["openapi"] == "3.1.0"


async def test_canary_secrets_never_appear_in_an_api_answer(api: Api) -> None:
    """Plant a canary everywhere a webhook and a customer can put text, spend the invite, close
    and wipe: no answer of the session API holds it, nor the invite token, its hash, the
    ticket's subject, the webhook secret or the API token."""
    canary = f"sk_live_CANARY{secrets.token_hex(12)}"
    subject = f"subject-{canary}"
    opened = await api.open(
        "T-canary",
        ticket={"id": "T-canary", "subject": subject, "api_key": canary},
        customer={"name": "Carol", "password": canary},
        secret=canary,
    )
    token = opened["invite_url"].removeprefix(f"{PUBLIC_BASE_URL}/i#")
    redeemed = await api.client.post(
        "/i/redeem", json={"token": token, "user_id": "@customer:example.net"}
    )
    assert redeemed.status == 200, await redeemed.text()
    async with api.built.database.transaction() as db:
        token_hashes = list((await db.execute(select(Invite.token_hash))).scalars())
    assert hash_token(token) in token_hashes
    session_id = opened["session_id"]

    answers = [
        await api.get("/api/v1/sessions"),
        await api.get("/api/v1/sessions", state="pending"),
        await api.get(f"/api/v1/sessions/{session_id}"),
        await api.close(session_id),
        await api.get(f"/api/v1/sessions/{session_id}"),
        await api.close(session_id),
        await api.wipe(session_id),
        await api.client.get("/api/v1/openapi.json"),
    ]

    texts = [await answer.text() for answer in answers]
    assert [answer.status for answer in answers] == [200, 200, 200, 202, 200, 409, 202, 200]
    assert "@customer:example.net" in texts[2]  # the answers do say something
    for text in texts:
        for name, value in {
            "canary": canary,
            "subject": subject,
            "invite token": token,
            "webhook secret": WEBHOOK_SECRET,
            "API token": API_TOKEN,
            **{f"token hash {n}": h for n, h in enumerate(token_hashes)},
        }.items():
            assert value not in text, f"{name} in an API answer"
