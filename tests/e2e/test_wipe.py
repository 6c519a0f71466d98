"""The wipe at close against the real Synapse: what the customer and the agent can still fetch
with their own access tokens, what the admin API still finds, what the audit trail says, and a
wipe killed (SIGKILL) in the middle of its redactions."""

from __future__ import annotations

import asyncio
import collections
import os
import secrets
import time
from typing import Any
from urllib.parse import quote

import aiohttp
from nio.crypto.attachments import encrypt_attachment
from sqlalchemy import select

import store.audit
from bridge.ids import RoomID
from store import Database, Job
from tests.e2e.conftest import Sealroom, SealroomFactory
from tests.support.fixtures import MatrixUserFactory
from tests.support.matrix_users import MatrixUser
from tests.support.service_process import ServiceProcess

MESSAGE_TYPES = {"m.room.message", "m.room.encrypted", "m.sticker", "m.reaction"}
WIPE_STEPS = ["room.wipe_started", "room.redacted", "room.members_removed", "room.redacted"]


def _from_bot(bot_id: str, needle: str):
    return lambda sender, body: sender == bot_id and needle in body


async def _request(
    url: str, token: str, method: str = "GET", body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        raw = await response.read()
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:
            return response.status, raw


async def _upload_encrypted_file(synapse, user: MatrixUser, room_id: str, secret: bytes) -> str:
    """A screenshot of a password, as Element sends it: encrypted upload, key in the event."""
    ciphertext, keys = encrypt_attachment(secret)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{synapse.url}/_matrix/media/v3/upload?filename=password.png",
            data=ciphertext,
            headers={
                "Authorization": f"Bearer {user.client.access_token}",
                "Content-Type": "application/octet-stream",
            },
        ) as response,
    ):
        assert response.status == 200, await response.text()
        mxc = str((await response.json())["content_uri"])
    await user.send(
        room_id,
        {
            "msgtype": "m.image",
            "body": "password.png",
            "info": {"mimetype": "image/png", "size": len(secret)},
            "file": {
                "url": mxc,
                "key": keys["key"],
                "iv": keys["iv"],
                "hashes": keys["hashes"],
                "v": "v2",
            },
        },
    )
    return mxc


async def _download_status(synapse, user: MatrixUser, mxc: str) -> int:
    server, media_id = mxc.removeprefix("mxc://").split("/", 1)
    status, _ = await _request(
        f"{synapse.url}/_matrix/client/v1/media/download/{server}/{media_id}",
        user.client.access_token,
    )
    return status


async def _what_a_member_can_fetch(synapse, user: MatrixUser, room_id: str) -> list[dict]:
    """Every message event the user's own token can page through: [] if the room is gone."""
    room = quote(room_id, safe="")
    events: list[dict] = []
    token: str | None = None
    for _ in range(50):
        query = "dir=b&limit=100" + (f"&from={quote(token)}" if token else "")
        status, data = await _request(
            f"{synapse.url}/_matrix/client/v3/rooms/{room}/messages?{query}",
            user.client.access_token,
        )
        if status != 200:
            assert status in (403, 404), (status, data)  # no access any more: nothing fetched
            return events
        events.extend(e for e in data.get("chunk", []) if e.get("type") in MESSAGE_TYPES)
        token = data.get("end")
        if not token:
            return events
    raise AssertionError("the history never ended")


async def _wait_closed(service: Sealroom, session_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await service.session_row(session_id)).state == "closed":
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"session {session_id} not closed after {timeout} s")


