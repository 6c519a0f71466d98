"""The customer's page as served: its language, the organisation's branding, and answers that
never carry an internal detail. (What a browser makes of it: tests/e2e/test_landing_a11y.py.)"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

import store.migrate
from bridge.branding import BrandingConfig, FooterLink
from bridge.deliveries import DeliveryService
from bridge.errors import HomeserverUnavailable
from bridge.invites import InviteService
from bridge.registration import RegistrationService
from bridge.sessions import SessionService
from bridge.web.app import make_app
from bridge.web.keys import Readiness, Services, WebSettings
from store import Database
from tests.support.domain import build_world, make_settings
from tests.support.fakes import Clock, FakeRegistrationTokens
from tests.support.logs import captured

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
BRANDING = BrandingConfig(
    organisation="Example & Co",
    accent_colour="#0b5d1e",
    support_contact="help@example.org",
    support_url="mailto:help@example.org",
    footer_links=[FooterLink(text="Privacy policy", url="https://example.org/privacy")],
)


class MintFails(FakeRegistrationTokens):
    async def mint(self, expires_at: datetime) -> str:
        raise HomeserverUnavailable("minting a registration token: TimeoutError")


Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[tuple[Client, Database]]]


@pytest_asyncio.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    opened: list[tuple[Client, Database]] = []

    async def make(branding: BrandingConfig | None = None, **web: Any) -> tuple[Client, Database]:
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'sealroom.db'}")
        await store.migrate.upgrade_to_head(database)
        sessions = SessionService(database, make_settings(), clock=Clock())
        invites = InviteService(database, sessions)
        registration = RegistrationService(database, sessions, invites, MintFails(Clock()))
        app = make_app(
            Services(DeliveryService(database, sessions, invites), invites, registration),
            {},
            WebSettings(
                public_base_url="http://127.0.0.1:8080",
                homeserver_url="https://matrix.example.org",
                server_name="example.org",
                web_client_template=None,
                registration_enabled=True,
                homeserver_browser_url="https://matrix.example.org",
                branding=branding or BrandingConfig(),
                **web,
            ),
            Readiness({}, {}),
        )
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        opened.append((client, database))
        return client, database

    yield make
    for client, database in opened:
        await client.close()
        await database.close()


async def _page(client: Client, **headers: str) -> str:
    response = await client.get(headers.pop("path", "/i"), headers=headers)
    assert response.status == 200
    return await response.text()


def _lang(page: str) -> str:
    match = re.search(r'<html lang="(\w+)">', page)
    assert match
    return match.group(1)


def _title(page: str) -> str:
    match = re.search(r"<title>(.*?)</title>", page, re.S)
    assert match
    return unescape(match.group(1)).strip()


@pytest.mark.parametrize(
    ("accept_language", "lang", "heading"),
    [
        ("de-DE,de;q=0.9,en;q=0.5", "de", "Sicherer Chat für Ihr Support-Ticket"),
        ("fr-FR,fr;q=0.9", "fr", "Discussion sécurisée pour votre ticket d’assistance"),
        ("es", "es", "Chat seguro para su ticket de soporte"),
        ("ja,nl;q=0.5", "en", "Secure chat for your support ticket"),
    ],
)
async def test_the_page_speaks_the_readers_language(
    make_client: MakeClient, accept_language: str, lang: str, heading: str
) -> None:
    client, _ = await make_client()

    page = await _page(client, **{"Accept-Language": accept_language})

    assert _lang(page) == lang
    assert f"<h1>{heading}</h1>" in page
    # The scripts' messages come along, in the same language, from the same catalogue.
    strings = json.loads(unescape(re.search(r"data-strings='([^']*)'", page).group(1)))  # type: ignore[union-attr]
    assert set(strings) >= {"%(address)s is available.", "Copied."}
    if lang == "de":
        assert strings["Copied."] == "Kopiert."


async def test_the_switcher_overrides_the_browser_and_links_every_language(
    make_client: MakeClient,
) -> None:
    client, _ = await make_client()

    page = await _page(client, path="/i?lang=es", **{"Accept-Language": "de"})

    assert _lang(page) == "es"
    links = re.findall(r'<a href="\?lang=(\w+)" lang="\w+"[^>]*>([^<]+)</a>', page)
    assert links == [("en", "English"), ("de", "Deutsch"), ("fr", "Français"), ("es", "Español")]
    assert re.search(r'href="\?lang=es"[^>]*aria-current="true"', page)


async def test_branding_is_shown_and_escaped(make_client: MakeClient, tmp_path: Path) -> None:
    client, _ = await make_client(BRANDING, logo=(SVG, "image/svg+xml"))

    page = await _page(client, **{"Accept-Language": "de"})

    assert _title(page) == "Sicherer Chat mit Example & Co"
    assert "Example &amp; Co" in page
    assert '<img class="logo" src="/branding/logo" alt="">' in page
    assert '<a href="mailto:help@example.org">help@example.org</a>' in page
    assert (
        '<a href="https://example.org/privacy" rel="noopener noreferrer">Privacy policy</a>'
        in page
    )
    logo = await client.get("/branding/logo")
    assert logo.status == 200
    assert logo.content_type == "image/svg+xml"
    assert await logo.read() == SVG
    theme = await client.get("/branding/theme.css")
    assert theme.content_type == "text/css"
    assert await theme.text() == ":root { --accent: #0b5d1e; }\n"
    # Both come from sealroom itself, so the page's CSP stays as strict as before.
    assert "img-src 'self';" in logo.headers["Content-Security-Policy"]


async def test_without_branding_there_is_no_logo_and_the_default_accent(
    make_client: MakeClient,
) -> None:
    client, _ = await make_client()

    page = await _page(client)

    assert "/branding/logo" not in page
    assert _title(page) == "Secure chat for your support ticket"
    assert (await client.get("/branding/logo")).status == 404
    assert "#1f5f99" in await (await client.get("/branding/theme.css")).text()


async def test_an_internal_failure_reaches_the_customer_only_in_general_terms(
    make_client: MakeClient,
) -> None:
    client, database = await make_client()
    world = build_world(database)
    opened = await world.open_ticket("T-1")

    with captured() as log:
        response = await client.post("/i/register/start", json={"token": opened.token})

    assert response.status == 503
    body = await response.json()
    assert body["errcode"] == "SEALROOM_HOMESERVER_UNAVAILABLE"
    assert "TimeoutError" not in body["error"]
    assert "minting" not in body["error"]
    assert body["error"] == (
        "The Matrix homeserver is not reachable right now. Try again in a few minutes."
    )
    # The detail stays in the log, for the admin.
    assert "minting a registration token: TimeoutError" in log.getvalue()
