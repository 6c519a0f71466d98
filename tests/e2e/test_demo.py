"""The demo tells its reader how to drive it: the signed webhook it prints really opens a
session on the real service, the README shows the same command, and `sealroom demo` prints
where everything is (integration, URL, secret file, the bot's recovery key)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from bridge.devtools.demo import how_to_send_a_webhook, webhook_command
from bridge.devtools.localsynapse import free_port
from tests.e2e.conftest import SealroomFactory

REPO = Path(__file__).resolve().parents[2]


async def test_the_printed_webhook_command_opens_a_session(
    sealroom: SealroomFactory, tmp_path: Path
) -> None:
    for tool in ("bash", "openssl", "curl", "base64", "od"):
        assert shutil.which(tool), f"{tool} is needed by the printed command"
    service = await sealroom()  # its integration "test" maps agent@example.com, as the demo does
    secret_file = tmp_path / "webhook_secret"
    secret_file.write_text(service.secret + "\n")
    command = webhook_command(f"{service.url}/hooks/test", secret_file, ticket="T-CURL")

    process = await asyncio.create_subprocess_exec(
        "bash", "-c", command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode == 0, err.decode()
    answer = json.loads(out)
    assert answer["invite_url"].startswith(f"{service.url}/i#")
    await service.wait_for_room(answer["session_id"])


def test_the_readme_shows_the_command_the_demo_prints() -> None:
    command = webhook_command(
        "http://127.0.0.1:8080/hooks/demo", Path("sealroom-demo/secrets/webhook_secret")
    )

    assert f"```sh\n{command}\n```" in (REPO / "README.md").read_text("utf-8")


@pytest.mark.timeout(400)
async def test_the_demo_prints_how_to_send_a_webhook_and_where_the_key_went(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "demo",
        "--dir",
        str(folder),
        "--port",
        str(port),
        "--exit-after-setup",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 360)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = out.decode()

    assert process.returncode == 0, err.decode()[-3000:]
    assert how_to_send_a_webhook(port, folder) in text
    assert (folder / "secrets" / "webhook_secret").read_text().startswith("whsec_")
    # First run: the key is in the banner above the summary, and the summary says so.
    banner = re.search(r"Its RECOVERY KEY is:\n\n    (\S.*)\n", text)
    assert banner is not None
    assert "The bot's recovery key: printed once, in the RECOVERY KEY banner above." in text
    assert banner.group(1) not in text[banner.end() :]  # printed once only
