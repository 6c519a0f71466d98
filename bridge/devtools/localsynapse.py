"""A real, throwaway Synapse on 127.0.0.1 for the demo and the end-to-end tests.

Mocks of a homeserver hide exactly the behaviour sealroom must survive (E2EE key traffic,
registration flows, rate limits), so the demo and the tests run against the real thing. The
server is configured once per directory and reused afterwards, so a restarted demo keeps its
accounts, rooms and devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["LocalSynapse", "free_port"]

ADMIN_LOCALPART = "sealroom-admin"

# Large enough that no test or demo ever hits a limit, small enough to stay a float/int.
_UNLIMITED = {"per_second": 1000, "burst_count": 10000}

# Every rate limiter Synapse 1.163 reads (synapse/config/ratelimiting.py). Lifted because
# tests create users, rooms and logins far faster than a human and would get 429s otherwise.
_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {
        "address": _UNLIMITED,
        "account": _UNLIMITED,
        "failed_attempts": _UNLIMITED,
    },
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {
        "per_room": _UNLIMITED,
        "per_user": _UNLIMITED,
        "per_issuer": _UNLIMITED,
    },
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
}

_LOG_CONFIG = """\
# Written by sealroom: warnings and errors only, so the log stays readable in test failures.
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {log_path}
    encoding: utf8
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"""


def free_port() -> int:
    """Ask the kernel for a port that is free right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    """Last lines of a log, for error messages that explain why Synapse did not come up."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return "(no log)"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def write_self_signed_certificate(cert_path: Path, key_path: Path, days: int = 30) -> None:
    """A certificate for "localhost" signed by its own key: the federation listener must speak
    TLS, and the other test server is told not to verify it (`federation_verify_certificates`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_path, key_bytes.decode("ascii"))


def _resources(listener: dict[str, Any]) -> list[str]:
    """The resource names a listener of homeserver.yaml serves ("client", "federation")."""
    return [
        str(name)
        for resource in listener.get("resources") or []
        for name in resource.get("names") or []
    ]


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only: it holds a password and a token."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


