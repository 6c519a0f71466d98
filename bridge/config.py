"""The configuration's schema: every section and key, its default and its validation.

Reading a file into a `Config` (`${ENV}` interpolation, `*_file` secrets, relative paths, every
problem in one error) is bridge.config_file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, SecretStr, field_validator

from bridge.branding import BrandingConfig
from bridge.config_fields import Section, check_http_url, read_secret
from bridge.helpdesk.kinds import option_models
from bridge.helpdesk.verifier import IntegrationOptions
from bridge.ids import agent_map, is_user_id

# How long a client may take to send a request's headers, and then its body (slowloris).
DEFAULT_CLIENT_TIMEOUT_SECONDS = 20.0

_Section = Section
_check_http_url = check_http_url
_secret = read_secret


class HomeserverConfig(_Section):
    url: str
    server_name: str
    # The URL customers' browsers use to reach the homeserver (account creation); default: url.
    public_url: str | None = None
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None
    request_timeout_seconds: float = Field(default=30, gt=0, le=300)

    _url = field_validator("url")(_check_http_url)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)

    @property
    def browser_url(self) -> str:
        return self.public_url or self.url

    def admin_token_value(self) -> str | None:
        secret = _secret(self.admin_token, self.admin_token_file, "admin_token", required=False)
        return secret.get_secret_value() if secret else None


class BotConfig(_Section):
    user_id: str
    password: SecretStr | None = None
    password_file: Path | None = None
    access_token: SecretStr | None = None
    access_token_file: Path | None = None
    device_name: str = "sealroom"
    display_name: str = "Sealroom"
    data_dir: Path = Path("./data")
    pickle_key: SecretStr | None = None
    pickle_key_file: Path | None = None

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, value: str) -> str:
        if not is_user_id(value):
            raise ValueError("must be a Matrix user ID like @sealroom:example.org")
        return value

    def password_value(self) -> str | None:
        secret = _secret(self.password, self.password_file, "password", required=False)
        return secret.get_secret_value() if secret else None

    def access_token_value(self) -> str | None:
        secret = _secret(self.access_token, self.access_token_file, "access_token", required=False)
        return secret.get_secret_value() if secret else None

    def pickle_key_value(self) -> str | None:
        secret = _secret(self.pickle_key, self.pickle_key_file, "pickle_key", required=False)
        return secret.get_secret_value() if secret else None


class DatabaseConfig(_Section):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                "(for example postgresql+asyncpg://sealroom@db/sealroom)"
            )
        return value


class HttpConfig(_Section):
    bind: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_base_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = Field(default=65536, ge=1024, le=10 * 1024 * 1024)
    # A client must send a request's headers, and then its body, within this many seconds.
    client_timeout_seconds: float = Field(default=DEFAULT_CLIENT_TIMEOUT_SECONDS, gt=0, le=300)

    _url = field_validator("public_base_url")(_check_http_url)


if TYPE_CHECKING:
    IntegrationConfig = IntegrationOptions
else:
    # One model per kind (bridge/helpdesk/kinds/), chosen by the `kind` key.
    IntegrationConfig = Annotated[Union[option_models()], Field(discriminator="kind")]  # noqa: UP007


_TEMPLATE_FIELDS = {"ticket_ref": "T-1", "subject": "subject", "integration": "helpdesk"}


def _check_template(value: str) -> str:
    try:
        value.format(**_TEMPLATE_FIELDS)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"bad placeholder {err}; use only {{ticket_ref}}, {{subject}} and {{integration}}"
        ) from None
    return value


class RoomsConfig(_Section):
    name_template: str = "Ticket {ticket_ref}: secure credentials"
    # The homeserver reads room names and topics: by default they carry only the ticket's
    # reference; the subject goes into the encrypted welcome notices.
    topic_template: str = (
        "Secure room for ticket {ticket_ref}. This room is only for sharing credentials; it is "
        "wiped when the ticket is done."
    )
    lifetime_hours: float = Field(default=72, gt=0, le=24 * 90)
    # The agent is warned in the room this long before the session expires (0: no warning).
    expiry_warning_minutes: int = Field(default=60, ge=0, le=24 * 60)
    room_version: str | None = None
    # false: zero-knowledge mode; the bot leaves once the customer and the agent have joined,
    # before anything is shared, so it never holds a key to what is said (needs an admin token).
    bot_stays: bool = True
    # Close (and wipe) a room in which nothing was said for this many hours; None: never.
    idle_hours: float | None = Field(default=None, gt=0, le=24 * 90)
    # The first notice to someone on another homeserver who just joined waits at most this long
    # for their client to know the bot's device (bridge/welcome.py).
    first_notice_wait_seconds: float = Field(default=3, ge=0, le=60)

    _name = field_validator("name_template", "topic_template")(_check_template)


class RegistrationConfig(_Section):
    enabled: bool = False
    token_lifetime_minutes: int = Field(default=30, ge=5, le=24 * 60)
    password_min_length: int = Field(default=12, ge=8, le=128)


class InvitesConfig(_Section):
    lifetime_hours: float = Field(default=24, gt=0, le=24 * 30)
    # An invite to a user on another homeserver that does not answer is retried this long,
    # then the agent is told and the customer's link works again.
    remote_server_patience_minutes: float = Field(default=10, ge=0, le=24 * 60)


class WebClientConfig(_Section):
    url_template: str | None = "https://app.element.io/#/room/{room}"

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "{room}" not in value:
            raise ValueError("must contain {room}, the room alias or ID to open")
        _check_http_url(value.replace("{room}", "x"))
        return value


class JobsConfig(_Section):
    concurrency: int = Field(default=4, ge=1, le=64)
    retry_initial_seconds: float = Field(default=1.0, gt=0, le=60)
    retry_max_seconds: float = Field(default=300.0, gt=0, le=3600)
    max_attempts: int = Field(default=30, ge=1, le=1000)
    poll_seconds: float = Field(default=5.0, gt=0, le=300)


class ClusterConfig(_Section):
    """Several instances on one PostgreSQL database; one of them runs the bot (bridge.cluster)."""

    enabled: bool = False
    # Names this instance in logs and metrics; default: host name and process ID.
    instance_id: str | None = Field(default=None, min_length=1, max_length=128)
    lock_retry_seconds: float = Field(default=1.0, gt=0, le=60)
    check_seconds: float = Field(default=1.0, gt=0, le=60)
    # Below PostgreSQL's release of a silent leader's lock (bridge.cluster: 11 s).
    lost_after_seconds: float = Field(default=5.0, gt=0, lt=11)

    def instance_name(self) -> str:
        import socket

        return self.instance_id or f"{socket.gethostname()}-{os.getpid()}"


class TrustConfig(_Section):
    mode: Literal["strict", "tofu"] = "strict"


# The session API's bearer token: long enough that guessing it is hopeless.
API_TOKEN_MIN_LENGTH = 32


class ApiConfig(_Section):
    """The session API (/api/v1/sessions): off until a bearer token is configured."""

    token: SecretStr | None = None
    token_file: Path | None = None

    def token_value(self) -> str | None:
        secret = _secret(self.token, self.token_file, "token", required=False)
        if secret is None:
            return None
        value = secret.get_secret_value()
        if len(value) < API_TOKEN_MIN_LENGTH or value != value.strip() or " " in value:
            raise ValueError(
                f"token: use at least {API_TOKEN_MIN_LENGTH} characters without spaces, for "
                "example the output of `openssl rand -hex 32`"
            )
        return value


class MetricsConfig(_Section):
    """Where /metrics is served: with `port` set, on a listener of its own (keep it private) and
    no longer on the public port; with `port` null, on http.bind:http.port."""

    bind: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Section):
    homeserver: HomeserverConfig
    bot: BotConfig
    database: DatabaseConfig = DatabaseConfig()
    http: HttpConfig = HttpConfig()
    integrations: dict[str, IntegrationConfig] = Field(default_factory=dict)
    agents: dict[str, str] = Field(default_factory=dict)
    rooms: RoomsConfig = RoomsConfig()
    invites: InvitesConfig = InvitesConfig()
    registration: RegistrationConfig = RegistrationConfig()
    web_client: WebClientConfig = WebClientConfig()
    jobs: JobsConfig = JobsConfig()
    trust: TrustConfig = TrustConfig()
    cluster: ClusterConfig = ClusterConfig()
    api: ApiConfig = ApiConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    branding: BrandingConfig = BrandingConfig()

    @field_validator("api", "metrics", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        # A section with every key commented out (`api:` in config.example.yaml) is empty.
        return {} if value is None else value

    @field_validator("integrations")
    @classmethod
    def _integration_names(
        cls, value: dict[str, IntegrationConfig]
    ) -> dict[str, IntegrationConfig]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
                raise ValueError(
                    f"{name!r}: an integration name is lowercase letters, digits, - and _ "
                    "(it becomes the URL /hooks/<name>)"
                )
        return value

    @field_validator("agents")
    @classmethod
    def _agents(cls, value: dict[str, str]) -> dict[str, str]:
        return agent_map(value, "the helpdesks'")

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.bot.data_dir / 'sealroom.db').resolve()}"

    def agent_user_id(self, agent: str) -> str | None:
        return self.agents.get(agent.strip().lower())