async def _bot_can_see_the_file(service: Sealroom, room_id: str, mxc: str) -> None:
    """The bot decrypts the attachment's event (the key reaches it like any member's device)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = await service.app.rooms.history(RoomID(room_id), None)
        if any(mxc in event.media for event in page.events):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the bot never decrypted the attachment's event")


async def _room_with_members(
    service: Sealroom, agent: MatrixUser, customer: MatrixUser, ticket: str
) -> tuple[str, str]:
    bot_id = service.config.bot.user_id
    opened = await service.open_ticket(ticket)
    room_id = await agent.wait_for_invite()
    await agent.join(room_id)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{service.url}/i/redeem",
            json={"token": service.tokens[-1], "user_id": customer.user_id},
        ) as response,
    ):
        assert response.status == 200, await response.text()
    await customer.wait_for_invite(room_id)
    await customer.join(room_id)
    await customer.wait_for_message(room_id, _from_bot(bot_id, "only to share credentials"))
    await agent.wait_for_join(room_id, customer.user_id)
    await customer.wait_for_join(room_id, agent.user_id)
    return str(opened["session_id"]), room_id


async def _trail(database: Database, session_id: str) -> list[tuple[str, dict]]:
    async with database.transaction() as db:
        return [(e.action, dict(e.detail)) for e in await store.audit.for_session(db, session_id)]


async def test_close_wipes_the_room_purges_it_and_deletes_its_files(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id}, admin_token=True)
    session_id, room_id = await _room_with_members(service, agent, customer, "T-WIPE-1")
    canary = f"canary-password-{secrets.token_hex(8)}"
    await customer.send_text(room_id, canary)
    await agent.send_text(room_id, "Thanks, logging in now")
    mxc = await _upload_encrypted_file(synapse, customer, room_id, os.urandom(2048))
    await _bot_can_see_the_file(service, room_id, mxc)
    assert await _download_status(synapse, agent, mxc) == 200  # there to be deleted
    assert len(await _what_a_member_can_fetch(synapse, customer, room_id)) >= 4

    status, body = await service.webhook({"event": "close", "ticket": {"id": "T-WIPE-1"}})
    assert status == 202, body
    await _wait_closed(service, session_id)

    # Neither member's client can fetch any message content any more.
    for user in (customer, agent):
        for event in await _what_a_member_can_fetch(synapse, user, room_id):
            assert event.get("content") == {}, event
    # The homeserver no longer has the room, nor the file.
    admin = await synapse.admin_token()
    status, data = await _request(
        f"{synapse.url}/_synapse/admin/v1/rooms/{quote(room_id, safe='')}", admin
    )
    assert status == 404, data
    assert await _download_status(synapse, customer, mxc) == 404
    # Every step is in the audit trail, in order; the file is counted, never named.
    trail = await _trail(service.app.database, session_id)
    actions = [action for action, _ in trail]
    steps = [*WIPE_STEPS, "room.purged", "media.deleted", "session.closed"]
    assert [a for a in actions if a in steps] == steps
    redacted = next(detail for action, detail in trail if action == "room.redacted")
    assert redacted["count"] >= 4  # rules notice, canary, the agent's answer, the file
    assert redacted["undecryptable"] == 0
    assert dict(trail)["media.deleted"]["count"] == 1
    assert "mxc://" not in str(trail)
    assert mxc.encode() not in service.log_path.read_bytes()


async def test_without_an_admin_token_every_message_is_redacted_and_the_trail_says_so(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    session_id, room_id = await _room_with_members(service, agent, customer, "T-WIPE-2")
    canary = await customer.send_text(room_id, f"canary-password-{secrets.token_hex(8)}")
    relation = {"rel_type": "m.annotation", "event_id": canary, "key": "ok"}
    await agent.send(room_id, {"m.relates_to": relation}, "m.reaction")
    before = await _what_a_member_can_fetch(synapse, customer, room_id)
    assert len(before) >= 3

    status, body = await service.webhook({"event": "close", "ticket": {"id": "T-WIPE-2"}})
    assert status == 202, body
    await _wait_closed(service, session_id)

    # The room is still on the homeserver, but every message in it is an empty shell.
    for user in (customer, agent):
        seen = await _what_a_member_can_fetch(synapse, user, room_id)
        assert {e["event_id"] for e in before} <= {e["event_id"] for e in seen}
        for event in seen:
            assert event.get("content") == {}, event
            assert "redacted_because" in event.get("unsigned", {}), event
    trail = await _trail(service.app.database, session_id)
    actions = [action for action, _ in trail]
    steps = [*WIPE_STEPS, "room.purge_skipped", "session.closed"]
    assert [a for a in actions if a in steps] == steps
    skipped = dict(trail)["room.purge_skipped"]
    assert "keeps the redacted events" in skipped["reason"]
    assert "room.purged" not in actions


async def test_sigkill_during_the_redactions_then_restart_completes_the_wipe(
    synapse, fault_proxy, matrix_user: MatrixUserFactory, tmp_path
) -> None:
    agent = await matrix_user("agent")
    service = await ServiceProcess.create(
        synapse,
        tmp_path,
        homeserver_url=fault_proxy.url,
        agents={"agent@example.com": agent.user_id},
    )
    await service.start()
    try:
        await service.wait_ready()
        status, opened = await service.webhook(
            {
                "event": "open",
                "ticket": {"id": "T-KILL-WIPE", "subject": "x"},
                "agent": "agent@example.com",
            }
        )
        assert status == 201, opened
        room_id = await agent.wait_for_invite()
        await agent.join(room_id)
        await agent.wait_for_join(room_id, service.bot_id)
        sent = [await agent.send_text(room_id, f"secret number {n}") for n in range(60)]

        redactions = 0
        killed = asyncio.Event()

        async def kill_after_some_redactions(path: str, status: int) -> None:
            nonlocal redactions
            if status == 200 and not killed.is_set():
                redactions += 1
                if redactions == 20:
                    # Set the flag first: once the child dies, aiohttp cancels this handler.
                    killed.set()
                    assert service.process is not None
                    service.process.kill()

        fault_proxy.on_response(r"/redact/", kill_after_some_redactions)
        # One rate limit on the way, with the wait Synapse would ask for.
        fault_proxy.fail(
            r"/redact/",
            429,
            body={"errcode": "M_LIMIT_EXCEEDED", "error": "Too many", "retry_after_ms": 300},
        )
        status, body = await service.webhook({"event": "close", "ticket": {"id": "T-KILL-WIPE"}})
        assert status == 202, body
        try:
            await asyncio.wait_for(killed.wait(), 120)
        except TimeoutError:
            raise AssertionError(f"no redaction seen: {fault_proxy.responses[-20:]}") from None
        assert service.process is not None
        await service.process.wait()
        fault_proxy.response_hooks.clear()

        await service.start()
        await service.wait_ready()
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'sealroom.db'}")
        try:
            session_id = str(opened["session_id"])
            deadline = time.monotonic() + 120
            while "session.closed" not in [a for a, _ in await _trail(database, session_id)]:
                assert time.monotonic() < deadline, await _trail(database, session_id)
                await asyncio.sleep(0.3)
            trail = await _trail(database, session_id)
            async with database.transaction() as db:
                jobs = list((await db.execute(select(Job))).scalars())
        finally:
            await database.close()
        # No job stuck or failed (the session's expiry job waits for its time, then sees it
        # closed and does nothing).
        assert [(j.action, j.state) for j in jobs if j.action == "close_room"] == [
            ("close_room", "done")
        ]
        assert [j.action for j in jobs if j.state in ("running", "failed")] == []
        actions = [action for action, _ in trail]
        steps = [*WIPE_STEPS, "room.purge_skipped", "session.closed"]
        assert [a for a in actions if a in steps] == steps
        assert "job.failed" not in actions
        # Every message redacted, none twice, and the homeserver refused nothing.
        admin = await synapse.admin_token()
        status, data = await _request(
            f"{synapse.url}/_synapse/admin/v1/rooms/{quote(room_id, safe='')}/messages"
            "?dir=b&limit=1000",
            admin,
        )
        assert status == 200, data
        events = data["chunk"]
        targets = collections.Counter(
            e.get("redacts") or e.get("content", {}).get("redacts")
            for e in events
            if e["type"] == "m.room.redaction"
        )
        assert set(sent) <= set(targets)
        assert max(targets.values()) == 1, targets.most_common(3)
        for event in events:
            if event["type"] in MESSAGE_TYPES:
                assert event.get("content") == {}, event
        for run in (1, 2):
            errors = [e for e in service.events(run) if e.get("level") == "error"]
            assert errors == [], errors
        # Killed mid-redaction: the first run started the wipe, the second one finished it,
        # resuming from the checkpoint (its count goes on from there).
        first, second = ({e.get("event") for e in service.events(run)} for run in (1, 2))
        assert "room.wipe_started" in first
        assert "room.redacted" not in first
        assert "room.redacted" in second
        assert "room.wipe_started" not in second
        redacted = next(detail for action, detail in trail if action == "room.redacted")
        assert redacted["count"] >= len(sent)
        assert any(e.get("event") == "room.rate_limited" for e in service.events(1))
        assert any(e.get("event") == "jobs.requeued" for e in service.events(2))
    finally:
        assert await service.stop() == 0


async def test_the_purger_treats_gone_as_done(synapse) -> None:
    """A re-run after a crash purges and deletes again: what is gone already is success."""
    from bridge.matrix.admin import AdminRoomPurger, SynapseAdmin

    token = await synapse.admin_token()
    status, created = await _request(
        f"{synapse.url}/_matrix/client/v3/createRoom", token, "POST", {"preset": "private_chat"}
    )
    assert status == 200, created
    room_id = created["room_id"]
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{synapse.url}/_matrix/media/v3/upload?filename=x.bin",
            data=os.urandom(64),
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        mxc = str((await response.json())["content_uri"])
    admin = SynapseAdmin(synapse.url, token)
    purger = AdminRoomPurger(admin, synapse.server_name)
    try:
        await purger.purge(RoomID(room_id))
        await purger.purge(RoomID(room_id))
        assert await purger.delete_media(mxc) is True
        assert await purger.delete_media(mxc) is True
        assert await purger.delete_media("mxc://elsewhere.example/abc") is False
    finally:
        await admin.close()
    status, _ = await _request(
        f"{synapse.url}/_synapse/admin/v1/rooms/{quote(room_id, safe='')}", token
    )
    assert status == 404
    server, media_id = mxc.removeprefix("mxc://").split("/", 1)
    status, _ = await _request(
        f"{synapse.url}/_matrix/client/v1/media/download/{server}/{media_id}", token
    )
    assert status == 404


async def test_the_api_purges_the_room_of_a_session_closed_before_the_admin_token_was_set(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse
) -> None:
    """Closed without an admin token: redacted, but still on the homeserver. Once the token
    is configured, POST /api/v1/sessions/{id}/wipe purges it; asking again does no harm."""
    from pydantic import SecretStr

    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    api_token = secrets.token_hex(32)
    service = await sealroom(agents={"agent@example.com": agent.user_id}, api={"token": api_token})
    session_id, room_id = await _room_with_members(service, agent, customer, "T-WIPE-LATE")
    status, body = await service.webhook({"event": "close", "ticket": {"id": "T-WIPE-LATE"}})
    assert status == 202, body
    await _wait_closed(service, session_id)
    admin = await synapse.admin_token()
    room_url = f"{synapse.url}/_synapse/admin/v1/rooms/{quote(room_id, safe='')}"
    assert (await _request(room_url, admin))[0] == 200  # still there: never purged
    wipe_url = f"{service.url}/api/v1/sessions/{session_id}/wipe"
    status, refused = await _request(wipe_url, api_token, "POST")
    assert (status, refused["errcode"]) == (409, "SEALROOM_PURGE_UNAVAILABLE"), refused

    homeserver = service.config.homeserver.model_copy(update={"admin_token": SecretStr(admin)})
    service.config = service.config.model_copy(update={"homeserver": homeserver})
    await service.restart()
    status, purging = await _request(wipe_url, api_token, "POST")
    assert (status, purging["outcome"]) == (202, "purging"), purging
    deadline = time.monotonic() + 60
    while (await service.session_row(session_id)).purged_at is None:
        assert time.monotonic() < deadline, "the room was never purged"
        await asyncio.sleep(0.2)
    status, again = await _request(wipe_url, api_token, "POST")

    assert (status, again["outcome"]) == (200, "already_wiped"), again
    assert (await _request(room_url, admin))[0] == 404
    trail = await _trail(service.app.database, session_id)
    requested = [detail for action, detail in trail if action == "room.purge_requested"]
    assert len(requested) == 1
    purged = [detail for action, detail in trail if action == "room.purged"]
    assert [p["after_close"] for p in purged] == [True]
