"""Secure room creation against the real Synapse: the room's state, exactly one room when
createRoom's answer is lost, and rooms made by older versions (session marker as a state
event, private_chat preset) adopted, restarted with and wiped."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp import web

from bridge.devtools.localsynapse import LocalSynapse
from bridge.matrix.rooms import MARKER_EVENT, SESSION_KEY, power_levels
from bridge.sessions import room_alias_localpart
from tests.e2e.conftest import Sealroom, SealroomFactory
from tests.support.fixtures import MatrixUserFactory
from tests.support.matrix_users import from_bot
from tests.support.proxy import FaultProxy

# Retries after a failed createRoom come quickly: the test waits for the adoption.
JOBS = {"retry_initial_seconds": 0.2, "retry_max_seconds": 1.0, "poll_seconds": 0.5}


async def _client_api(
    synapse: LocalSynapse, token: str, method: str, path: str, body: Any = None
) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            f"{synapse.url}/_matrix/client/v3{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        data = await resp.json()
        assert resp.status == 200, data
        return dict(data)


def _bot_token(service: Sealroom) -> str:
    return str(service.app.bot.client.access_token)


async def _bot_rooms(synapse: LocalSynapse, service: Sealroom) -> set[str]:
    """The rooms the homeserver says the bot is in (not the bot's own cache)."""
    joined = await _client_api(synapse, _bot_token(service), "GET", "/joined_rooms")
    return set(joined["joined_rooms"])


async def _state(synapse: LocalSynapse, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    token = await synapse.admin_token()
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{synapse.url}/_synapse/admin/v1/rooms/{room_id}/state",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        data = await resp.json()
        assert resp.status == 200, data
    return {(e["type"], e["state_key"]): e for e in data["state"]}


async def _wait_closed(service: Sealroom, session_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await service.session_row(session_id)).state == "closed":
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"session {session_id} not closed after {timeout} s")


async def test_the_session_rides_in_the_create_event_and_nothing_else_is_written(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse: LocalSynapse
) -> None:
    agent = await matrix_user("agent")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    opened = await service.open_ticket("T-ROOM-1")
    room_id = await service.wait_for_room(opened["session_id"])
    state = await _state(synapse, room_id)
    assert state[("m.room.create", "")]["content"][SESSION_KEY] == opened["session_id"]
    assert state[("m.room.join_rules", "")]["content"]["join_rule"] == "invite"
    # No guest access event: absent means forbidden (spec, m.room.guest_access).
    assert ("m.room.guest_access", "") not in state
    assert (MARKER_EVENT, "") not in state
    alias = f"#{room_alias_localpart(opened['session_id'])}:{synapse.server_name}"
    assert state[("m.room.canonical_alias", "")]["content"]["alias"] == alias
    assert {key[0] for key in state} == {
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.canonical_alias",
        "m.room.join_rules",
        "m.room.history_visibility",
        "m.room.encryption",
        "m.room.name",
        "m.room.topic",
    }


async def test_a_lost_create_answer_leaves_exactly_one_room(
    sealroom: SealroomFactory,
    matrix_user: MatrixUserFactory,
    synapse: LocalSynapse,
    fault_proxy: FaultProxy,
) -> None:
    """Synapse creates the room, its answer never reaches sealroom: the retry gets
    M_ROOM_IN_USE for the alias and adopts that room instead of making a second one."""
    agent = await matrix_user("agent")
    service = await sealroom(
        agents={"agent@example.com": agent.user_id}, homeserver_url=fault_proxy.url, jobs=JOBS
    )
    lost: list[str] = []

    async def lose_the_answer(path: str, status: int) -> None:
        if status == 200 and not lost:
            lost.append(path)
            raise web.HTTPBadGateway()

    fault_proxy.on_response(r"/createRoom$", lose_the_answer)
    opened = await service.open_ticket("T-ROOM-2")
    room_id = await service.wait_for_room(opened["session_id"], timeout=90)
    assert lost  # the first answer was lost indeed
    assert fault_proxy.paths("POST").count("/_matrix/client/v3/createRoom") == 2
    assert await _bot_rooms(synapse, service) == {room_id}
    assert await agent.wait_for_invite(room_id) == room_id
    await asyncio.sleep(1)  # an invitation to a second room would have arrived by now
    assert set(agent.client.invited_rooms) | set(agent.client.rooms) == {room_id}


async def test_a_room_made_by_an_older_version_is_adopted_survives_a_restart_and_is_wiped(
    sealroom: SealroomFactory,
    matrix_user: MatrixUserFactory,
    synapse: LocalSynapse,
    fault_proxy: FaultProxy,
) -> None:
    """Rooms made before the marker moved into the create event: private_chat, a guest access
    event, the org.sealroom.session state event. One made by an older version whose answer was
    lost (its row has no room) is adopted by the alias, then closed and wiped as any other."""
    agent = await matrix_user("agent")
    service = await sealroom(
        agents={"agent@example.com": agent.user_id}, homeserver_url=fault_proxy.url, jobs=JOBS
    )
    refused = fault_proxy.fail(r"/createRoom$", 502, times=10_000, method="POST")
    opened = await service.open_ticket("T-ROOM-3")
    session_id = opened["session_id"]
    deadline = time.monotonic() + 30
    while not refused.hits and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert refused.hits
    bot_id = service.config.bot.user_id
    old = await _client_api(
        synapse,
        _bot_token(service),
        "POST",
        "/createRoom",
        {
            "preset": "private_chat",
            "visibility": "private",
            "room_alias_name": room_alias_localpart(session_id),
            "name": "Ticket T-ROOM-3",
            "topic": "made by an older sealroom",
            "invite": [agent.user_id],
            "initial_state": [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                },
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}},
                {
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": {"history_visibility": "joined"},
                },
                {
                    "type": "m.room.guest_access",
                    "state_key": "",
                    "content": {"guest_access": "forbidden"},
                },
                {"type": MARKER_EVENT, "state_key": "", "content": {"session_id": session_id}},
            ],
            "power_level_content_override": power_levels(bot_id, agent.user_id, "10"),
            "room_version": "10",
        },
    )
    old_room = str(old["room_id"])
    fault_proxy.clear_faults()
    assert await service.wait_for_room(session_id, timeout=60) == old_room
    assert await _bot_rooms(synapse, service) == {old_room}

    await service.restart()
    await agent.wait_for_invite(old_room)
    await agent.join(old_room)
    await agent.wait_for_message(old_room, from_bot(bot_id), timeout=60)
    status, body = await service.webhook({"event": "close", "ticket": {"id": "T-ROOM-3"}})
    assert status == 202, body
    await _wait_closed(service, session_id)
    assert await _bot_rooms(synapse, service) == set()
    members = await _state(synapse, old_room)
    joined = [
        key[1]
        for key, event in members.items()
        if key[0] == "m.room.member" and event["content"].get("membership") == "join"
    ]
    assert joined == []
