"""Two Synapses on loopback that federate: sealroom's homeserver and a customer's other one.

Most customers with a Matrix account have it on another homeserver. The `federation` fixture
starts both servers once per test session, and only for the tests that ask for it: starting a
federating pair costs a few seconds and two processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from bridge.devtools.localsynapse import LocalSynapse


@dataclass
class Federation:
    """`home` runs sealroom and its bot; `remote` is the customer's homeserver."""

    home: LocalSynapse
    remote: LocalSynapse

    async def stop(self) -> None:
        await asyncio.gather(self.home.stop(), self.remote.stop())


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def federation(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Federation]:
    pair = Federation(
        LocalSynapse(tmp_path_factory.mktemp("synapse-home"), federation=True),
        LocalSynapse(tmp_path_factory.mktemp("synapse-remote"), federation=True),
    )
    try:
        await asyncio.gather(pair.home.start(), pair.remote.start())
        yield pair
    finally:
        await pair.stop()
