"""The nio version gate: sealroom refuses an nio whose internals nobody checked."""

from __future__ import annotations

from importlib import metadata

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
