"""The YAML configuration: schema, `${ENV}` interpolation, `*_file` secrets and validation.

`load(path)` returns a typed `Config` or raises `ConfigError` listing every problem as
"section.key: message". Loading has no side effects (no logging set-up, no file writes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import BaseModel, Field, SecretStr, TypeAdapter, ValidationError, field_validator

from bridge.branding import BrandingConfig
from bridge.config_fields import Section, check_http_url, read_secret
from bridge.errors import ConfigError
from bridge.helpdesk.kinds import kind_names, option_models
from bridge.helpdesk.verifier import IntegrationOptions
from bridge.ids import agent_map, is_user_id

# How long a client may take to send a request's headers, and then its body (slowloris).
DEFAULT_CLIENT_TIMEOUT_SECONDS = 20.0

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

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


_INTEGRATION: TypeAdapter[IntegrationConfig] = TypeAdapter(IntegrationConfig)
_S = TypeVar("_S", bound=BaseModel)

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
        import os
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


def _interpolate(node: Any, path: str, problems: list[str]) -> Any:
    """Replace `${VAR}` in every string with the environment's value."""
    if isinstance(node, dict):
        return {
            key: _interpolate(val, f"{path}.{key}" if path else str(key), problems)
            for key, val in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(val, f"{path}[{i}]", problems) for i, val in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                problems.append(f"{path}: environment variable {name} is not set")
                return ""
            return os.environ[name]

        return _ENV_REF.sub(replace, node)
    return node


def _valid_section(model: type[_S], raw: Any) -> _S | None:
    """`raw` as `model` if that one section is valid on its own (its own problems are reported
    by the whole file's validation)."""
    try:
        return model.model_validate({} if raw is None else raw)
    except ValidationError:
        return None


def _secret_problems(raw: dict[str, Any]) -> list[str]:
    """Check secrets (files readable, not example values) without keeping them on the model.

    Each section that is valid on its own is checked, even when another section is not, so that
    one run of check-config reports a file's structural problems and its secrets' together.
    """
    problems: list[str] = []
    checks: list[tuple[str, Any]] = []
    homeserver = _valid_section(HomeserverConfig, raw.get("homeserver"))
    if homeserver is not None:
        checks.append(("homeserver", homeserver.admin_token_value))
    bot = _valid_section(BotConfig, raw.get("bot"))
    if bot is not None:
        checks += [("bot", bot.password_value), ("bot", bot.access_token_value)]
        checks.append(("bot", bot.pickle_key_value))
    api = _valid_section(ApiConfig, raw.get("api"))
    if api is not None:
        checks.append(("api", api.token_value))
    integrations = raw.get("integrations")
    for name, value in integrations.items() if isinstance(integrations, dict) else ():
        try:
            integration = _INTEGRATION.validate_python(value)
        except ValidationError:
            continue
        checks.append((f"integrations.{name}", integration.verifier))
        if integration.outbound is not None:
            checks.append((f"integrations.{name}", integration.outbound.secret_values))
    for section, getter in checks:
        try:
            getter()
        except ValueError as err:
            problems.append(f"{section}.{err}")
    if (
        bot is not None
        and not any(p.startswith(("bot.password", "bot.access_token")) for p in problems)
        and bot.password_value() is None
        and bot.access_token_value() is None
    ):
        problems.append("bot.password: set bot.password (or password_file) or bot.access_token")
    return problems


def _needs_admin_token(config: Config, problems: list[str], problem: str) -> None:
    """Report `problem` when no admin token is configured (and none was reported already)."""
    if any(p.startswith("homeserver.admin") for p in problems):
        return
    try:
        has_admin = config.homeserver.admin_token_value() is not None
    except ValueError:
        has_admin = True  # reported by _secret_problems
    if not has_admin:
        problems.append(problem)


def parse(raw: Any, base_dir: Path | None = None) -> Config:
    """Validate an already-parsed YAML document.

    Raises:
        ConfigError: listing every problem with its key path.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): the file must be a YAML mapping of sections"])
    problems: list[str] = []
    raw = _interpolate(raw, "", problems)
    if base_dir is not None:
        _resolve_paths(raw, base_dir)
    config: Config | None = None
    try:
        config = Config.model_validate(raw)
    except ValidationError as err:
        problems += _validation_problems(err)
    if config is not None:
        if config.registration.enabled:
            _needs_admin_token(
                config,
                problems,
                "registration.enabled: creating accounts needs homeserver.admin_token "
                "(a Synapse admin's access token, to mint registration tokens)",
            )
        if not config.rooms.bot_stays:
            _needs_admin_token(
                config,
                problems,
                "rooms.bot_stays: false (zero-knowledge mode) needs homeserver.admin_token: once "
                "the bot has left a room, only Synapse's admin API can wipe it",
            )
    if config is not None and config.metrics.port == config.http.port:
        problems.append(
            f"metrics.port: {config.metrics.port} is http.port too; choose another port for "
            "the metrics listener, or set metrics.port to null to serve /metrics on http.port"
        )
    problems += _cluster_problems(config) if config is not None else []
    # A key already reported (a secret whose ${VAR} is missing, or a section's invalid value)
    # is reported once; say nothing more about it.
    reported = {problem.split(":", 1)[0] for problem in problems}
    problems += [p for p in _secret_problems(raw) if p.split(":", 1)[0] not in reported]
    if problems:
        bot = _valid_section(BotConfig, raw.get("bot"))
        raise ConfigError(problems, data_dir=None if bot is None else bot.data_dir)
    assert config is not None  # every validation error is a problem above
    return config


def _validation_problems(err: ValidationError) -> list[str]:
    problems = []
    for error in err.errors():
        parts = _key_path(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown option (check the spelling against config.example.yaml)"
        elif error["type"] == "union_tag_invalid":
            parts.append("kind")
            message = "must be one of " + ", ".join(kind_names())
        elif error["type"] == "union_tag_not_found":
            parts.append("kind")
            message = "is required: one of " + ", ".join(kind_names())
        loc = ".".join(parts) or "(top level)"
        problems.append(f"{loc}: {message}")
    return problems


def _cluster_problems(config: Config) -> list[str]:
    """What several instances need to share one bot device."""
    cluster = config.cluster
    if not cluster.enabled:
        return []
    problems = []
    if not config.database_url.startswith("postgresql"):
        problems.append(
            "cluster.enabled: several instances need a shared PostgreSQL database "
            "(database.url: postgresql+asyncpg://...)"
        )
    if config.bot.access_token is None and config.bot.access_token_file is None:
        problems.append(
            "cluster.enabled: set bot.access_token (or access_token_file) so that every "
            "instance uses the same bot device (a password login makes a new device)"
        )
    if config.bot.pickle_key is None and config.bot.pickle_key_file is None:
        problems.append(
            "cluster.enabled: set bot.pickle_key (or pickle_key_file), the same on every "
            "instance, to open the shared crypto store"
        )
    if cluster.check_seconds >= cluster.lost_after_seconds:
        problems.append(
            "cluster.check_seconds: must be less than cluster.lost_after_seconds "
            f"({cluster.lost_after_seconds:g})"
        )
    return problems


def _key_path(loc: tuple[int | str, ...]) -> list[str]:
    """pydantic's error location as the YAML key path: an integration's options are checked by
    its kind's model, whose tag (`integrations.<name>.<kind>.secret`) is not a key in the file."""
    parts = [str(part) for part in loc]
    if len(parts) > 2 and parts[0] == "integrations" and parts[2] in kind_names():
        del parts[2]
    return parts


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> None:
    """Make relative paths relative to the config file's folder, not the working directory."""
    bot = raw.get("bot")
    if isinstance(bot, dict):
        for key in ("data_dir", "password_file", "access_token_file", "pickle_key_file"):
            if isinstance(bot.get(key), str) and not Path(bot[key]).is_absolute():
                bot[key] = str(base_dir / bot[key])
    homeserver = raw.get("homeserver")
    if isinstance(homeserver, dict):
        value = homeserver.get("admin_token_file")
        if isinstance(value, str) and not Path(value).is_absolute():
            homeserver["admin_token_file"] = str(base_dir / value)
    branding = raw.get("branding")
    if isinstance(branding, dict):
        value = branding.get("logo_file")
        if isinstance(value, str) and not Path(value).is_absolute():
            branding["logo_file"] = str(base_dir / value)
    api = raw.get("api")
    if isinstance(api, dict):
        value = api.get("token_file")
        if isinstance(value, str) and not Path(value).is_absolute():
            api["token_file"] = str(base_dir / value)
    integrations = raw.get("integrations")
    if isinstance(integrations, dict):
        for integration in integrations.values():
            if isinstance(integration, dict):
                sections = [integration, integration.get("outbound")]
                for section in (s for s in sections if isinstance(s, dict)):
                    for key, value in section.items():
                        if key.endswith("_file") and isinstance(value, str):
                            if not Path(value).is_absolute():
                                section[key] = str(base_dir / value)


def default_path() -> Path:
    """The file `-c` defaults to: $SEALROOM_CONFIG (the container image sets it), else
    ./config.yaml."""
    return Path(os.environ.get("SEALROOM_CONFIG") or "config.yaml")


def load(path: Path) -> Config:
    """Read and validate the YAML file at `path`.

    Raises:
        ConfigError: the file is missing, is not UTF-8 or YAML, or has invalid values.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError([f"(file): cannot read {path}: {err.strerror}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            [
                f"(file): {path} is not UTF-8 text (byte 0x{data[err.start]:02x} on line "
                f"{line}); save it as UTF-8"
            ]
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"(file): {path} is not valid YAML{where}"]) from None
    except RecursionError:
        raise ConfigError([f"(file): {path} nests sections too deeply"]) from None
    return parse(raw, base_dir=path.resolve().parent)
