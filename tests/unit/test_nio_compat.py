"""nio behind one door: a version gate, and nio's internals named only in nio_compat.py."""

from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import vodozemac
from nio import Api, KeysQueryResponse

from bridge.matrix import nio_compat


def test_the_installed_nio_is_a_known_version() -> None:
    assert metadata.version("matrix-nio") in nio_compat.KNOWN_NIO_VERSIONS
    nio_compat.check_nio_version()


@pytest.mark.parametrize("version", ["0.27.0", "0.25.2", "1.0.0", "none"])
def test_an_unknown_nio_version_fails_loudly(version: str) -> None:
    with pytest.raises(nio_compat.NioVersionUnknown) as info:
        nio_compat.check_nio_version(version)
    assert version in info.value.message
    assert "nio_compat.py" in info.value.message
    assert info.value.errcode == "SEALROOM_NIO_VERSION_UNKNOWN"


def test_api_path_percent_encodes_every_segment() -> None:
    path = nio_compat.api_path(["rooms", "!a/b:example.org", "members"], {"at": "s 1"})
    assert path == "/_matrix/client/v3/rooms/%21a%2Fb%3Aexample.org/members?at=s+1"


REPO = Path(__file__).resolve().parents[2]
# Names of nio's Olm machine and private API: an nio upgrade must find them all in nio_compat.py.
NIO_INTERNALS = {
    "olm",
    "_build_path",
    "_account",
    "_algorithms",
    "_encrypt_forwarding_key",
    "is_device_blacklisted",
    "receive_response",
    "inbound_group_store",
    "outbound_group_sessions",
    "session_store",
    "outgoing_to_device_messages",
    "users_for_key_query",
    "uploaded_key_count",
    "verify_json",
    "create_matrix_response",
}


def _imports_nio(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            alias.name.split(".")[0] == "nio" for alias in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nio":
            return True
    return False


def _modules(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (REPO / folder).rglob("*.py"))


def test_nio_is_imported_only_in_the_matrix_adapter_and_not_by_rooms() -> None:
    importers = {
        path.relative_to(REPO).as_posix()
        for path in _modules("bridge", "store")
        if _imports_nio(ast.parse(path.read_text(encoding="utf-8")))
    }
    assert importers
    assert all(path.startswith("bridge/matrix/") for path in importers), importers
    assert "bridge/matrix/rooms.py" not in importers


def test_nio_internals_are_reached_only_through_nio_compat() -> None:
    found = {}
    for path in _modules("bridge"):
        if path.name == "nio_compat.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in NIO_INTERNALS
        }
        if names:
            found[path.relative_to(REPO).as_posix()] = sorted(names)
    assert found == {}


# -- device signatures checked in a worker thread (parse_off_loop) -----------------------------


def _device_payload(account: vodozemac.Account, user_id: str, device_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            f"curve25519:{device_id}": account.curve25519_key.to_base64(),
            f"ed25519:{device_id}": account.ed25519_key.to_base64(),
        },
    }
    signature = account.sign(Api.to_canonical_json(payload).encode()).to_base64()
    payload["signatures"] = {user_id: {f"ed25519:{device_id}": signature}}
    payload["unsigned"] = {"device_display_name": "phone"}
    return payload


def _answer(*payloads: dict[str, Any]) -> KeysQueryResponse:
    answer: dict[str, Any] = {"device_keys": {}, "failures": {}}
    for payload in payloads:
        answer["device_keys"].setdefault(payload["user_id"], {})[payload["device_id"]] = payload
    response = KeysQueryResponse.from_dict(answer)
    assert isinstance(response, KeysQueryResponse)
    return response


def test_only_devices_that_signed_their_own_keys_are_preverified() -> None:
    good = _device_payload(vodozemac.Account(), "@c:example.org", "GOOD")
    forged = _device_payload(vodozemac.Account(), "@c:example.org", "FORGED")
    forged["keys"]["curve25519:FORGED"] = vodozemac.Account().curve25519_key.to_base64()
    response = _answer(good, forged)
    stored = response.device_keys["@c:example.org"]

    verified = nio_compat._preverify(response)

    assert set(verified) == {id(stored["GOOD"])}
    payload, call = verified[id(stored["GOOD"])]
    assert payload is stored["GOOD"]
    assert call == (good["keys"]["ed25519:GOOD"], "@c:example.org", "GOOD")
    assert "signatures" in stored["GOOD"]  # left unchanged
    assert "unsigned" in stored["GOOD"]


def test_nio_trusts_a_thread_check_only_for_that_payload_object_and_that_key_once() -> None:
    asked: list[str] = []

    def nio_verify_json(payload: dict[str, Any], key: str, user_id: str, device_id: str) -> bool:
        asked.append(device_id)
        return False

    olm = SimpleNamespace(verify_json=nio_verify_json)
    client: Any = SimpleNamespace(create_matrix_response=None, olm=olm)
    nio_compat.parse_off_loop(client)
    good = _device_payload(vodozemac.Account(), "@c:example.org", "GOOD")
    response = _answer(good)
    payload = response.device_keys["@c:example.org"]["GOOD"]
    key = good["keys"]["ed25519:GOOD"]
    nio_compat._remember_preverified(client, nio_compat._preverify(response))

    # An equal copy, or the same object under another key or device, is checked by nio.
    assert olm.verify_json(dict(payload), key, "@c:example.org", "GOOD") is False
    assert olm.verify_json(payload, "another key", "@c:example.org", "GOOD") is False
    assert asked == ["GOOD", "GOOD"]
    nio_compat._remember_preverified(client, nio_compat._preverify(response))
    assert olm.verify_json(payload, key, "@c:example.org", "GOOD") is True
    assert asked == ["GOOD", "GOOD"]
    # Used once: the next answer is checked again.
    assert olm.verify_json(payload, key, "@c:example.org", "GOOD") is False
    assert asked == ["GOOD", "GOOD", "GOOD"]