class LocalSynapse:
    """One Synapse process on 127.0.0.1, with its config, database and log in ``base_dir``.

    With ``federation=True`` it also federates with other such servers on loopback: its server
    name is ``localhost:<federation port>`` (so peers connect straight to that port, with no
    DNS or .well-known), and a second listener speaks TLS with a self-signed certificate.
    """

    def __init__(
        self,
        base_dir: Path,
        server_name: str = "localhost",
        port: int | None = None,
        *,
        federation: bool = False,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.config_path = self.base_dir / "homeserver.yaml"
        self.log_path = self.base_dir / "synapse.log"
        self.admin_path = self.base_dir / "admin.json"
        self.federation = federation
        self.federation_port: int | None = None
        if federation:
            self.federation_port = self._configured_port("federation") or free_port()
            server_name = f"localhost:{self.federation_port}"
        self.server_name = server_name
        existing = self._configured_port("client")
        self._port_requested = port
        self.port: int = port if port is not None else existing or free_port()
        self._process: asyncio.subprocess.Process | None = None
        self._log_fh: Any = None
        self._admin_lock = asyncio.Lock()

    @property
    def url(self) -> str:
        """Base URL for clients; IPv4 literal so nothing ever resolves "localhost" to ::1."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    # -- configuration -----------------------------------------------------------------------

    def _configured_port(self, resource: str) -> int | None:
        """Port of the listener serving `resource` in an existing config, so a restarted
        server keeps its URL (and a federating one its server name)."""
        if not self.config_path.exists():
            return None
        config = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        for listener in config.get("listeners") or []:
            if not isinstance(listener, dict) or not isinstance(listener.get("port"), int):
                continue
            if resource in _resources(listener):
                return int(listener["port"])
        return None

    async def _generate_config(self) -> None:
        """Let Synapse write its own config and keys, then make it local, quiet and unlimited."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "synapse.app.homeserver",
            "--generate-config",
            "--server-name",
            self.server_name,
            "--config-path",
            str(self.config_path),
            "--data-directory",
            str(self.base_dir),
            "--report-stats=no",
            cwd=str(self.base_dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(
                f"synapse --generate-config failed ({proc.returncode}):\n"
                + out.decode("utf-8", "replace")
            )
        config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        (self.base_dir / f"{self.server_name}.log.config").unlink(missing_ok=True)  # unused
        self._rewrite_config(config)

    def _rewrite_config(self, config: dict[str, Any]) -> None:
        """Apply sealroom's settings to a generated config and save it."""
        log_config_path = self.base_dir / "log.yaml"
        log_config_path.write_text(
            _LOG_CONFIG.format(log_path=json.dumps(str(self.log_path))), encoding="utf-8"
        )
        config.update(
            {
                "server_name": self.server_name,
                "listeners": [self._client_listener()],
                "database": {
                    "name": "sqlite3",
                    "args": {"database": str(self.base_dir / "homeserver.db")},
                },
                "log_config": str(log_config_path),
                "media_store_path": str(self.base_dir / "media_store"),
                "registration_shared_secret": secrets.token_urlsafe(32),
                "enable_registration": True,
                "registration_requires_token": True,
                "report_stats": False,
                "trusted_key_servers": [],
                "suppress_key_server_warning": True,
                "presence": {"enabled": False},
                "url_preview_enabled": False,
                "enable_metrics": False,
                **_RATE_LIMITS,
            }
        )
        if self.federation:
            config.update(self._federation_settings())
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def _client_listener(self) -> dict[str, Any]:
        """The client-server API on plain HTTP, loopback only."""
        return {
            "port": self.port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": False,
            "x_forwarded": False,
            "resources": [{"names": ["client"], "compress": False}],
        }

    def _federation_settings(self) -> dict[str, Any]:
        """A TLS federation listener, and outbound federation allowed to loopback peers with
        self-signed certificates (Synapse refuses both by default, rightly, in production)."""
        assert self.federation_port is not None
        cert_path = self.base_dir / "federation.crt"
        key_path = self.base_dir / "federation.key"
        write_self_signed_certificate(cert_path, key_path)
        listener = {
            "port": self.federation_port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": True,
            "x_forwarded": False,
            "resources": [{"names": ["federation"], "compress": False}],
        }
        return {
            "listeners": [
                self._client_listener(),
                listener,
            ],
            "tls_certificate_path": str(cert_path),
            "tls_private_key_path": str(key_path),
            "federation_verify_certificates": False,
            "ip_range_blacklist": [],
            "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
            "trusted_key_servers": [],
            "allow_public_rooms_over_federation": False,
        }

    def _ensure_port_in_config(self) -> None:
        """An explicit port wins over the one saved in an existing config."""
        config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        listeners = config.get("listeners") or []
        client = [listener for listener in listeners if "client" in _resources(listener)]
        if client and client[0].get("port") != self.port:
            client[0]["port"] = self.port
            self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def _shared_secret(self) -> str:
        config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        secret = config.get("registration_shared_secret")
        if not isinstance(secret, str) or not secret:
            raise RuntimeError(f"no registration_shared_secret in {self.config_path}")
        return secret

    # -- process -----------------------------------------------------------------------------

    async def start(self, timeout: float = 60) -> None:  # noqa: ASYNC109 (documented API)
        """Start Synapse (configuring it on first use) and wait until it answers clients."""
        if self.running:
            return
        if not self.config_path.exists():
            await self._generate_config()
        elif self._port_requested is not None:
            self._ensure_port_in_config()
        self._log_fh = self.log_path.open("ab")
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "synapse.app.homeserver",
            "-c",
            str(self.config_path),
            cwd=str(self.base_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=self._log_fh,
            start_new_session=True,  # a Ctrl-C meant for the demo must not kill it mid-write
        )
        try:
            await self._wait_ready(timeout)
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self, limit: float) -> None:
        """Poll /versions; fail fast with the log if the process dies."""
        assert self._process is not None
        deadline = time.monotonic() + limit
        versions = f"{self.url}/_matrix/client/versions"
        client_timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            while True:
                if self._process.returncode is not None:
                    raise RuntimeError(
                        f"Synapse exited with {self._process.returncode} during startup; "
                        f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                    )
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(versions) as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Synapse did not answer {versions} within {limit:.0f} s; "
                        f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                    )
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; safe to call twice."""
        proc, self._process = self._process, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    async def __aenter__(self) -> LocalSynapse:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- accounts ----------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, self.url + path, json=body, headers=headers) as resp,
        ):
            data = await resp.json(content_type=None)
            return resp.status, data if isinstance(data, dict) else {}

    async def admin_get(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET `path` (the admin API, `/_synapse/admin/...`) as the server admin: what the
        homeserver itself holds, not a client's cache."""
        return await self._request("GET", path, token=await self.admin_token())

    async def register_user(
        self,
        localpart: str,
        password: str,
        admin: bool = False,
        displayname: str | None = None,
    ) -> str:
        """Create an account with the shared secret, no token or UIA needed; idempotent."""
        path = "/_synapse/admin/v1/register"
        status, data = await self._request("GET", path)
        if status != 200 or "nonce" not in data:
            raise RuntimeError(f"GET {path} failed: {status} {data}")
        nonce = str(data["nonce"])
        mac = hmac.new(self._shared_secret().encode(), digestmod=hashlib.sha1)
        mac.update(nonce.encode())
        mac.update(b"\x00")
        mac.update(localpart.encode())
        mac.update(b"\x00")
        mac.update(password.encode())
        mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
            # Without this Synapse also logs the user in, leaving a keyless device behind.
            "inhibit_login": True,
        }
        if displayname is not None:
            body["displayname"] = displayname
        status, data = await self._request("POST", path, body)
        if status == 200:
            return str(data["user_id"])
        if data.get("errcode") == "M_USER_IN_USE":
            return f"@{localpart.lower()}:{self.server_name}"
        raise RuntimeError(f"registering {localpart!r} failed: {status} {data}")

    async def login(
        self, user_id: str, password: str, device_id: str | None = None
    ) -> dict[str, str]:
        """Password login; every call without ``device_id`` creates a new device."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
        }
        if device_id is not None:
            body["device_id"] = device_id
        status, data = await self._request("POST", "/_matrix/client/v3/login", body)
        if status != 200:
            raise RuntimeError(f"login of {user_id} failed: {status} {data}")
        return {
            "access_token": str(data["access_token"]),
            "device_id": str(data["device_id"]),
            "user_id": str(data["user_id"]),
        }

    async def admin_token(self) -> str:
        """Token of the server admin, kept in admin.json so restarts reuse one device."""
        async with self._admin_lock:
            saved: dict[str, Any] = {}
            if self.admin_path.exists():
                saved = json.loads(self.admin_path.read_text(encoding="utf-8"))
            token = saved.get("access_token")
            if isinstance(token, str) and token:
                status, _ = await self._request(
                    "GET", "/_matrix/client/v3/account/whoami", token=token
                )
                if status == 200:
                    return token
            password = saved.get("password")
            if not isinstance(password, str) or not password:
                password = secrets.token_urlsafe(24)
                saved = {"password": password}
                _write_private(self.admin_path, json.dumps(saved))
            user_id = await self.register_user(ADMIN_LOCALPART, password, admin=True)
            session = await self.login(user_id, password, device_id=saved.get("device_id"))
            saved.update(session)
            _write_private(self.admin_path, json.dumps(saved))
            return session["access_token"]
