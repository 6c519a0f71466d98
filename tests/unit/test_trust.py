"""bridge.matrix.trust: who gets the room key, decided over /keys/query answers.

The module is pure (dicts in, a decision out; no nio). The answers are built with real Ed25519
signatures from bridge.matrix.identity, so "signed" and "not signed" mean what they mean on a
homeserver.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from bridge.matrix import identity, trust
from bridge.matrix.trust import Exclusion

BOT = "@sealroom:example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.net"


def _seed(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


@dataclass(frozen=True)
class Person:
    """A member with a cross-signing identity (master key -> self-signing key -> devices)."""

    user_id: str
    generation: str = "1"

    @property
    def master_seed(self) -> bytes:
        return _seed(f"{self.user_id}/master/{self.generation}")

    @property
    def ssk_seed(self) -> bytes:
        return _seed(f"{self.user_id}/self-signing/{self.generation}")

    @property
    def master(self) -> str:
        return identity.ed25519_public_key(self.master_seed)

    @property
    def ssk(self) -> str:
        return identity.ed25519_public_key(self.ssk_seed)

    def master_key(self) -> dict[str, Any]:
        return identity.cross_signing_key(self.user_id, "master", self.master)

    def self_signing_key(self, *, signed_by_master: bool = True) -> dict[str, Any]:
        key = identity.cross_signing_key(self.user_id, "self_signing", self.ssk)
        if signed_by_master:
            return identity.sign_json(key, self.user_id, self.master, self.master_seed)
        stranger = _seed("a key that is not the master key")
        return identity.sign_json(
            key, self.user_id, identity.ed25519_public_key(stranger), stranger
        )

    def device(self, device_id: str, *, signed: bool = True) -> dict[str, Any]:
        device: dict[str, Any] = {
            "user_id": self.user_id,
            "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"ed25519:{device_id}": f"ed-{device_id}", f"curve25519:{device_id}": "cv"},
        }
        if not signed:
            return device
        return identity.sign_json(device, self.user_id, self.ssk, self.ssk_seed)


def answer(
    *people: Person,
    devices: dict[str, dict[str, dict[str, Any]]] | None = None,
    cross_signing: bool = True,
) -> dict[str, Any]:
    """A /keys/query answer: the people's cross-signing keys and the given devices."""
    result: dict[str, Any] = {
        "device_keys": devices or {},
        "master_keys": {},
        "self_signing_keys": {},
    }
    if cross_signing:
        for person in people:
            result["master_keys"][person.user_id] = person.master_key()
            result["self_signing_keys"][person.user_id] = person.self_signing_key()
    return result


def test_a_cross_signed_device_of_a_new_member_is_trusted_and_its_identity_pinned() -> None:
    alice = Person(ALICE)
    keys = answer(alice, devices={ALICE: {"PHONE": alice.device("PHONE")}})

    decision = trust.decide("strict", keys, [ALICE], {}, bot_user_id=BOT)

    assert decision.excluded == []
    assert decision.new_pins == {ALICE: alice.master}
    assert decision.identity_changes == {}
    assert trust.cross_signed_devices(keys, ALICE) == (alice.master, {"PHONE"})


def test_a_device_its_owner_did_not_sign_is_excluded() -> None:
    alice = Person(ALICE)
    keys = answer(
        alice,
        devices={
            ALICE: {"PHONE": alice.device("PHONE"), "ADDED": alice.device("ADDED", signed=False)}
        },
    )

    decision = trust.decide("strict", keys, [ALICE], {ALICE: alice.master}, bot_user_id=BOT)

    assert decision.excluded == [Exclusion(ALICE, "ADDED", "device_not_cross_signed")]
    assert decision.excluded_devices() == {(ALICE, "ADDED")}
    assert decision.new_pins == {}


def test_a_member_without_cross_signing_has_every_device_excluded_and_nothing_pinned() -> None:
    bob = Person(BOB)
    keys = answer(
        bob,
        devices={BOB: {"B2": bob.device("B2", signed=False), "B1": bob.device("B1")}},
        cross_signing=False,
    )

    decision = trust.decide("strict", keys, [BOB], {}, bot_user_id=BOT)

    assert decision.excluded == [
        Exclusion(BOB, "B1", "no_cross_signing"),
        Exclusion(BOB, "B2", "no_cross_signing"),
    ]
    assert decision.new_pins == {}


def test_a_changed_identity_excludes_every_device_even_cross_signed_ones() -> None:
    old, new = Person(ALICE, "1"), Person(ALICE, "2")
    keys = answer(
        new, devices={ALICE: {"PHONE": new.device("PHONE"), "LAPTOP": new.device("LAPTOP")}}
    )

    decision = trust.decide("strict", keys, [ALICE], {ALICE: old.master}, bot_user_id=BOT)

    assert decision.identity_changes == {ALICE: (old.master, new.master)}
    assert decision.excluded == [
        Exclusion(ALICE, "LAPTOP", "identity_changed"),
        Exclusion(ALICE, "PHONE", "identity_changed"),
    ]
    assert decision.new_pins == {}


