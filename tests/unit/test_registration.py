"""bridge.registration: start, finish and abandon a browser-made account, with stateful tokens."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from bridge import notices
from bridge.errors import (
    HomeserverUnavailable,
    InviteGone,
    RegistrationDisabled,
    RegistrationNotVerified,
    TooManyAttempts,
)
from bridge.invites import hash_token
from bridge.jobs import Action
from bridge.registration import CLOCK_SKEW, MAX_REGISTRATION_ATTEMPTS
from store import Database, Invite
from tests.support.domain import OpenRoom, OpenTicket, World, build_world

NEW_USER = "@new-customer:example.org"


async def _invite(world: World, token: str) -> Invite:
    async with world.database.transaction() as db:
        invite = (
            await db.execute(select(Invite).where(Invite.token_hash == hash_token(token)))
        ).scalar_one()
    return invite


async def test_start_mints_one_token_that_only_the_browser_gets(ticket: OpenTicket) -> None:
    world, opened = ticket

    started = await world.registration.start(opened.token)

    assert await world.tokens.list_valid() == [started.registration_token]
    assert started.expires_at == world.clock() + timedelta(minutes=30)
    invite = await _invite(world, opened.token)
    assert invite.registration_token_hash == hash_token(started.registration_token)
    assert (invite.registration_attempts, invite.used_at) == (1, None)  # the link is not spent
    [audit] = await world.audit("registration.started")
    assert audit.session_id == opened.session_id


async def test_the_registration_token_never_outlives_the_invite(ticket: OpenTicket) -> None:
    world, opened = ticket
    world.clock.now = (await _invite(world, opened.token)).expires_at - timedelta(minutes=5)

    started = await world.registration.start(opened.token)

    assert started.expires_at == (await _invite(world, opened.token)).expires_at


async def test_after_any_number_of_starts_at_most_one_token_is_valid(ticket: OpenTicket) -> None:
    world, opened = ticket

    for attempt in range(1, MAX_REGISTRATION_ATTEMPTS + 1):
        started = await world.registration.start(opened.token)
        assert await world.tokens.list_valid() == [started.registration_token], attempt

    with pytest.raises(TooManyAttempts):
        await world.registration.start(opened.token)

    assert len(await world.tokens.list_valid()) == 1
    assert len(world.tokens.minted) == MAX_REGISTRATION_ATTEMPTS
    assert world.tokens.revoked == world.tokens.minted[:-1]


async def test_five_starts_then_an_abandon_leave_no_valid_token(ticket: OpenTicket) -> None:
    world, opened = ticket
    for _ in range(MAX_REGISTRATION_ATTEMPTS):
        started = await world.registration.start(opened.token)

    await world.registration.abandon(opened.token, started.registration_token, None)

    assert await world.tokens.list_valid() == []
    assert sorted(world.tokens.revoked) == sorted(world.tokens.minted)
    invite = await _invite(world, opened.token)
    assert (invite.registration_token_hash, invite.used_at) == (None, None)
    assert len(await world.audit("registration.abandoned")) == 1
    assert (await world.invites.view(opened.token)).ticket_ref == "T-1"  # the link still works


async def test_concurrent_starts_leave_at_most_one_valid_token(ticket: OpenTicket) -> None:
    world, opened = ticket

    results = await asyncio.gather(
        *(world.registration.start(opened.token) for _ in range(2)), return_exceptions=True
    )

    started = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(error, TooManyAttempts) for error in refused), refused
    assert started
    assert await world.tokens.list_valid() == [started[-1].registration_token]


async def test_finish_checks_the_new_account_then_invites_it_and_revokes_the_token(
    room: OpenRoom,
) -> None:
    world, opened, room_id = room
    started = await world.registration.start(opened.token)
    world.tokens.register(started.registration_token, NEW_USER)

    redeemed = await world.registration.finish(opened.token, NEW_USER, started.registration_token)

    assert (redeemed.session_id, redeemed.user_id, redeemed.room_id) == (
        opened.session_id,
        NEW_USER,
        room_id,
    )
    assert await world.tokens.completed(started.registration_token) is None  # tidied away
    assert (await _invite(world, opened.token)).used_by == NEW_USER
    [invite] = await world.jobs(Action.INVITE)
    assert invite.params["user_id"] == NEW_USER
    assert [e.actor for e in await world.audit("registration.finished")] == [NEW_USER]
    with pytest.raises(InviteGone):
        await world.registration.start(opened.token)


async def test_finish_with_the_token_of_another_invite_is_not_verified(ticket: OpenTicket) -> None:
    world, mine = ticket
    theirs = await world.open_ticket("T-2")
    await world.registration.start(mine.token)
    their_start = await world.registration.start(theirs.token)
    world.tokens.register(their_start.registration_token, NEW_USER)

    with pytest.raises(RegistrationNotVerified):
        await world.registration.finish(mine.token, NEW_USER, their_start.registration_token)

    assert (await _invite(world, mine.token)).used_at is None
    assert await world.jobs(Action.INVITE) == []


async def test_finish_without_a_start_is_not_verified(ticket: OpenTicket) -> None:
    world, opened = ticket

    with pytest.raises(RegistrationNotVerified):
        await world.registration.finish(opened.token, NEW_USER, "made-up-token")

    assert world.tokens.calls == []


async def test_finish_with_a_token_that_made_no_account_is_not_verified(
    ticket: OpenTicket,
) -> None:
    world, opened = ticket
    started = await world.registration.start(opened.token)
    world.tokens.add_user(NEW_USER, world.clock())  # exists, but not made with our token

    with pytest.raises(RegistrationNotVerified):
        await world.registration.finish(opened.token, NEW_USER, started.registration_token)

    assert (await _invite(world, opened.token)).used_at is None


async def test_finish_with_an_account_older_than_the_start_is_not_verified(
    ticket: OpenTicket,
) -> None:
    world, opened = ticket
    started = await world.registration.start(opened.token)
    world.tokens.register(started.registration_token, "@someone:example.org")
    world.tokens.add_user(NEW_USER, world.clock() - CLOCK_SKEW - timedelta(seconds=1))

    with pytest.raises(RegistrationNotVerified):
        await world.registration.finish(opened.token, NEW_USER, started.registration_token)


async def test_finish_with_an_account_on_another_server_is_not_verified(
    ticket: OpenTicket,
) -> None:
    world, opened = ticket
    started = await world.registration.start(opened.token)
    world.tokens.register(started.registration_token, "@new-customer:elsewhere.example")

    with pytest.raises(RegistrationNotVerified):
        await world.registration.finish(
            opened.token, "@new-customer:elsewhere.example", started.registration_token
        )


async def test_abandoning_after_the_account_was_made_tells_the_agent_once(room: OpenRoom) -> None:
    world, opened, _ = room
    started = await world.registration.start(opened.token)
    world.tokens.register(started.registration_token, NEW_USER)

    for _ in range(2):
        await world.registration.abandon(opened.token, started.registration_token, NEW_USER)

    assert await world.notice_texts() == [notices.registration_incomplete(NEW_USER)]
    assert [e.actor for e in await world.audit("registration.incomplete")] == [NEW_USER] * 2
    assert (await _invite(world, opened.token)).used_at is None
    assert await world.jobs(Action.INVITE) == []


async def test_abandoning_with_a_token_of_another_invite_revokes_nothing(
    ticket: OpenTicket,
) -> None:
    world, mine = ticket
    theirs = await world.open_ticket("T-2")
    await world.registration.start(mine.token)
    their_start = await world.registration.start(theirs.token)

    with pytest.raises(RegistrationNotVerified):
        await world.registration.abandon(mine.token, their_start.registration_token, None)

    assert len(await world.tokens.list_valid()) == 2


async def test_a_start_that_cannot_mint_spends_no_attempt(ticket: OpenTicket) -> None:
    world, opened = ticket
    world.tokens.fail_next("mint", HomeserverUnavailable())

    with pytest.raises(HomeserverUnavailable):
        await world.registration.start(opened.token)

    assert (await _invite(world, opened.token)).registration_attempts == 0
    assert await world.tokens.list_valid() == []


async def test_registration_is_refused_when_it_is_not_offered(database: Database) -> None:
    world = build_world(database, registration_enabled=False)
    opened = await world.open_ticket()

    with pytest.raises(RegistrationDisabled):
        await world.registration.start(opened.token)

    assert world.tokens.calls == []


async def test_a_start_that_loses_its_invite_while_minting_leaves_no_valid_token(
    ticket: OpenTicket, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, opened = ticket
    mint = world.tokens.mint

    async def mint_while_the_link_is_redeemed(expires_at: datetime) -> str:
        await world.invites.redeem(opened.token, "@has-an-account:example.net")  # other tab
        return await mint(expires_at)

    monkeypatch.setattr(world.tokens, "mint", mint_while_the_link_is_redeemed)

    with pytest.raises(InviteGone):
        await world.registration.start(opened.token)

    assert await world.tokens.list_valid() == []
