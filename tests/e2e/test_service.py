"""The service as an operator runs it: room settings, one process per device, SIGTERM."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest

from bridge.app import App
from bridge.matrix.device_files import BotAlreadyRunning
from tests.e2e.conftest import SealroomFactory
from tests.support.fixtures import MatrixUserFactory
from tests.support.service_process import ServiceProcess


async def _admin_get(synapse, path: str) -> dict:
    status, data = await synapse.admin_get(path)
    assert status == 200, data
    return data


async def test_room_is_created_locked_down(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse
) -> None:
    agent = await matrix_user("agent")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    opened = await service.open_ticket("T-600")
    room_id = await service.wait_for_room(opened["session_id"])
    state = (await _admin_get(synapse, f"/_synapse/admin/v1/rooms/{room_id}/state"))["state"]
    by_type = {(e["type"], e["state_key"]): e for e in state}
    create = by_type[("m.room.create", "")]
    bot_id = service.config.bot.user_id
    assert create["sender"] == bot_id
    assert by_type[("m.room.encryption", "")]["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert by_type[("m.room.join_rules", "")]["content"]["join_rule"] == "invite"
    assert by_type[("m.room.history_visibility", "")]["content"]["history_visibility"] == "joined"
    # No guest access event: absent means forbidden (spec, m.room.guest_access).
    assert ("m.room.guest_access", "") not in by_type
    assert create["content"]["org.sealroom.session_id"] == opened["session_id"]
    assert "T-600" in by_type[("m.room.name", "")]["content"]["name"]
    assert "only for sharing credentials" in by_type[("m.room.topic", "")]["content"]["topic"]
    power = by_type[("m.room.power_levels", "")]["content"]
    assert power["users"].get(agent.user_id) == 50
    assert power["users_default"] == 0
    # Only the bot administers the room: as room-version-12 creator (not listed), or with 100.
    others = {user: level for user, level in power["users"].items() if user != bot_id}
    assert max(others.values()) <= 50
    async with aiohttp.ClientSession() as http, http.get(f"{service.url}/metrics") as resp:
        exposed = await resp.text()
    # The registry is per process (other tests count too): at least this room's job is there.
    done = re.search(
        r'sealroom_jobs_total\{action="create_room",outcome="done"\} ([0-9.]+)', exposed
    )
    assert done is not None
    assert float(done.group(1)) >= 1
    if create["content"].get("room_version", "1") == "12":
        assert bot_id not in power["users"]
    else:
        assert power["users"][bot_id] == 100


async def test_second_process_on_the_same_device_is_refused(
    sealroom: SealroomFactory,
) -> None:
    service = await sealroom()
    twin = App(service.config)
    with pytest.raises(BotAlreadyRunning, match="one process per bot"):
        await twin.start()
    await twin.stop()


async def test_readyz_reports_a_homeserver_outage(sealroom: SealroomFactory, fault_proxy) -> None:
    service = await sealroom(homeserver_url=fault_proxy.url)
    await service.app.bot.wait_until_synced(60)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service.url}/readyz") as resp:
            assert resp.status == 200, await resp.text()
        await fault_proxy.set_down(True)
        async with http.get(f"{service.url}/readyz") as resp:
            body = await resp.json()
        assert resp.status == 503
        assert body["checks"]["homeserver"] != "ok"
        assert body["checks"]["database"] == "ok"


async def test_sigterm_stops_gracefully_and_keeps_the_device(synapse, tmp_path) -> None:
    service = await ServiceProcess.create(synapse, tmp_path)
    password = (tmp_path / "bot_password").read_text()
    devices = []
    for run in (1, 2):
        await service.start()
        try:
            await service.wait_ready()
        finally:
            assert await service.stop() == 0, service.log_text(run)[-2000:]
        names = [event.get("event") for event in service.events(run)]
        assert "sealroom.stopped" in names
        assert password not in service.log_text(run)
        devices.append(json.loads((tmp_path / "data" / "bot.json").read_text())["device_id"])
    assert devices[0] == devices[1]
