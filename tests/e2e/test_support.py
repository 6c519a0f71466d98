"""The test support itself works against the real Synapse: E2EE users and the fault proxy."""

from __future__ import annotations

import asyncio

import aiohttp
import nio
import pytest

from bridge.devtools.localsynapse import LocalSynapse
from tests.support.proxy import FaultProxy

ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_synapse_answers_and_registration_is_idempotent(synapse: LocalSynapse) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{synapse.url}/_matrix/client/versions") as resp,
    ):
        assert resp.status == 200
    first = await synapse.register_user("idem-user", "pw-1")
    again = await synapse.register_user("idem-user", "pw-1")
    assert first == again == f"@idem-user:{synapse.server_name}"
    session_info = await synapse.login(first, "pw-1")
    assert session_info["user_id"] == first
    token = await synapse.admin_token()
    assert token == await synapse.admin_token()
    assert (synapse.base_dir / "admin.json").stat().st_mode & 0o777 == 0o600


async def test_encrypted_message_is_decrypted_by_the_other_user(matrix_user) -> None:
    alice = await matrix_user("alice")
    bob = await matrix_user("bob")

    created = await alice.client.room_create(initial_state=[ENCRYPTION], invite=[bob.user_id])
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id

    assert await bob.wait_for_invite(room_id) == room_id
    await bob.join(room_id)
    await alice.wait_for_join(room_id, bob.user_id)
    assert alice.client.rooms[room_id].encrypted

    await alice.send_text(room_id, "hello bob, this is secret")
    sender, body = await bob.wait_for_message(room_id, lambda s, b: "secret" in b)
    assert (sender, body) == (alice.user_id, "hello bob, this is secret")

    await bob.send_text(room_id, "hi alice")
    assert await alice.wait_for_message(room_id, lambda s, b: s == bob.user_id) == (
        bob.user_id,
        "hi alice",
    )
    assert bob.undecryptable(room_id) == []
    assert alice.undecryptable(room_id) == []
    assert (alice.user_id, "hello bob, this is secret") in bob.messages(room_id)


async def _get_versions(url: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/_matrix/client/versions") as resp,
    ):
        await resp.read()
        return resp.status


async def test_fault_proxy_down_refuses_connections_and_up_works_again(
    fault_proxy: FaultProxy,
) -> None:
    assert await _get_versions(fault_proxy.url) == 200

    await fault_proxy.set_down(True)
    with pytest.raises(aiohttp.ClientConnectorError) as refused:
        await _get_versions(fault_proxy.url)
    assert isinstance(refused.value.os_error, ConnectionRefusedError)

    await fault_proxy.set_down(False)
    assert await _get_versions(fault_proxy.url) == 200
    assert fault_proxy.requests.count(("GET", "/_matrix/client/versions")) == 2


async def test_fault_proxy_down_cuts_open_connections(
    fault_proxy: FaultProxy, synapse: LocalSynapse
) -> None:
    """A long-poll /sync in flight is cut off, like a homeserver that goes away."""
    user_id = await synapse.register_user("proxy-sync-user", "pw")
    token = (await synapse.login(user_id, "pw"))["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{fault_proxy.url}/_matrix/client/v3/sync") as resp:
            since = (await resp.json())["next_batch"]

        sync_url = f"{fault_proxy.url}/_matrix/client/v3/sync?timeout=30000&since={since}"

        async def long_poll() -> bytes:
            async with session.get(sync_url) as resp:
                return await resp.read()

        pending = asyncio.create_task(long_poll())
        await asyncio.sleep(0.5)
        assert not pending.done()
        await fault_proxy.set_down(True)
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(pending, 5)
    await fault_proxy.set_down(False)


async def test_fault_proxy_fail_n_times_then_passes_through(fault_proxy: FaultProxy) -> None:
    fault = fault_proxy.fail(
        r"/_matrix/client/versions$", 503, times=2, body={"errcode": "M_TEST", "error": "x"}
    )
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.get(f"{fault_proxy.url}/_matrix/client/versions") as resp:
                assert resp.status == 503
                assert await resp.json() == {"errcode": "M_TEST", "error": "x"}
        async with session.get(f"{fault_proxy.url}/_matrix/client/versions") as resp:
            assert resp.status == 200
            assert "versions" in await resp.json()
    assert fault.remaining == 0
    assert len(fault.hits) == 2
    assert len(fault_proxy.requests) == 3


async def test_matrix_user_syncs_through_the_proxy_and_survives_an_outage(
    matrix_user, fault_proxy: FaultProxy
) -> None:
    alice = await matrix_user("alice")
    bob = await matrix_user("bob", homeserver_url=fault_proxy.url)
    assert any(p.endswith("/keys/upload") for p in fault_proxy.paths("POST"))

    created = await alice.client.room_create(initial_state=[ENCRYPTION], invite=[bob.user_id])
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id
    await bob.wait_for_invite(room_id)
    await bob.join(room_id)
    await alice.wait_for_join(room_id, bob.user_id)

    await fault_proxy.set_down(True)
    await alice.send_text(room_id, "sent while bob's homeserver link is down")
    await fault_proxy.set_down(False)

    _, body = await bob.wait_for_message(room_id, timeout=60)
    assert body == "sent while bob's homeserver link is down"
    assert bob.undecryptable(room_id) == []


async def _encrypted_room(alice, bob) -> str:
    created = await alice.client.room_create(initial_state=[ENCRYPTION], invite=[bob.user_id])
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id
    await bob.wait_for_invite(room_id)
    await bob.join(room_id)
    await alice.wait_for_join(room_id, bob.user_id)
    return room_id


async def test_failed_key_share_is_reported_as_undecryptable(
    matrix_user, fault_proxy: FaultProxy
) -> None:
    """nio ignores a failed /sendToDevice and marks the room key as shared anyway.

    The message is then undecryptable for good; MatrixUser must say so. Also checks that
    MatrixUser's workaround keeps the sender logged in (nio 0.26 clears the access token).
    """
    alice = await matrix_user("alice", homeserver_url=fault_proxy.url)
    bob = await matrix_user("bob")
    room_id = await _encrypted_room(alice, bob)

    lost_key = fault_proxy.fail(r"/sendToDevice/m\.room\.encrypted/", 500, times=1)
    event_id = await alice.send_text(room_id, "key lost on the way")
    assert len(lost_key.hits) == 1
    assert alice.client.access_token
    await bob.wait_until(lambda: bob.undecryptable(room_id), what="the undecryptable event")
    assert bob.undecryptable(room_id) == [event_id]
    assert bob.messages(room_id) == []


async def test_late_room_key_is_used_to_retry_decryption(
    matrix_user, fault_proxy: FaultProxy
) -> None:
    """A room key that arrives after its message: nio alone never retries, MatrixUser does."""
    alice = await matrix_user("alice", homeserver_url=fault_proxy.url)
    bob = await matrix_user("bob")
    room_id = await _encrypted_room(alice, bob)

    held_key = fault_proxy.fail(r"/sendToDevice/m\.room\.encrypted/", 200, times=1, body={})
    event_id = await alice.send_text(room_id, "key arrives late")
    await bob.wait_until(lambda: bob.undecryptable(room_id), what="the undecryptable event")
    assert bob.undecryptable(room_id) == [event_id]

    assert await fault_proxy.replay(held_key.captured[0]) == 200
    assert await bob.wait_for_message(room_id) == (alice.user_id, "key arrives late")
    assert bob.undecryptable(room_id) == []
    assert bob.late_decrypted == [event_id]
