"""The session API on the real service and a real Synapse: an admin sees a session with its
people and room, closes it, and the running service's job runner carries the close out."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import aiohttp

from tests.e2e.conftest import SealroomFactory
from tests.support.fixtures import MatrixUserFactory
from tests.support.matrix_users import from_bot


async def _call(method: str, url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.request(method, url, headers=headers) as response,
    ):
        return response.status, dict(await response.json())


async def test_an_admin_closes_a_session_through_the_api(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    token = secrets.token_hex(32)
    service = await sealroom(agents={"agent@example.com": agent.user_id}, api={"token": token})
    opened, room_id = await service.open_room("T-API", agent, customer)
    session_url = f"{service.url}/api/v1/sessions/{opened['session_id']}"

    status_without, _ = await _call("GET", f"{service.url}/api/v1/sessions")
    status, page = await _call("GET", f"{service.url}/api/v1/sessions?state=open", token)
    assert (status_without, status) == (401, 200), page
    [listed] = page["sessions"]
    assert listed["id"] == opened["session_id"]
    assert (listed["room_id"], listed["agent_user_id"]) == (room_id, agent.user_id)

    deadline = time.monotonic() + 30  # the customer's join reaches the bot's sync
    while listed["customer_user_id"] != customer.user_id:
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.2)
        listed = (await _call("GET", session_url, token))[1]

    status, closing = await _call("POST", f"{session_url}/close", token)
    assert status == 202, closing
    assert (closing["state"], closing["close_reason"]) == ("closing", "admin")

    await agent.wait_for_message(room_id, from_bot(service.config.bot.user_id, "being closed"))
    deadline = time.monotonic() + 60
    detail = closing
    while detail["state"] != "closed":
        assert time.monotonic() < deadline, detail
        await asyncio.sleep(0.2)
        detail = (await _call("GET", session_url, token))[1]
    actions = [(entry["actor"], entry["action"]) for entry in detail["audit"]]
    assert ("api", "session.closing") in actions
    assert ("sealroom", "session.closed") in actions
    assert detail["closed_at"] is not None
    status, again = await _call("POST", f"{session_url}/close", token)
    assert (status, again["errcode"]) == (409, "SEALROOM_SESSION_CLOSED")
    for path, content in service.secret_haystack():
        assert token.encode() not in content, f"the API token is in {path}"
