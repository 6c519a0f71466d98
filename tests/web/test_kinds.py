"""Every inbound kind through the real aiohttp app and store: accepted, refused, replayed.

For each kind, a request signed as its vendor documents it opens a session (201); forged,
tampered and (where a timestamp is signed) stale ones are 401 and record nothing; the same
delivery twice acts once and the second answer is the first one again (without the link).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

import store.migrate
from bridge.deliveries import DeliveryService
from bridge.helpdesk.integration import Integration
from bridge.helpdesk.kinds import github_hmac, shared_secret, standard_webhooks, zammad, zendesk
from bridge.helpdesk.presets import PRESETS
from bridge.helpdesk.verifier import Verifier
from bridge.invites import InviteService
from bridge.registration import RegistrationService
from bridge.sessions import SessionService, Settings
from bridge.web.app import make_app
from bridge.web.keys import Readiness, Services, WebSettings
from store import Database, Job, SecureSession, WebhookDelivery
from tests.support import helpdesks
from tests.support.fakes import Clock

SW_SECRET = "whsec_" + "c2VhbHJvb20td2ViLXRlc3Qtc2lnbmluZy1rZXk="
ZD_SECRET = "zendesk-signing-secret-for-the-web-tests"
ZAMMAD_TOKEN = "zammad-hmac-token-for-the-web-tests"
GH_SECRET = "github-hmac-secret-for-the-web-tests"
BEARER = "freshdesk-bearer-token-for-the-web-tests"
JIRA_USER, JIRA_PASSWORD = "jira-automation", "jira-basic-password-for-the-web-tests"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Sender:
    """A helpdesk as it signs: headers for (body, delivery id, time), with the right secret or
    a wrong one."""

    integration: str
    build: Callable[[bytes, str, float, bool], dict[str, str]]
    timestamped: bool
    has_delivery_id: bool

    def headers(self, body: bytes, delivery: str, ts: float, forged: bool = False) -> dict:
        return {"Content-Type": "application/json", **self.build(body, delivery, ts, forged)}


def _pick(forged: bool, good: str, bad: str) -> str:
    return bad if forged else good


SENDERS = [
    Sender(
        "sw",
        lambda b, d, t, f: standard_webhooks.signed_headers(
            _pick(f, SW_SECRET, "whsec_" + "b3RoZXItc2VjcmV0LW9mLWVub3VnaC1sZW5ndGg="),
            b,
            f"msg_{d}",
            int(t),
        ),
        timestamped=True,
        has_delivery_id=True,
    ),
    Sender(
        "zd",
        lambda b, d, t, f: {
            "X-Zendesk-Account-Id": "123456",
            "X-Zendesk-Webhook-Id": "01F1KRFQ6BG29CNWFR60NK5FNY",
            "X-Zendesk-Webhook-Invocation-Id": d,
            "X-Zendesk-Webhook-Signature-Timestamp": _iso(t),
            "X-Zendesk-Webhook-Signature": zendesk.sign(
                _pick(f, ZD_SECRET, "another-zendesk-secret-entirely"), _iso(t), b
            ),
        },
        timestamped=True,
        has_delivery_id=True,
    ),
    Sender(
        "zammad",
        lambda b, d, t, f: {
            "User-Agent": "Zammad User Agent",
            "X-Zammad-Trigger": "sealroom",
            "X-Zammad-Delivery": d,
            "X-Hub-Signature": zammad.sign(_pick(f, ZAMMAD_TOKEN, "another-zammad-token"), b),
        },
        timestamped=False,
        has_delivery_id=True,
    ),
    Sender(
        "gh",
        lambda b, d, t, f: {
            "X-GitHub-Delivery": d,
            "X-Hub-Signature-256": github_hmac.sign(_pick(f, GH_SECRET, "another-gh-secret"), b),
        },
        timestamped=False,
        has_delivery_id=True,
    ),
    Sender(
        "freshdesk",
        lambda b, d, t, f: shared_secret.bearer(_pick(f, BEARER, BEARER + "-not")),
        timestamped=False,
        has_delivery_id=False,
    ),
    Sender(
        "jira",
        lambda b, d, t, f: shared_secret.basic(
            JIRA_USER, _pick(f, JIRA_PASSWORD, JIRA_PASSWORD.upper())
        ),
        timestamped=False,
        has_delivery_id=False,
    ),
]

VERIFIERS: dict[str, Verifier] = {
    "sw": standard_webhooks.StandardWebhooksVerifier(SW_SECRET),
    "zd": zendesk.ZendeskVerifier(ZD_SECRET),
    "zammad": zammad.ZammadVerifier(ZAMMAD_TOKEN),
    "gh": github_hmac.GithubHmacVerifier(GH_SECRET, "X-GitHub-Delivery"),
    "freshdesk": shared_secret.SharedSecretVerifier(token=BEARER),
    "jira": shared_secret.SharedSecretVerifier(username=JIRA_USER, password=JIRA_PASSWORD),
}


@dataclass
class Service:
    client: TestClient[Any, Any]
    database: Database

    async def post(
        self, sender: Sender, payload: Any, *, delivery: str | None = None, **kw: Any
    ) -> ClientResponse:
        body = json.dumps(payload).encode()
        delivery = delivery or secrets.token_hex(8)
        headers = sender.headers(
            body, delivery, kw.pop("ts", time.time()), kw.pop("forged", False)
        )
        body = kw.pop("send_body", body)
        return await self.client.post(f"/hooks/{sender.integration}", data=body, headers=headers)

    async def count(self, model: Any) -> int:
        async with self.database.transaction() as tx:
            return int((await tx.execute(select(func.count()).select_from(model))).scalar_one())


@pytest_asyncio.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'sealroom.db'}")
    await store.migrate.upgrade_to_head(database)
    sessions = SessionService(
        database,
        Settings(
            server_name="example.org",
            invite_lifetime=timedelta(hours=24),
            session_lifetime=timedelta(hours=72),
            name_template="Ticket {ticket_ref}",
            topic_template="Ticket {ticket_ref} ({subject})",
            room_version=None,
            agents={"alice@example.com": "@alice:example.org"},
            integration_agents={"zammad-preset": {"emma@chrispresso.com": "@emma:example.org"}},
        ),
        clock=Clock(),
    )
    invites = InviteService(database, sessions)

    async def ready() -> str | None:
        return None

    app = make_app(
        Services(
            DeliveryService(database, sessions, invites),
            invites,
            RegistrationService(database, sessions, invites, None),
        ),
        {
            **{name: Integration(verifier) for name, verifier in VERIFIERS.items()},
            "zammad-preset": Integration(VERIFIERS["zammad"], PRESETS["zammad"]),
        },
        WebSettings(
            public_base_url="https://sealroom.example.org",
            homeserver_url="https://matrix.example.org",
            server_name="example.org",
            web_client_template=None,
        ),
        Readiness({"database": ready}, {}),
    )
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    yield Service(client, database)
    await client.close()
    await database.close()


OPEN = {"event": "open", "ticket": {"id": "4711", "subject": "VPN"}, "agent": "alice@example.com"}
by_name = pytest.mark.parametrize("sender", SENDERS, ids=lambda s: s.integration)


@by_name
async def test_a_vendor_signed_request_opens_a_session(service: Service, sender: Sender) -> None:
    response = await service.post(sender, OPEN)

    assert response.status == 201, await response.text()
    assert (await response.json())["invite_url"].startswith("https://sealroom.example.org/i#")
    assert await service.count(SecureSession) == 1


SIGNING = [s for s in SENDERS if s.timestamped or s.has_delivery_id]
TAMPERED = json.dumps({**OPEN, "agent": "mallory@example.com"}).encode()


@by_name
async def test_forged_requests_are_401_and_record_nothing(
    service: Service, sender: Sender
) -> None:
    response = await service.post(sender, OPEN, forged=True)

    text = await response.text()
    assert response.status == 401, text
    assert json.loads(text)["errcode"] == "SEALROOM_SIGNATURE_INVALID"
    assert await service.count(SecureSession) == 0
    assert await service.count(WebhookDelivery) == 0


@pytest.mark.parametrize("sender", SIGNING, ids=lambda s: s.integration)
async def test_tampered_requests_are_401_and_record_nothing(
    service: Service, sender: Sender
) -> None:
    response = await service.post(sender, OPEN, send_body=TAMPERED)

    text = await response.text()
    assert response.status == 401, text
    assert json.loads(text)["errcode"] == "SEALROOM_SIGNATURE_INVALID"
    assert await service.count(SecureSession) == 0
    assert await service.count(WebhookDelivery) == 0


@pytest.mark.parametrize(
    "sender", [s for s in SENDERS if s.timestamped], ids=lambda s: s.integration
)
async def test_a_stale_request_is_401(service: Service, sender: Sender) -> None:
    response = await service.post(sender, OPEN, ts=time.time() - 3600)

    assert response.status == 401
    assert "too old" in (await response.json())["error"]
    assert await service.count(SecureSession) == 0


@by_name
async def test_the_same_delivery_twice_acts_once_and_gets_the_first_answer(
    service: Service, sender: Sender
) -> None:
    first = await service.post(sender, OPEN, delivery="delivery-1")
    first_body = await first.json()
    again = await service.post(sender, OPEN, delivery="delivery-1")
    again_body = await again.json()

    assert first.status == again.status == 201
    assert again_body.pop("replayed") is True
    assert "invite_url" not in again_body  # the link is handed over once
    first_body.pop("invite_url")
    assert again_body == first_body
    assert await service.count(SecureSession) == 1
    assert await service.count(WebhookDelivery) == 1
    assert await service.count(Job) == 2  # create_room and expire, once


@pytest.mark.parametrize(
    "sender", [s for s in SENDERS if s.has_delivery_id], ids=lambda s: s.integration
)
async def test_another_delivery_id_is_another_delivery(service: Service, sender: Sender) -> None:
    first = await service.post(sender, OPEN, delivery="delivery-1")
    second = await service.post(sender, OPEN, delivery="delivery-2")

    assert (first.status, second.status) == (201, 200)  # the ticket's session, a fresh link
    assert "invite_url" in await second.json()
    assert await service.count(WebhookDelivery) == 2


@pytest.mark.parametrize(
    "sender", [s for s in SENDERS if s not in SIGNING], ids=lambda s: s.integration
)
async def test_shared_secret_does_not_protect_the_body_as_its_docs_say(
    service: Service, sender: Sender
) -> None:
    """Nothing binds a bearer token or basic credentials to the body: a changed body passes the
    check (here it fails later, on the unmapped agent). This is why the docs say: use TLS, and
    prefer a signing kind."""
    response = await service.post(sender, OPEN, send_body=TAMPERED)

    assert response.status == 422
    assert (await response.json())["errcode"] == "SEALROOM_AGENT_UNKNOWN"


ZAMMAD_PRESET = Sender("zammad-preset", SENDERS[2].build, timestamped=False, has_delivery_id=True)


async def test_a_preset_reads_the_vendors_payload_and_maps_its_agent(service: Service) -> None:
    data = helpdesks.vector("zammad-default-payload.json")

    response = await service.post(ZAMMAD_PRESET, data)

    assert response.status == 201, await response.text()
    async with service.database.transaction() as tx:
        session = (await tx.execute(select(SecureSession))).scalar_one()
    assert (session.ticket_ref, session.subject) == ("10081", "Webhook-Test")
    assert session.agent_user_id == "@emma:example.org"  # the integration's own agents:

    data["ticket"]["state"] = "closed"
    closed = await service.post(ZAMMAD_PRESET, data)
    assert closed.status == 202, await closed.text()


async def test_a_missing_mapped_field_is_400_naming_the_path(service: Service) -> None:
    data = helpdesks.vector("zammad-default-payload.json")
    del data["ticket"]["number"]

    response = await service.post(ZAMMAD_PRESET, data)

    body = await response.json()
    assert response.status == 400, body
    assert body["fields"] == ["/ticket/number"]
    assert "/ticket/number" in body["error"]


async def test_an_unmapped_agent_is_422_naming_the_path_it_came_from(service: Service) -> None:
    data = helpdesks.vector("zammad-default-payload.json")
    data["ticket"]["owner"]["email"] = "nobody@chrispresso.com"

    response = await service.post(ZAMMAD_PRESET, data)

    body = await response.json()
    assert response.status == 422, body
    assert body["fields"] == ["/ticket/owner/email"]
    assert "integrations.zammad-preset.agents" in body["error"]
    assert await service.count(SecureSession) == 0


async def test_a_reassign_hands_over_a_live_session_and_never_opens_one(service: Service) -> None:
    sender = SENDERS[0]
    reassign = {**OPEN, "event": "reassign"}

    lonely = await service.post(sender, reassign)
    assert lonely.status == 404, await lonely.text()
    assert await service.count(SecureSession) == 0

    assert (await service.post(sender, OPEN)).status == 201
    handed = await service.post(sender, reassign)
    assert handed.status == 200, await handed.text()
    assert "invite_url" in await handed.json()
    assert await service.count(SecureSession) == 1
