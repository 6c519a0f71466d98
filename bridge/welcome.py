"""When the first notice to someone who has just joined a room may go out.

A client that has just joined asks its homeserver for the members' device keys. Over federation
that answer can come after the bot's first message, and a strict client (one that reads only
devices cross-signed by their owner, Element's "exclude insecure devices") then shows that
message as undecryptable, from an unknown device, for good: matrix-js-sdk tries again only when
a room key arrives, not when a device becomes known. So the first notice waits until the
member's client has shown that it knows the bot's device (its first encrypted message in the
room: it can only encrypt for the bot's device once it has fetched the keys), or for at most
`Settings.first_notice_wait`. Only members on other homeservers wait: on ours the client's key
query is answered locally, well before the bot has posted (issue #13: 0 of 5 joins failed on one
homeserver, 11 of 17 over federation).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import store.jobs
from bridge.ids import UserID, server_of
from bridge.jobs import Action, schedule
from bridge.sessions import Settings
from store import Transaction


def first_notice_wait(settings: Settings, user_id: str) -> timedelta:
    """How long the first notice to `user_id` may wait for their client."""
    if server_of(UserID(user_id)) == settings.server_name:
        return timedelta(0)
    return settings.first_notice_wait


async def schedule_welcome(
    db: Transaction,
    settings: Settings,
    session_id: str,
    user_id: str,
    kind: str,
    now: datetime,
) -> None:
    """The notice (`kind`) for `user_id`, who just joined, after at most `first_notice_wait`."""
    await schedule(
        db,
        Action.NOTICE,
        now,
        session_id=session_id,
        params={"kind": kind, "user_id": user_id},
        run_after=now + first_notice_wait(settings, user_id),
    )


async def release_welcome(db: Transaction, session_id: str, user_id: str, now: datetime) -> bool:
    """`user_id`'s client has shown it knows the bot's device: their first notice may go now.

    True when a notice was waiting for them.
    """
    released = await store.jobs.make_due_for(
        db, session_id, Action.NOTICE.value, now, user_id=user_id
    )
    return released > 0
