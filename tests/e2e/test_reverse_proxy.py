"""docs/reverse-proxy.md's nginx and Caddy configurations, taken from the page as they are, in
front of the real service over TLS: webhooks pass with their signatures, the invite page loads,
the proxy's request id is the one sealroom answers with, and /metrics stays private.

Only names, ports and certificate paths are replaced. Skips where nginx or Caddy is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.devtools.localsynapse import free_port
from bridge.helpdesk.kinds.standard_webhooks import signed_headers
from tests.e2e.conftest import Sealroom, SealroomFactory

REPO = Path(__file__).resolve().parents[2]
PAGE = (REPO / "docs" / "reverse-proxy.md").read_text("utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE, flags=re.DOTALL)


async def wait_for_port(port: int, process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.returncode is not None:
            pytest.fail(f"the proxy exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            await asyncio.sleep(0.2)
    pytest.fail(f"the proxy did not listen on {port}:\n{log.read_text()[-3000:]}")


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def through_proxy(base: str, service: Sealroom) -> dict[str, Any]:
    """What a helpdesk and a customer see through the proxy."""
    body = json.dumps(
        {
            "event": "open",
            "ticket": {"id": f"T-PROXY-{os.urandom(3).hex()}", "subject": "via the proxy"},
            "agent": "agent@example.com",
        }
    ).encode()
    seen: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
        async with http.post(
            f"{base}/hooks/test", data=body, headers=signed_headers(service.secret, body)
        ) as response:
            seen["webhook"] = response.status
            seen["request_id"] = response.headers.get("X-Request-ID")
            seen["invite_url"] = (await response.json()).get("invite_url", "")
        async with http.get(f"{base}/i") as response:
            seen["page"] = response.status
            seen["page_text"] = await response.text()
        async with http.get(f"{base}/metrics") as response:
            seen["metrics"] = response.status
        async with http.get(f"{base}/api/v1/sessions") as response:
            seen["api"] = response.status
    return seen


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-days", "1", "-subj", "/CN=sealroom.example.org"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def start_nginx(
    tmp_path: Path, certificate: tuple[Path, Path], https_port: int, upstream: int
) -> asyncio.subprocess.Process:
    site, proxy = blocks("nginx")
    cert, key = certificate
    site = (
        site.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
        .replace("listen [::]:80;\n", "")
        .replace("listen [::]:443 ssl http2;\n", "")
        .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
        .replace("/etc/letsencrypt/live/sealroom.example.org/fullchain.pem", str(cert))
        .replace("/etc/letsencrypt/live/sealroom.example.org/privkey.pem", str(key))
        .replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream};")
        .replace("/etc/nginx/sealroom-proxy.conf", str(tmp_path / "sealroom-proxy.conf"))
    )
    (tmp_path / "sealroom-proxy.conf").write_text(proxy)
    (tmp_path / "sealroom.conf").write_text(site)
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    user = "user root root;\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\nevents {{}}\n"
        "http {\n"
        "  log_format rid '$request_id $status $request_uri';\n"
        f"  access_log {tmp_path}/access.log rid;\n"
        + "".join(
            f"  {kind}_temp_path {temp}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"  include {tmp_path}/sealroom.conf;\n}}\n"
    )
    return await asyncio.create_subprocess_exec(
        "nginx",
        "-p",
        str(tmp_path),
        "-c",
        str(tmp_path / "nginx.conf"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def test_nginx_example_in_front_of_sealroom(
    sealroom: SealroomFactory, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    https_port = free_port()
    service = await sealroom()
    upstream = int(service.url.rsplit(":", 1)[1])
    process = await start_nginx(tmp_path, certificate, https_port, upstream)
    try:
        await wait_for_port(https_port, process, tmp_path / "error.log")
        seen = await through_proxy(f"https://127.0.0.1:{https_port}", service)
    finally:
        await stop(process)

    assert seen["webhook"] == 201
    assert seen["invite_url"].startswith(f"{service.url}/i#")  # public_base_url, as configured
    assert seen["page"] == 200
    assert seen["metrics"] == 404
    assert seen["api"] == 403  # only from the helpdesk's addresses (192.0.2.0/24 in the page)
    # nginx's $request_id is the id sealroom logged and answered with.
    log = (tmp_path / "access.log").read_text()
    assert re.fullmatch(r"[0-9a-f]{32}", seen["request_id"])
    assert f"{seen['request_id']} 201 /hooks/test" in log


async def test_caddy_example_in_front_of_sealroom(
    sealroom: SealroomFactory, tmp_path: Path
) -> None:
    if shutil.which("caddy") is None:
        pytest.skip("Caddy is not installed (apt-get install caddy)")
    [site] = blocks("caddyfile")
    service = await sealroom()
    upstream = int(service.url.rsplit(":", 1)[1])
    http_port, https_port = free_port(), free_port()
    site = site.replace(
        "sealroom.example.org {", f"https://127.0.0.1:{https_port} {{\n\ttls internal"
    ).replace("reverse_proxy 127.0.0.1:8080", f"reverse_proxy 127.0.0.1:{upstream}")
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(
        "{\n\tadmin off\n\tskip_install_trust\n"
        f"\thttp_port {http_port}\n\thttps_port {https_port}\n}}\n\n{site}"
    )
    log = tmp_path / "caddy.log"
    home = tmp_path / "caddy-home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            "caddy",
            "run",
            "--config",
            str(caddyfile),
            "--adapter",
            "caddyfile",
            stdout=out,
            stderr=out,
            env=env,
        )
    try:
        await wait_for_port(https_port, process, log)
        seen = await through_proxy(f"https://127.0.0.1:{https_port}", service)
    finally:
        await stop(process)

    assert seen["webhook"] == 201
    assert seen["page"] == 200
    assert seen["metrics"] == 404
    # Caddy's {http.request.uuid} (with dashes, unlike sealroom's own ids) came through.
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", seen["request_id"]
    )
