"""The baseline of bench/restart_rss.py: a bare matrix-nio device restarting with its store.

    python bench/_restart_nio_child.py --homeserver URL --folder DIR login USER PASSWORD
    python bench/_restart_nio_child.py --homeserver URL --folder DIR restart

`login` logs in once (a new device of the same account, so in the same rooms), syncs once and
saves the login and the sync token. `restart` is what is timed: restore the login and the crypto
store, one full-state sync from the saved token (as sealroom's first sync after a restart),
then print READY and wait for a line on stdin (the parent reads this process's RSS meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import nio


def _config() -> nio.AsyncClientConfig:
    return nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)


async def login(homeserver: str, folder: Path, user: str, password: str) -> None:
    store = folder / "store"
    store.mkdir(parents=True, exist_ok=True)
    client = nio.AsyncClient(homeserver, user, store_path=str(store), config=_config())
    response = await client.login(password=password, device_name="bench-bare-nio")
    assert isinstance(response, nio.LoginResponse), response
    first = await client.sync(timeout=0, full_state=True)
    assert isinstance(first, nio.SyncResponse), first
    (folder / "login.json").write_text(
        json.dumps(
            {
                "user_id": client.user_id,
                "device_id": client.device_id,
                "access_token": client.access_token,
                "next_batch": client.next_batch,
            }
        )
    )
    print(f"LOGGED-IN rooms={len(client.rooms)}", flush=True)
    await client.close()


async def restart(homeserver: str, folder: Path) -> None:
    saved = json.loads((folder / "login.json").read_text())
    client = nio.AsyncClient(
        homeserver,
        saved["user_id"],
        device_id=saved["device_id"],
        store_path=str(folder / "store"),
        config=_config(),
    )
    client.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
    response = await client.sync(timeout=0, full_state=True, since=saved["next_batch"])
    assert isinstance(response, nio.SyncResponse), response
    print(f"READY rooms={len(client.rooms)}", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--homeserver", required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("mode", choices=["login", "restart"])
    parser.add_argument("user", nargs="?")
    parser.add_argument("password", nargs="?")
    args = parser.parse_args()
    if args.mode == "login":
        asyncio.run(login(args.homeserver, args.folder, args.user, args.password))
    else:
        asyncio.run(restart(args.homeserver, args.folder))


if __name__ == "__main__":
    main()