def test_the_pinned_identity_unchanged_means_nothing_to_report() -> None:
    alice = Person(ALICE)
    keys = answer(alice, devices={ALICE: {"PHONE": alice.device("PHONE")}})

    decision = trust.decide("strict", keys, [ALICE], {ALICE: alice.master}, bot_user_id=BOT)

    assert decision == trust.TrustDecision()


def test_a_self_signing_key_not_signed_by_the_master_key_vouches_for_nothing() -> None:
    alice = Person(ALICE)
    keys = answer(alice, devices={ALICE: {"PHONE": alice.device("PHONE")}})
    keys["self_signing_keys"][ALICE] = alice.self_signing_key(signed_by_master=False)

    decision = trust.decide("strict", keys, [ALICE], {ALICE: alice.master}, bot_user_id=BOT)

    assert trust.cross_signed_devices(keys, ALICE) == (alice.master, set())
    assert decision.excluded == [Exclusion(ALICE, "PHONE", "device_not_cross_signed")]


def test_a_device_signed_by_the_master_key_directly_is_not_cross_signed() -> None:
    alice = Person(ALICE)
    device = identity.sign_json(
        alice.device("PHONE", signed=False), ALICE, alice.master, alice.master_seed
    )
    keys = answer(alice, devices={ALICE: {"PHONE": device}})

    decision = trust.decide("strict", keys, [ALICE], {ALICE: alice.master}, bot_user_id=BOT)

    assert decision.excluded_devices() == {(ALICE, "PHONE")}


def test_a_device_changed_after_it_was_signed_is_excluded() -> None:
    alice = Person(ALICE)
    tampered = alice.device("PHONE")
    tampered["keys"]["curve25519:PHONE"] = "swapped"
    keys = answer(alice, devices={ALICE: {"PHONE": tampered}})

    decision = trust.decide("strict", keys, [ALICE], {ALICE: alice.master}, bot_user_id=BOT)

    assert decision.excluded_devices() == {(ALICE, "PHONE")}


def test_a_signed_device_listed_under_another_id_or_user_is_excluded() -> None:
    alice, bob = Person(ALICE), Person(BOB)
    keys = answer(
        alice,
        bob,
        devices={
            ALICE: {"OTHER": alice.device("PHONE")},
            BOB: {"PHONE": alice.device("PHONE")},
        },
    )

    decision = trust.decide("strict", keys, [ALICE, BOB], {}, bot_user_id=BOT)

    assert decision.excluded_devices() == {(ALICE, "OTHER"), (BOB, "PHONE")}


def test_a_master_key_object_with_more_than_one_key_counts_as_no_cross_signing() -> None:
    alice = Person(ALICE)
    keys = answer(alice, devices={ALICE: {"PHONE": alice.device("PHONE")}})
    keys["master_keys"][ALICE]["keys"]["ed25519:second"] = "second"

    decision = trust.decide("strict", keys, [ALICE], {}, bot_user_id=BOT)

    assert decision.excluded == [Exclusion(ALICE, "PHONE", "no_cross_signing")]
    assert decision.new_pins == {}


def test_a_pinned_member_who_dropped_cross_signing_is_excluded_without_an_identity_change() -> (
    None
):
    alice = Person(ALICE)
    keys = answer(alice, devices={ALICE: {"PHONE": alice.device("PHONE")}}, cross_signing=False)

    decision = trust.decide("strict", keys, [ALICE], {ALICE: alice.master}, bot_user_id=BOT)

    assert decision.excluded == [Exclusion(ALICE, "PHONE", "no_cross_signing")]
    assert decision.identity_changes == {}


def test_the_bot_and_members_without_devices_are_not_judged() -> None:
    bob = Person(BOB)
    keys = answer(bob, devices={BOT: {"BOTDEVICE": {"user_id": BOT, "device_id": "BOTDEVICE"}}})

    decision = trust.decide("strict", keys, [BOT, BOB], {}, bot_user_id=BOT)

    assert decision.excluded == []
    assert decision.new_pins == {BOB: bob.master}  # known before any device shows up


def test_each_member_is_decided_on_their_own() -> None:
    alice, bob, carol = Person(ALICE), Person(BOB), Person("@carol:example.org")
    old_bob = Person(BOB, "0")
    keys = answer(
        alice,
        bob,
        devices={
            ALICE: {"A": alice.device("A")},
            BOB: {"B": bob.device("B")},
            carol.user_id: {"C": carol.device("C", signed=False)},
        },
    )

    decision = trust.decide(
        "strict", keys, [ALICE, BOB, carol.user_id], {BOB: old_bob.master}, bot_user_id=BOT
    )

    assert decision.new_pins == {ALICE: alice.master}
    assert decision.identity_changes == {BOB: (old_bob.master, bob.master)}
    assert decision.excluded == [
        Exclusion(BOB, "B", "identity_changed"),
        Exclusion(carol.user_id, "C", "no_cross_signing"),
    ]


def test_tofu_trusts_every_listed_device_and_pins_nothing() -> None:
    bob = Person(BOB)
    keys = answer(bob, devices={BOB: {"B": bob.device("B", signed=False)}}, cross_signing=False)

    decision = trust.decide("tofu", keys, [BOB], {BOB: "some pin"}, bot_user_id=BOT)

    assert decision == trust.TrustDecision()
