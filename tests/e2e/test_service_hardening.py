"""The real service (`python -m bridge run`, real Synapse): private files, slow clients dropped.

Every file sealroom creates in its data directory is 0600 and every folder 0700 (the SQLite
database and its WAL files, nio's crypto store, the lock and state files), also when an older
version left the folder and its files readable by others. A client that never finishes its
request headers is disconnected after http.client_timeout_seconds.
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from bridge.devtools.localsynapse import LocalSynapse
from tests.support.service_process import ServiceProcess

WAIT = 60.0  # the most any wait below may take before the test fails instead of hanging


def loose_modes(data_dir: Path) -> list[str]:
    """Everything under `data_dir` (itself included) that a group or other user could use."""
    found = []
    for path in [data_dir, *sorted(data_dir.rglob("*"))]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        mode = stat.S_IMODE(info.st_mode)
        wanted = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        if mode & 0o077 or (stat.S_ISREG(info.st_mode) and mode != wanted):
            found.append(f"{path.relative_to(data_dir.parent)} {oct(mode)}")
    return found


async def test_files_are_private_and_stalled_clients_are_dropped(
    synapse: LocalSynapse, tmp_path: Path
) -> None:
    service = await ServiceProcess.create(synapse, tmp_path)
    service.config["http"]["client_timeout_seconds"] = 1
    service.write_config()
    # What an older version left behind: a folder and a lock file anyone could read.
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / "bot.lock").touch(mode=0o644)
    (data_dir / "bot.lock").chmod(0o644)

    await service.start()
    try:
        await service.wait_ready()
        status, body = await service.webhook(
            {
                "event": "open",
                "ticket": {"id": "T-700", "subject": "modes"},
                "agent": "agent@example.com",
            }
        )
        assert status == 201, body

        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        writer.write(b"GET /healthz HT")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # closed by the server
        writer.close()

        names = {p.name for p in data_dir.iterdir()}
        assert {"sealroom.db", "sealroom.db-wal", "crypto", "bot.lock", "bot.json"} <= names
        assert any((data_dir / "crypto").iterdir()), "nio's store was not written yet"
        assert loose_modes(data_dir) == []
    finally:
        assert await service.stop() == 0, service.log_text(service.runs)[-2000:]

    assert loose_modes(data_dir) == []
    events = [e.get("event") for e in service.events(service.runs)]
    assert "http.header_timeout" in events
    assert "Traceback" not in service.log_text(service.runs)
