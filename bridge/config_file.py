"""Reading config.yaml into a `Config`: `${ENV}` interpolation, `*_file` secrets, paths relative
to the file, and validation.

`load(path)` returns a typed `Config` or raises `ConfigError` listing every problem as
"section.key: message". Loading has no side effects (no logging set-up, no file writes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from bridge.config import ApiConfig, BotConfig, Config, HomeserverConfig, IntegrationConfig
from bridge.errors import ConfigError
from bridge.helpdesk.kinds import kind_names

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_S = TypeVar("_S", bound=BaseModel)
_INTEGRATION: TypeAdapter[IntegrationConfig] = TypeAdapter(IntegrationConfig)


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


# Keys that hold a path, by section; in an integration (and its `outbound:`), every `*_file` key.
_PATH_KEYS = {
    "bot": ("data_dir", "password_file", "access_token_file", "pickle_key_file"),
    "homeserver": ("admin_token_file",),
    "branding": ("logo_file",),
    "api": ("token_file",),
}


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> None:
    """Make relative paths relative to the config file's folder, not the working directory."""
    for name, keys in _PATH_KEYS.items():
        _relative_to(raw.get(name), keys, base_dir)
    integrations = raw.get("integrations")
    if isinstance(integrations, dict):
        for integration in integrations.values():
            if isinstance(integration, dict):
                for section in (integration, integration.get("outbound")):
                    if isinstance(section, dict):
                        keys = tuple(key for key in section if key.endswith("_file"))
                        _relative_to(section, keys, base_dir)


def _relative_to(section: Any, keys: tuple[str, ...], base_dir: Path) -> None:
    if not isinstance(section, dict):
        return
    for key in keys:
        value = section.get(key)
        if isinstance(value, str) and not Path(value).is_absolute():
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
