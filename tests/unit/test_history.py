"""bridge.matrix.history: `/messages` answers read into RoomEvents, and redaction's answers."""

from __future__ import annotations

from typing import Any, cast

import pytest

from bridge.errors import HomeserverUnavailable, MatrixRequestFailed
from bridge.ids import RoomID
from bridge.matrix.client import BotClient
from bridge.matrix.history import RoomHistory, media_of, redaction_txn_id

ROOM = RoomID("!room:example.org")


class StubBot:
    """Answers `request` with canned (status, body) pairs and records what was asked."""

    client = None  # no crypto: every encrypted event is undecryptable

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, list[str], dict[str, Any] | None, dict[str, str] | None]] = []

    async def request(
        self,
        what: str,
        method: str,
        path: list[str],
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        self.asked.append((method, path, body, query))
        answer = self.answers.pop(0)
        if answer[0] >= 500:
            raise HomeserverUnavailable(f"{what}: {answer[0]}")
        return answer


def _history(bot: StubBot) -> RoomHistory:
    return RoomHistory(cast(BotClient, bot), page_size=3)


def test_media_of_finds_plain_and_encrypted_files_and_thumbnails() -> None:
    content = {
        "msgtype": "m.image",
        "url": "mxc://a/plain",
        "file": {"url": "mxc://a/encrypted"},
        "info": {"thumbnail_url": "mxc://a/thumb", "thumbnail_file": {"url": "mxc://a/et"}},
    }

    assert media_of(content) == (
        "mxc://a/plain",
        "mxc://a/thumb",
        "mxc://a/encrypted",
        "mxc://a/et",
    )
    assert media_of({"msgtype": "m.text", "body": "mxc://a/not-a-file"}) == ()
    assert media_of({"url": "https://example.org/x", "info": "broken"}) == ()


async def test_a_page_says_what_each_event_is_without_its_content() -> None:
    bot = StubBot(
        (
            200,
            {
                "start": "s1",
                "end": "s2",
                "chunk": [
                    {
                        "event_id": "$m",
                        "type": "m.room.message",
                        "sender": "@a:x",
                        "content": {"msgtype": "m.file", "body": "pw.txt", "url": "mxc://x/f"},
                    },
                    {
                        "event_id": "$e",
                        "type": "m.room.encrypted",
                        "sender": "@b:x",
                        "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AAA"},
                    },
                    {
                        "event_id": "$r",
                        "type": "m.room.message",
                        "sender": "@a:x",
                        "content": {},
                        "unsigned": {"redacted_because": {"type": "m.room.redaction"}},
                    },
                    {
                        "event_id": "$s",
                        "type": "m.room.topic",
                        "state_key": "",
                        "sender": "@a:x",
                        "content": {"topic": "T-1"},
                    },
                    {"type": "m.room.message"},  # no event ID: not an event
                ],
            },
        )
    )

    page = await _history(bot).page(ROOM, None, forward=False)

    assert bot.asked == [("GET", ["rooms", ROOM, "messages"], None, {"dir": "b", "limit": "3"})]
    assert (page.start, page.next_token) == ("s1", "s2")
    message, encrypted, redacted, topic = page.events
    assert (message.media, message.redacted, message.state_key) == (("mxc://x/f",), False, None)
    assert (encrypted.undecryptable, encrypted.media) == (True, ())
    assert (redacted.redacted, redacted.media) == (True, ())
    assert (topic.type, topic.state_key) == ("m.room.topic", "")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"start": "a", "chunk": []}, None),  # no `end`: the start of the timeline
        ({"start": "a", "end": "a", "chunk": []}, None),  # an `end` that does not move on
        ({"start": "a", "end": "b", "chunk": []}, "b"),
    ],
)
async def test_the_next_token_ends_the_paging(
    answer: dict[str, Any], expected: str | None
) -> None:
    page = await _history(StubBot((200, answer))).page(ROOM, "a", forward=False)

    assert page.next_token == expected


async def test_a_redaction_reuses_its_transaction_id_and_treats_gone_as_done() -> None:
    bot = StubBot((200, {"event_id": "$redaction"}), (404, {"errcode": "M_NOT_FOUND"}))
    history = _history(bot)

    await history.redact(ROOM, "$secret", "wiped")
    await history.redact(ROOM, "$secret", "wiped")

    [first, second] = bot.asked
    assert first == second  # the same PUT: Synapse answers it with the first redaction
    assert first[1] == ["rooms", ROOM, "redact", "$secret", redaction_txn_id("$secret")]
    assert first[2] == {"reason": "wiped"}
    assert redaction_txn_id("$secret") != redaction_txn_id("$other")


async def test_a_rate_limit_keeps_the_wait_synapse_asks_for() -> None:
    bot = StubBot(
        (429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 2500}),
        (429, {"errcode": "M_LIMIT_EXCEEDED"}),
        (403, {"errcode": "M_FORBIDDEN", "error": "no"}),
    )
    history = _history(bot)

    with pytest.raises(MatrixRequestFailed) as first:
        await history.redact(ROOM, "$x", "wiped")
    with pytest.raises(MatrixRequestFailed) as second:
        await history.page(ROOM, None, forward=True)
    with pytest.raises(MatrixRequestFailed) as refused:
        await history.redact(ROOM, "$x", "wiped")

    assert (first.value.matrix_errcode, first.value.retry_after_ms) == ("M_LIMIT_EXCEEDED", 2500)
    assert (second.value.matrix_errcode, second.value.retry_after_ms) == ("M_LIMIT_EXCEEDED", None)
    assert (refused.value.matrix_errcode, refused.value.retry_after_ms) == ("M_FORBIDDEN", None)
