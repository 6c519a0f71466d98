"""bridge.matrix.rooms: the createRoom body of a secure room (what Synapse is asked to write)."""

from __future__ import annotations

from bridge.ids import UserID
from bridge.matrix.rooms import PRESET, SESSION_KEY, create_room_body
from bridge.ports import RoomSpec

BOT = UserID("@bot:example.org")
AGENT = UserID("@agent:example.org")
SPEC = RoomSpec(
    alias_localpart="sealroom-s1",
    name="Ticket T-1",
    topic="only for sharing credentials",
    session_id="s1",
    invite=(AGENT,),
    agent_user_id=AGENT,
)


def _state(body: dict[str, object]) -> dict[str, dict[str, object]]:
    initial = body["initial_state"]
    assert isinstance(initial, list)
    return {event["type"]: event["content"] for event in initial}


def test_every_default_of_the_preset_that_is_not_ours_is_replaced() -> None:
    """public_chat writes a public join rule and shared history: both replaced here, and its
    power levels by the override (a key of the override replaces the preset's whole key)."""
    body = create_room_body(SPEC, BOT, "12")
    assert PRESET == body["preset"] == "public_chat"
    assert body["visibility"] == "private"
    state = _state(body)
    assert state["m.room.join_rules"] == {"join_rule": "invite"}
    assert state["m.room.history_visibility"] == {"history_visibility": "joined"}
    assert state["m.room.encryption"] == {"algorithm": "m.megolm.v1.aes-sha2"}
    levels = body["power_level_content_override"]
    assert isinstance(levels, dict)
    assert {"users", "events", "invite", "state_default", "events_default"} <= set(levels)
    assert levels["users"] == {AGENT: 50}  # room version 12: the creator is not listed


def test_the_room_costs_as_few_events_as_the_rules_allow() -> None:
    """The session id is in the create event; no guest access or marker state event."""
    body = create_room_body(SPEC, BOT, "10")
    assert body["creation_content"] == {"m.federate": True, SESSION_KEY: "s1"}
    assert set(_state(body)) == {
        "m.room.encryption",
        "m.room.join_rules",
        "m.room.history_visibility",
    }
    assert body["room_alias_name"] == "sealroom-s1"  # exactly-once creation, landing links
    assert (body["name"], body["topic"], body["invite"]) == (SPEC.name, SPEC.topic, [AGENT])
    assert body["room_version"] == "10"
    levels = body["power_level_content_override"]
    assert isinstance(levels, dict)
    assert levels["users"] == {BOT: 100, AGENT: 50}
