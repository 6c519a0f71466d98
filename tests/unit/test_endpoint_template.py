"""Homeserver latency is labelled by endpoint: IDs and tokens never become label values."""

from __future__ import annotations

import pytest

from bridge.matrix.client import endpoint_template


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/_matrix/client/v3/sync?since=s1&timeout=25000", "/_matrix/client/v3/sync"),
        ("/_matrix/client/v3/createRoom", "/_matrix/client/v3/createRoom"),
        ("/_matrix/client/v3/devices/ABCDEFGHIJ", "/_matrix/client/v3/devices/{}"),
        (
            "/_matrix/client/v3/rooms/%21abc%3Alocalhost/send/m.room.message/5b8e-41c2",
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
        ),
        (
            "/_matrix/client/v3/rooms/%21abc%3Alocalhost/invite",
            "/_matrix/client/v3/rooms/{}/invite",
        ),
        ("/_matrix/client/r0/profile/%40bot%3Alocalhost", "/_matrix/client/r0/profile/{}"),
        ("/_matrix/client/v3/room_keys/keys?version=1", "/_matrix/client/v3/room_keys/keys"),
    ],
)
def test_templates(path: str, template: str) -> None:
    assert endpoint_template(path) == template
