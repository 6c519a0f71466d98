"""Typed application state (aiohttp AppKeys)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from bridge.branding import BrandingConfig
from bridge.deliveries import DeliveryService
from bridge.helpdesk.integration import Integration
from bridge.invites import InviteService
from bridge.registration import RegistrationService
from bridge.session_queries import SessionQueries


@dataclass(frozen=True)
class Services:
    """The domain services the HTTP handlers call."""

    deliveries: DeliveryService
    invites: InviteService
    registration: RegistrationService


@dataclass(frozen=True)
class WebSettings:
    public_base_url: str
    homeserver_url: str
    server_name: str
    web_client_template: str | None
    # Account creation from the invite page (the browser talks to the homeserver directly).
    registration_enabled: bool = False
    homeserver_browser_url: str = ""
    password_min_length: int = 12
    # The organisation's look on the customer's page (config `branding:`); the logo's bytes and
    # media type are read once at start.
    branding: BrandingConfig = BrandingConfig()
    logo: tuple[bytes, str] | None = None


@dataclass(frozen=True)
class Readiness:
    """Checks /readyz runs; each returns None when fine or a short reason.

    `checks` gate readiness; `notes` are reported but never make the service unready (a job
    that gave up needs an admin, not a restart loop).
    """

    checks: dict[str, Callable[[], Awaitable[str | None]]]
    notes: dict[str, Callable[[], Awaitable[str | None]]]


@dataclass(frozen=True)
class SessionApi:
    """The session API's service and the SHA-256 of its bearer token (None: the API is off).

    Only the digest is kept, so the token is in no repr and no traceback of the web layer.
    """

    queries: SessionQueries
    token_sha256: bytes | None


SERVICES = web.AppKey("services", Services)
INTEGRATIONS = web.AppKey("integrations", dict[str, Integration])
SETTINGS = web.AppKey("settings", WebSettings)
READINESS = web.AppKey("readiness", Readiness)
SESSION_API = web.AppKey("session_api", SessionApi)
