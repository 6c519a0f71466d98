"""pytest plugin: one real Synapse per test session, Matrix test users and a fault proxy.

Register with ``pytest_plugins = ["tests.support.fixtures"]`` in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from bridge.devtools.localsynapse import LocalSynapse
from tests.support.cross_signing import cross_sign
from tests.support.matrix_users import MatrixUser
from tests.support.proxy import FaultProxy

_counter = itertools.count(1)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def synapse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSynapse]:
    """Starting Synapse costs about 2 s, so every test of the session shares one."""
    server = LocalSynapse(tmp_path_factory.mktemp("synapse"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


MatrixUserFactory = Callable[..., Awaitable[MatrixUser]]


@pytest_asyncio.fixture(loop_scope="session")
async def matrix_user(
    synapse: LocalSynapse, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MatrixUserFactory]:
    """``await matrix_user("alice")`` gives a started user with a unique localpart.

    Keyword arguments: ``homeserver_url`` (e.g. a FaultProxy's url), ``password``,
    ``start=False`` to get a logged-in user that is not syncing yet, ``cross_signed=False`` for a
    device its owner has not verified (what the bot's strict trust policy refuses).
    """
    users: list[MatrixUser] = []

    async def make(
        name: str,
        *,
        homeserver_url: str | None = None,
        password: str | None = None,
        start: bool = True,
        cross_signed: bool = True,
    ) -> MatrixUser:
        localpart = f"{name}-{next(_counter)}-{secrets.token_hex(3)}".lower()
        user = await MatrixUser.create(
            homeserver_url or synapse.url,
            synapse,
            localpart,
            tmp_path_factory.mktemp(f"nio-{name}"),
            password=password,
        )
        users.append(user)
        if start:
            await user.start()
            if cross_signed:
                # Like Element at first login: the device is verified by its owner, which the
                # bot's strict trust policy requires before it shares any key with it.
                await user.wait_until(
                    lambda: user.client.olm is not None and user.client.olm.account.shared,
                    what="device keys uploaded",
                )
                user.cross_signing = await cross_sign(user)
        return user

    yield make
    await asyncio.gather(*(user.stop() for user in users), return_exceptions=True)


@pytest_asyncio.fixture(loop_scope="session")
async def fault_proxy(synapse: LocalSynapse) -> AsyncIterator[FaultProxy]:
    """A FaultProxy in front of the session's Synapse, torn down after the test."""
    proxy = await FaultProxy.start(synapse.url)
    try:
        yield proxy
    finally:
        await proxy.stop()
