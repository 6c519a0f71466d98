"""One raw config for every sealroom a test or the bench starts, in process or as a child.

The in-process service (tests/e2e/conftest.py) parses the dict, the child process
(tests/support/service_process.py) reads it from its config.yaml; each caller's differences are
the arguments, so a new required option is added here once.
"""

from __future__ import annotations

import base64
import os
import secrets
from typing import Any

from bridge.devtools.localsynapse import LocalSynapse

AGENT = "agent@example.com"  # the helpdesk agent the tests' webhooks name


def webhook_secret() -> str:
    """A fresh Standard Webhooks signing secret."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


async def fresh_agents(synapse: LocalSynapse, localpart: str) -> dict[str, str]:
    """sealroom refuses tickets for unmapped agents: map the tests' agent to a fresh account."""
    return {AGENT: await synapse.register_user(localpart, secrets.token_urlsafe(16))}


def service_config(
    homeserver_url: str,
    data_dir: str,
    *,
    bot_id: str,
    port: int,
    secret: str,
    agents: dict[str, str],
    log_level: str,
    bot_password: str | None = None,
    bot_password_file: str | None = None,
    pickle_key: str | None = None,
    admin_token: str | None = None,
    request_timeout_seconds: float | None = None,
    database_url: str | None = None,
    jobs: dict[str, Any] | None = None,
    integration: str = "test",
    server_name: str = "localhost",
    **sections: Any,
) -> dict[str, Any]:
    """The config of a service on 127.0.0.1:`port` with one webhook integration.

    Options left as None are left out (the product's default). `sections` replace whole
    top-level sections, e.g. ``registration={"enabled": True}``.
    """
    bot = {"user_id": bot_id, "data_dir": data_dir}
    homeserver: dict[str, Any] = {"url": homeserver_url, "server_name": server_name}
    optional = (
        (bot, "password", bot_password),
        (bot, "password_file", bot_password_file),
        (bot, "pickle_key", pickle_key),
        (homeserver, "request_timeout_seconds", request_timeout_seconds),
        (homeserver, "admin_token", admin_token),
    )
    for section, key, value in optional:
        if value is not None:
            section[key] = value
    raw: dict[str, Any] = {
        "homeserver": homeserver,
        "bot": bot,
        "http": {"bind": "127.0.0.1", "port": port, "public_base_url": f"http://127.0.0.1:{port}"},
        "integrations": {integration: {"kind": "standard-webhooks", "secret": secret}},
        "agents": agents,
        "logging": {"level": log_level, "format": "json"},
    }
    if database_url is not None:
        raw["database"] = {"url": database_url}
    if jobs is not None:
        raw["jobs"] = jobs
    raw.update(sections)
    return raw
