"""SIGKILL at the bad moments of nio's key handling (MATRIX-NOTES.md, "Crash windows in nio").

Like complement-crypto, a proxy in front of Synapse lets the request through, and the test kills
the bot's process after Synapse has answered but before the bot could read the answer.
"""

from __future__ import annotations

import asyncio

from tests.support.fixtures import MatrixUserFactory
from tests.support.http_json import post_json
from tests.support.matrix_users import from_bot
from tests.support.service_process import ServiceProcess


async def _agent_command_round_trip(service: ServiceProcess, agent, synapse, ticket: str) -> None:
    """The agent's device must start an Olm session with the bot for this to work both ways."""
    status, opened = await service.webhook(
        {"event": "open", "ticket": {"id": ticket, "subject": "x"}, "agent": "agent@example.com"}
    )
    assert status == 201, opened
    room_id = await agent.wait_for_invite()
    await agent.join(room_id)
    await agent.wait_for_join(room_id, service.bot_id)
    await agent.send_text(room_id, "!help")
    await agent.wait_for_message(room_id, from_bot(service.bot_id, "Commands: !close"), timeout=60)
    assert agent.undecryptable(room_id) == []


async def test_sigkill_after_keys_upload_response(
    synapse, fault_proxy, matrix_user: MatrixUserFactory, tmp_path
) -> None:
    agent = await matrix_user("agent")
    service = await ServiceProcess.create(
        synapse,
        tmp_path,
        homeserver_url=fault_proxy.url,
        agents={"agent@example.com": agent.user_id},
    )
    killed = asyncio.Event()

    async def kill_on_upload(path: str, status: int) -> None:
        # Set the flag first: once the child dies, aiohttp cancels this handler.
        if status == 200 and not killed.is_set():
            killed.set()
            service.process.kill()

    fault_proxy.on_response(r"/keys/upload$", kill_on_upload)
    await service.start()
    try:
        await asyncio.wait_for(killed.wait(), 60)
    except TimeoutError:
        raise AssertionError(f"no key upload seen: {fault_proxy.responses}") from None
    fault_proxy.response_hooks.clear()
    await service.process.wait()

    # Synapse now holds keys the first run never learned were published.
    await service.start()
    try:
        await service.wait_ready()
        await _agent_command_round_trip(service, agent, synapse, "T-KILL-1")
        events = service.events(2)
        assert any(e.get("event") == "bot.keys_uploaded" for e in events)
        assert "already exists" not in service.log_text(2)
        assert not [e for e in events if e.get("level") == "error"]
    finally:
        assert await service.stop() == 0


async def _claim_all_one_time_keys(synapse, claimer, bot_id: str, device_id: str) -> dict:
    """Claim the bot's one-time keys until only the fallback key is handed out."""
    body = {"one_time_keys": {bot_id: {device_id: "signed_curve25519"}}}
    headers = {"Authorization": f"Bearer {claimer.client.access_token}"}
    for _ in range(200):
        _, data = await post_json(
            synapse.url, "/_matrix/client/v3/keys/claim", body, headers=headers
        )
        keys = data["one_time_keys"].get(bot_id, {}).get(device_id, {})
        assert keys, f"the bot's device has no key to claim at all: {data}"
        (key,) = keys.values()
        if key.get("fallback"):
            return key
    raise AssertionError("still getting one-time keys after 200 claims")


async def test_new_device_reaches_the_bot_when_one_time_keys_ran_out(
    synapse, matrix_user: MatrixUserFactory, tmp_path
) -> None:
    agent = await matrix_user("agent")
    thief = await matrix_user("thief")
    service = await ServiceProcess.create(
        synapse, tmp_path, agents={"agent@example.com": agent.user_id}
    )
    await service.start()
    try:
        await service.wait_ready()
        device_id = __import__("json").loads((tmp_path / "data" / "bot.json").read_text())[
            "device_id"
        ]
        # The bot goes down; meanwhile someone claims every one-time key it had uploaded.
        assert await service.stop() == 0
        fallback = await _claim_all_one_time_keys(synapse, thief, service.bot_id, device_id)
        assert fallback["signatures"][service.bot_id][f"ed25519:{device_id}"]
        await service.start()
        await service.wait_ready()
        # The agent's fresh device can still start an Olm session with the bot.
        await _agent_command_round_trip(service, agent, synapse, "T-FALLBACK-1")
    finally:
        assert await service.stop() == 0
