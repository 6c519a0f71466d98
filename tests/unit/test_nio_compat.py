"""nio behind one door: a version gate, and nio's internals named only in nio_compat.py."""

from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

import pytest

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
