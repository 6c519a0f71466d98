"""bridge.session_queries: the admin's read side and close, on the real store and domain."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bridge.errors import PayloadInvalid, SessionClosed, SessionUnknown
from bridge.jobs import Action
from bridge.session_queries import (
    SessionDetail,
    SessionQueries,
    SessionSummary,
    decode_cursor,
    encode_cursor,
)
from store import Invite
from tests.support.domain import CUSTOMER_ID, OpenRoom, World


def queries(world: World) -> SessionQueries:
    return SessionQueries(world.database, world.sessions)


async def test_pages_cover_every_session_once_even_when_they_share_a_timestamp(
    world: World,
) -> None:
    opened = [(await world.open_ticket(f"T-{n}")).session_id for n in range(7)]  # one instant

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await queries(world).list(limit=3, cursor=cursor)
        seen += [session.id for session in page.sessions]
        cursor = page.next_cursor
        if cursor is None:
            break

    assert seen == sorted(opened, reverse=True)  # same created_at: the id decides


async def test_filters_by_state_and_integration(world: World) -> None:
    first = (await world.open_ticket("T-1")).session_id
    world.clock.advance(minutes=1)
    second = (await world.open_ticket("T-2")).session_id
    await world.sessions.close(first, "agent", "@alice:example.org")

    closing = await queries(world).list(state="closing")
    pending = await queries(world).list(state="pending", integration="helpdesk")
    other = await queries(world).list(integration="other")

    assert [s.id for s in closing.sessions] == [first]
    assert [s.id for s in pending.sessions] == [second]
    assert other.sessions == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"state": "gone"}, "state"),
        ({"integration": "../etc"}, "integration"),
        ({"integration": "x\x00"}, "integration"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_000}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": "x" * 500}, "cursor"),
    ],
)
async def test_bad_filters_name_the_field(
    world: World, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(PayloadInvalid) as info:
        await queries(world).list(**kwargs)  # type: ignore[arg-type]

    assert info.value.fields == [field]


async def test_a_cursor_round_trips(room: OpenRoom) -> None:
    detail = await queries(room.world).show(room.opened.session_id)

    assert decode_cursor(encode_cursor(detail.summary)) == (
        detail.summary.created_at,
        detail.summary.id,
    )


async def test_show_after_the_customer_joined_is_metadata_only(room: OpenRoom) -> None:
    world, opened, room_id = room
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    async with world.database.transaction() as db:
        invite = await db.get(Invite, 1)
        assert invite is not None
        token_hash = invite.token_hash

    detail = await queries(world).show(opened.session_id)

    assert detail.summary.room_id == room_id
    assert detail.summary.customer_user_id == CUSTOMER_ID
    assert [entry.action for entry in detail.audit][:2] == ["session.opened", "room.created"]
    text = json.dumps(detail.as_json())
    for secret in (opened.token, token_hash, "VPN access"):  # the subject is the ticket's text
        assert secret not in text
    fields = {f.name for f in dataclasses.fields(SessionSummary)} | {
        f.name for f in dataclasses.fields(SessionDetail)
    }
    assert not fields & {"subject", "token", "token_hash", "registration_token_hash"}


@pytest.mark.parametrize("session_id", ["00000000-0000-4000-8000-000000000000", "x", ""])
async def test_an_unknown_session(world: World, session_id: str) -> None:
    with pytest.raises(SessionUnknown):
        await queries(world).show(session_id)
    with pytest.raises(SessionUnknown):
        await queries(world).close(session_id, "api")


async def test_close_goes_through_the_session_service_like_the_agents(room: OpenRoom) -> None:
    world, opened, _ = room

    detail = await queries(world).close(opened.session_id, "api")

    assert (detail.summary.state, detail.summary.close_reason) == ("closing", "admin")
    assert [job.params for job in await world.jobs(Action.CLOSE_ROOM)] == [{"reason": "admin"}]
    assert world.wakes  # the job runner is woken, as for !close
    [event] = await world.audit("session.closing")
    assert (event.actor, event.detail) == ("api", {"reason": "admin"})
    with pytest.raises(SessionClosed, match="already closing"):
        await queries(world).close(opened.session_id, "api")
