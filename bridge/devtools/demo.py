"""`sealroom demo`: the whole flow on one machine, with a local Synapse and SQLite.

Creates (once) a folder with a Synapse, the bot and an agent account, a config that uses
secret files, starts sealroom, sends a signed sample webhook and prints the invite link and the
agent's login. Run it again and it reuses the same accounts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shlex
import signal
import time
from pathlib import Path

from aiohttp import ClientSession

from bridge import logs
from bridge.config_file import load
from bridge.helpdesk.kinds.standard_webhooks import signed_headers

CONFIG_TEMPLATE = """\
# Written by `sealroom demo`. See config.example.yaml for every option.
homeserver:
  url: {homeserver_url}
  server_name: {server_name}
  admin_token_file: secrets/admin_token
bot:
  user_id: "@sealroom:{server_name}"
  password_file: secrets/bot_password
  pickle_key_file: secrets/pickle_key
  data_dir: data
http:
  bind: 127.0.0.1
  port: {port}
  public_base_url: http://127.0.0.1:{port}
integrations:
  demo:
    kind: standard-webhooks
    secret_file: secrets/webhook_secret
agents:
  agent@example.com: "@agent:{server_name}"
registration:
  enabled: true
web_client:
  url_template: null
logging:
  level: INFO
  format: console
