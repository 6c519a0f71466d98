"""sealroom as an operator runs it: `python -m bridge run -c config.yaml` in a child process."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bridge.devtools.localsynapse import LocalSynapse, free_port
from bridge.helpdesk.kinds.standard_webhooks import signed_headers


class ServiceProcess:
    """One config and data folder; start, kill and restart the process on it."""

    def __init__(self, folder: Path, config: dict[str, Any], secret: str, port: int) -> None:
        self.folder = folder
        self.config = config
        self.secret = secret
        self.port = port
        self.process: asyncio.subprocess.Process | None = None
        self.runs = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bot_id(self) -> str:
        return str(self.config["bot"]["user_id"])

    @classmethod
    async def create(
        cls,
        synapse: LocalSynapse,
        folder: Path,
        *,
        homeserver_url: str | None = None,
        agents: dict[str, str] | None = None,
    ) -> ServiceProcess:
        password = secrets.token_urlsafe(16)
        bot_id = await synapse.register_user(f"sealroom-proc-{secrets.token_hex(4)}", password)
        # sealroom refuses tickets for unmapped agents: the tests' agent gets an account.
        agent_id = await synapse.register_user(
            f"agent-proc-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
        )
        port = free_port()
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        (folder / "bot_password").write_text(password)
        config = {
            "homeserver": {"url": homeserver_url or synapse.url, "server_name": "localhost"},
            "bot": {"user_id": bot_id, "password_file": "bot_password", "data_dir": "data"},
            "http": {"port": port, "public_base_url": f"http://127.0.0.1:{port}"},
            "integrations": {"test": {"kind": "standard-webhooks", "secret": secret}},
            "agents": agents if agents is not None else {"agent@example.com": agent_id},
            "jobs": {"retry_initial_seconds": 0.2, "retry_max_seconds": 2.0},
            "logging": {"format": "json", "level": "INFO"},
        }
        (folder / "config.yaml").write_text(json.dumps(config))
        return cls(folder, config, secret, port)

    def log_path(self, run: int) -> Path:
        return self.folder / f"run-{run}.log"

    async def start(self) -> None:
        self.runs += 1
        # Logs go to stderr; stdout is for the admin (the recovery key, once).
        log = open(self.log_path(self.runs), "wb")  # noqa: SIM115 (the child owns it)
        out = open(self.stdout_path(self.runs), "wb")  # noqa: SIM115
        self.process = await asyncio.create_subprocess_exec(
            *self._command("run"),
            stdout=out,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        out.close()

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bridge", *args, "-c", str(self.folder / "config.yaml")]

    def stdout_path(self, run: int) -> Path:
        return self.folder / f"run-{run}.out"

    def stdout_text(self, run: int) -> str:
        path = self.stdout_path(run)
        return path.read_text(errors="replace") if path.exists() else ""

    async def cli(self, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        """Run another sub-command on the same config: (exit code, stdout, stderr)."""
        process = await asyncio.create_subprocess_exec(
            *self._command(*args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(stdin), 120)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.returncode is not None:
                    raise AssertionError(f"sealroom exited: {self.log_text(self.runs)[-3000:]}")
                try:
                    async with http.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"not ready after {timeout} s: {self.log_text(self.runs)[-3000:]}")

    async def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a crash or an OOM kill."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            await self.kill()
        return self.process.returncode

    def log_text(self, run: int) -> str:
        path = self.log_path(run)
        return path.read_text(errors="replace") if path.exists() else ""

    def events(self, run: int) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text(run).splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    async def webhook(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = json.dumps(payload).encode()
        headers = signed_headers(self.secret, body)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/hooks/test", data=body, headers=headers) as resp,
        ):
            return resp.status, await resp.json()