"""


def _secret_file(folder: Path, name: str, make: str) -> str:
    path = folder / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make)
    return path.read_text().strip()


DEMO_INTEGRATION = "demo"
DEMO_AGENT = "agent@example.com"


def webhook_command(url: str, secret_file: Path, ticket: str = "DEMO-2") -> str:
    """A shell command (bash, openssl, curl) that sends a signed `open` webhook for `ticket`.

    Signed as Standard Webhooks says: base64 HMAC-SHA256, keyed with the secret's base64 part,
    of "<webhook-id>.<webhook-timestamp>.<body>".
    """
    body = json.dumps(
        {
            "event": "open",
            "ticket": {"id": ticket, "subject": "My own test ticket"},
            "agent": DEMO_AGENT,
            "customer": {"name": "Test Customer"},
        }
    )
    return "\n".join(
        [
            f"secret=$(cat {shlex.quote(str(secret_file))})",
            'id="msg_$(date +%s%N)"; ts=$(date +%s)',
            f"body={shlex.quote(body)}",
            "key=$(printf '%s' \"${secret#whsec_}\" | base64 -d | od -An -v -tx1 | tr -d ' \\n')",
            "sig=$(printf '%s' \"$id.$ts.$body\" | openssl dgst -sha256 -mac HMAC "
            '-macopt "hexkey:$key" -binary | base64)',
            'curl -sS -H "webhook-id: $id" -H "webhook-timestamp: $ts" '
            '-H "webhook-signature: v1,$sig" -H "Content-Type: application/json" '
            f'--data-binary "$body" {url}',
        ]
    )


def how_to_send_a_webhook(port: int, folder: Path) -> str:
    """What the demo prints so that the reader can drive it from their own helpdesk or shell."""
    url = f"http://127.0.0.1:{port}/hooks/{DEMO_INTEGRATION}"
    secret_file = folder / "secrets" / "webhook_secret"
    return (
        "Send your own webhook (another ticket, a new invite link):\n"
        f"  integration: {DEMO_INTEGRATION} (kind standard-webhooks), agent: {DEMO_AGENT}\n"
        f"  URL:         POST {url}\n"
        f"  secret:      in {secret_file} (whsec_...)\n"
        "  with bash, openssl and curl:\n\n"
        + "\n".join(f"    {line}" for line in webhook_command(url, secret_file).splitlines())
        + "\n"
    )


def where_the_recovery_key_went(shown_now: bool, config_path: Path) -> str:
    where = (
        "printed once, in the RECOVERY KEY banner above"
        if shown_now
        else "printed once, in the RECOVERY KEY banner, when this demo first ran"
    )
    return (
        f"The bot's recovery key: {where}. It is saved nowhere else; without it, a bot whose data "
        "folder is lost cannot cross-sign its new device "
        f"(sealroom bot-identity --recovery-key -c {config_path})."
    )


async def run_demo(folder: Path, port: int, exit_after_setup: bool) -> int:
    from bridge.app import App

    try:
        from bridge.devtools.localsynapse import LocalSynapse
    except ImportError:  # pragma: no cover - depends on the install
        print("The demo needs Synapse: pip install 'sealroom[demo]'")
        return 1

    logs.configure("INFO", "console")
    folder.mkdir(parents=True, exist_ok=True)
    synapse = LocalSynapse(folder / "synapse")
    print(f"Starting a local Synapse in {synapse.base_dir} ...")
    await synapse.start()
    try:
        bot_password = _secret_file(folder, "bot_password", secrets.token_urlsafe(24))
        agent_password = _secret_file(folder, "agent_password", secrets.token_urlsafe(12))
        _secret_file(folder, "pickle_key", secrets.token_urlsafe(32))
        webhook_secret = _secret_file(
            folder, "webhook_secret", "whsec_" + base64.b64encode(os.urandom(24)).decode()
        )
        await synapse.register_user("sealroom", bot_password, displayname="Sealroom")
        agent_id = await synapse.register_user("agent", agent_password, displayname="Agent")
        _secret_file(folder, "admin_token", await synapse.admin_token())
        config_path = folder / "config.yaml"
        config_path.write_text(
            CONFIG_TEMPLATE.format(
                homeserver_url=synapse.url, server_name=synapse.server_name, port=port
            )
        )
        config = load(config_path)
        logs.configure("INFO", "console", secrets=[bot_password, webhook_secret])
        app = App(config)
        await app.start()
        try:
            await app.bot.wait_until_synced(60)
            await asyncio.wait_for(app.identity_ready.wait(), 60)
            answer = await _send_sample_webhook(port, webhook_secret)
            print()
            print("sealroom is running. The sample ticket DEMO-1 has a secure session:")
            print(f"  invite link (open it as the customer): {answer['invite_url']}")
            print(f"  homeserver for your Matrix client:     {synapse.url}")
            print(f"  agent login:  {agent_id}  password: {agent_password}")
            print(f"  (the agent's password is also in {folder / 'secrets' / 'agent_password'})")
            print(f"  config used: {config_path}")
            print()
            print(how_to_send_a_webhook(port, folder))
            print(where_the_recovery_key_went(app.recovery_key_shown, config_path))
            print()
            if exit_after_setup:
                await _wait_for_room(app, str(answer["session_id"]))
                print("Room created; stopping (--exit-after-setup).")
                return 0
            print("Press Ctrl-C to stop.")
            await _wait_for_signal()
        finally:
            await app.stop()
    finally:
        await synapse.stop()
    return 0


async def _send_sample_webhook(port: int, secret: str) -> dict[str, object]:
    body = json.dumps(
        {
            "event": "open",
            "ticket": {"id": "DEMO-1", "subject": "Demo: please share the admin login"},
            "agent": DEMO_AGENT,
            "customer": {"name": "Demo Customer"},
        }
    ).encode()
    headers = signed_headers(secret, body)
    async with (
        ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{port}/hooks/{DEMO_INTEGRATION}", data=body, headers=headers
        ) as response,
    ):
        data = await response.json()
        if response.status not in (200, 201):
            raise RuntimeError(f"the sample webhook was refused: {response.status} {data}")
        return dict(data)


async def _wait_for_room(app: object, session_id: str, limit: float = 60) -> None:
    import store.sessions

    from bridge.app import App

    assert isinstance(app, App)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        async with app.database.transaction() as db:
            found = await store.sessions.get(db, session_id)
        if found is not None and found.room_id:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the room was not created within a minute; see the log above")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
