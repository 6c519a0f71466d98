"""bridge.config: the example file loads, documents every option, and every problem names its key.

An admin's only interface is the YAML file and `sealroom check-config`: each mistake must come
back as "key.path: what is wrong", all of them at once, never as a traceback.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from bridge import cli
from bridge.app import domain_settings
from bridge.config import Config
from bridge.config_file import load
from bridge.errors import ConfigError
from bridge.helpdesk.kinds import kind_names
from bridge.helpdesk.mapping import FieldsOptions
from bridge.helpdesk.presets import PRESETS
from bridge.helpdesk.verifier import IntegrationOptions

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")

GOOD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EXAMPLE_ENV = {
    "SEALROOM_ADMIN_TOKEN": "syt_admin_token_for_tests",
    "SEALROOM_BOT_PASSWORD": "bot-password-for-tests",
    "SEALROOM_WEBHOOK_SECRET": GOOD_SECRET,
    "SEALROOM_ZENDESK_SECRET": "zendesk-signing-secret-for-tests",
    "SEALROOM_ZAMMAD_SECRET": "zammad-hmac-token-for-tests",
    "SEALROOM_TOOLS_SECRET": "tools-hmac-secret-for-tests",
    "SEALROOM_FRESHDESK_TOKEN": "freshdesk-bearer-token-for-tests",
    "SEALROOM_JIRA_PASSWORD": "jira-basic-password-for-tests",
    "SEALROOM_ZENDESK_API_TOKEN": "zendesk-api-token-for-tests",
    "SEALROOM_ZAMMAD_API_TOKEN": "zammad-api-token-for-tests",
    "SEALROOM_CALLBACK_SECRET": "whsec_" + "c2VhbHJvb20tY2FsbGJhY2stc2VjcmV0",
}


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)


def minimal() -> dict[str, Any]:
    """A small valid configuration with no ${VAR} references."""
    return {
        "homeserver": {"url": "https://matrix.example.org", "server_name": "example.org"},
        "bot": {"user_id": "@sealroom:example.org", "password": "a-real-bot-password"},
        "integrations": {"helpdesk": {"kind": "standard-webhooks", "secret": GOOD_SECRET}},
        "agents": {"alice@example.com": "@alice:example.org"},
    }


def write(tmp_path: Path, raw: Any, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, raw))
    assert info.value.problems, "ConfigError without any problem listed"
    return info.value.problems


def problem_at(problems: list[str], key_path: str) -> str:
    """The one problem reported for `key_path` (the text before the first colon)."""
    matching = [p for p in problems if p.split(":", 1)[0] == key_path]
    assert matching, f"no problem reported for {key_path!r}; got {problems}"
    return matching[0]


# -- the example file --------------------------------------------------------------------------


def test_example_loads_when_its_env_vars_are_set(example_env: None) -> None:
    config = load(EXAMPLE)

    assert config.homeserver.url == "https://matrix.example.org"
    assert config.homeserver.admin_token_value() == EXAMPLE_ENV["SEALROOM_ADMIN_TOKEN"]
    assert config.bot.password_value() == EXAMPLE_ENV["SEALROOM_BOT_PASSWORD"]
    assert config.integrations["helpdesk"].secret_value() == GOOD_SECRET
    assert config.agent_user_id("Alice@Example.com ") == "@alice:example.org"
    # "./data" is relative to the file's folder, not to the working directory.
    assert config.bot.data_dir == REPO / "data"


def test_example_without_its_env_vars_names_each_missing_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in EXAMPLE_ENV:
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(ConfigError) as info:
        load(EXAMPLE)

    problems = info.value.problems
    assert "SEALROOM_ADMIN_TOKEN" in problem_at(problems, "homeserver.admin_token")
    assert "SEALROOM_BOT_PASSWORD" in problem_at(problems, "bot.password")
    assert "SEALROOM_WEBHOOK_SECRET" in problem_at(problems, "integrations.helpdesk.secret")
    # Reported once each, not again as "missing secret".
    assert len(problems) == len(EXAMPLE_ENV), problems


def _section_models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (X, X | None, dict[str, X])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found += _section_models(arg)
    return found


def _may_be_commented(name: str, annotation: Any) -> bool:
    """Alternative forms of a secret (x_file, or an optional secret) may be shown commented."""
    return name.endswith("_file") or SecretStr in typing.get_args(annotation)


def _top_level_block(section: str) -> str:
    """The raw text of one top-level section of config.example.yaml, comments included."""
    match = re.search(rf"^{re.escape(section)}:.*?(?=^[A-Za-z_]|\Z)", EXAMPLE_TEXT, re.M | re.S)
    assert match, f"config.example.yaml has no top-level section {section!r}"
    return match.group(0)


def _is_other_kind(model: type[BaseModel], item: Any) -> bool:
    """An integration is checked against its own kind's options only."""
    return (
        issubclass(model, IntegrationOptions)
        and isinstance(item, dict)
        and item.get("kind") != model.kind_name()
    )


def _walk(
    model: type[BaseModel], node: Any, path: list[str], top: str | None, missing: list[str]
) -> None:
    for name, info in model.model_fields.items():
        here = [*path, name]
        dotted = ".".join(here)
        section = top or name
        if isinstance(node, dict) and name in node:
            value = node[name]
        elif _may_be_commented(name, info.annotation) and re.search(
            rf"^\s*#\s*{re.escape(name)}:", _top_level_block(section), re.M
        ):
            continue
        else:
            missing.append(dotted)
            continue
        if value is None:
            continue  # an optional section left out here; shown in full elsewhere
        for sub in _section_models(info.annotation):
            if typing.get_origin(info.annotation) is dict:
                assert isinstance(value, dict), f"{dotted}: must be a mapping"
                assert value, f"{dotted}: give at least one example"
                for key, item in value.items():
                    if _is_other_kind(sub, item):
                        continue
                    _walk(sub, item, [*here, str(key)], section, missing)
            elif typing.get_origin(info.annotation) is list:
                assert isinstance(value, list), f"{dotted}: must be a list"
                assert value, f"{dotted}: give at least one example"
                for item in value:
                    _walk(sub, item, here, section, missing)
            else:
                _walk(sub, value, here, section, missing)


def test_every_option_of_the_schema_is_documented_in_the_example() -> None:
    raw = yaml.safe_load(EXAMPLE_TEXT)
    missing: list[str] = []

    _walk(Config, raw, [], None, missing)

    assert missing == [], f"options missing from config.example.yaml: {missing}"


def test_the_example_shows_every_integration_kind_preset_and_field() -> None:
    raw = yaml.safe_load(EXAMPLE_TEXT)
    integrations = raw["integrations"].values()

    assert {integration["kind"] for integration in integrations} == set(kind_names())
    assert {i["preset"] for i in integrations} >= set(PRESETS) - {"sealroom"}
    shown_in_full = [i["fields"] for i in integrations if i["fields"]]
    assert any(set(fields) == set(FieldsOptions.model_fields) for fields in shown_in_full)


def test_the_walk_above_would_notice_an_undocumented_option() -> None:
    """Guard against a walk that never looks: drop one key and it must be reported."""
    raw = yaml.safe_load(EXAMPLE_TEXT)
    del raw["jobs"]["poll_seconds"]
    del raw["integrations"]["helpdesk"]["tolerance_seconds"]
    missing: list[str] = []

    _walk(Config, raw, [], None, missing)

    assert missing == ["integrations.helpdesk.tolerance_seconds", "jobs.poll_seconds"]


# -- each kind of problem, with its key path ----------------------------------------------------


def _set(path: str, value: Any) -> Any:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return mutate


def _delete(path: str) -> Any:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


CASES = [
    pytest.param(_delete("homeserver.url"), "homeserver.url", "required", id="missing-required"),
    pytest.param(_delete("bot"), "bot", "required", id="missing-section"),
    pytest.param(_set("http.port", "eighty"), "http.port", "integer", id="wrong-type"),
    pytest.param(_set("http.port", 70000), "http.port", "65535", id="out-of-range"),
    pytest.param(
        _set("http.client_timeout_seconds", 0),
        "http.client_timeout_seconds",
        "greater than 0",
        id="client-timeout-zero",
    ),
    pytest.param(
        _set("http.client_timeout_seconds", 3600),
        "http.client_timeout_seconds",
        "300",
        id="client-timeout-too-long",
    ),
    pytest.param(_set("http.prot", 8080), "http.prot", "unknown option", id="unknown-key"),
    pytest.param(_set("colour", "blue"), "colour", "unknown option", id="unknown-section"),
    pytest.param(
        _set("homeserver.url", "matrix.example.org"), "homeserver.url", "https://", id="bad-url"
    ),
    pytest.param(
        _set("http.public_base_url", "ftp://example.org"),
        "http.public_base_url",
        "https://",
        id="bad-public-url",
    ),
    pytest.param(
        _set("rooms.name_template", "Ticket {ticket}"),
        "rooms.name_template",
        "{ticket_ref}",
        id="bad-template-placeholder",
    ),
    pytest.param(
        _set("web_client.url_template", "https://app.element.io/"),
        "web_client.url_template",
        "{room}",
        id="web-client-without-room",
    ),
    pytest.param(
        _set("database.url", "mysql://db/sealroom"), "database.url", "postgresql", id="bad-db-url"
    ),
    pytest.param(
        _set("bot.password", "${SEALROOM_TEST_SURELY_UNSET}"),
        "bot.password",
        "SEALROOM_TEST_SURELY_UNSET",
        id="env-var-missing",
    ),
    pytest.param(
        lambda raw: (raw["bot"].pop("password"), raw["bot"].update(password_file="nope.txt")),
        "bot.password_file",
        "cannot read",
        id="password-file-unreadable",
    ),
    pytest.param(
        lambda raw: (
            raw["integrations"]["helpdesk"].pop("secret"),
            raw["integrations"]["helpdesk"].update(secret_file="/nonexistent/secret"),
        ),
        "integrations.helpdesk.secret_file",
        "cannot read",
        id="secret-file-unreadable",
    ),
    pytest.param(
        _set("bot.pickle_key_file", "/nonexistent/pickle.key"),
        "bot.pickle_key_file",
        "cannot read",
        id="pickle-key-file-unreadable",
    ),
    pytest.param(
        _set("integrations.helpdesk.secret", "whsec_c2hvcnQ="),
        "integrations.helpdesk.secret",
        "whsec_",
        id="webhook-secret-too-short",
    ),
    pytest.param(
        _set("integrations.helpdesk.secret", "whsec_not base64!"),
        "integrations.helpdesk.secret",
        "base64",
        id="webhook-secret-not-base64",
    ),
    pytest.param(
        _set("integrations.helpdesk.tolerance_seconds", 5),
        "integrations.helpdesk.tolerance_seconds",
        "10",
        id="tolerance-too-small",
    ),
    pytest.param(
        _set("integrations.helpdesk.kind", "freshdesk"),
        "integrations.helpdesk.kind",
        "standard-webhooks, zammad, zendesk",
        id="unknown-integration-kind",
    ),
    pytest.param(
        _set("agents", {"bob@example.com": "bob"}), "agents", "bob@example.com", id="bad-agent-id"
    ),
    pytest.param(
        _set("bot.user_id", "sealroom@example.org"), "bot.user_id", "@", id="bad-bot-user-id"
    ),
    pytest.param(_set("logging.level", "LOUD"), "logging.level", "DEBUG", id="bad-literal"),
    pytest.param(
        _set("rooms.first_notice_wait_seconds", 61),
        "rooms.first_notice_wait_seconds",
        "60",
        id="first-notice-wait-too-long",
    ),
    pytest.param(
        _set("invites.remote_server_patience_minutes", -1),
        "invites.remote_server_patience_minutes",
        "0",
        id="remote-patience-negative",
    ),
    pytest.param(_set("http", "everything"), "http", "dictionary", id="section-not-a-mapping"),
]


@pytest.mark.parametrize(("mutate", "key_path", "hint"), CASES)
def test_each_problem_is_reported_with_its_key_path(
    tmp_path: Path, mutate: Any, key_path: str, hint: str
) -> None:
    raw = minimal()
    mutate(raw)

    problems = problems_of(tmp_path, raw)

    assert hint.lower() in problem_at(problems, key_path).lower()


@pytest.mark.parametrize("example", ["change-me", "CHANGEME", "secret", " password "])
@pytest.mark.parametrize(
    "key_path", ["bot.password", "homeserver.admin_token", "integrations.helpdesk.secret"]
)
def test_example_secret_values_are_refused(tmp_path: Path, key_path: str, example: str) -> None:
    raw = minimal()
    _set(key_path, example)(raw)

    problems = problems_of(tmp_path, raw)

    assert "real secret" in problem_at(problems, key_path)


def test_a_secret_read_from_a_file_is_used_and_not_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "bot").write_text("from-the-file\n", encoding="utf-8")
    raw = minimal()
    raw["bot"].pop("password")
    raw["bot"]["password_file"] = "secrets/bot"  # relative to the config file

    config = load(write(tmp_path, raw))

    assert config.bot.password_value() == "from-the-file"


def test_bot_needs_a_password_or_an_access_token(tmp_path: Path) -> None:
    raw = minimal()
    raw["bot"].pop("password")

    problems = problems_of(tmp_path, raw)

    assert "access_token" in problem_at(problems, "bot.password")


def test_an_access_token_alone_is_enough_for_the_bot(tmp_path: Path) -> None:
    raw = minimal()
    raw["bot"].pop("password")
    raw["bot"]["access_token"] = "syt_a_real_token"

    assert load(write(tmp_path, raw)).bot.access_token_value() == "syt_a_real_token"


def _both(section: list[str], key: str) -> Any:
    def mutate(raw: dict[str, Any], tmp_path: Path) -> None:
        node = raw
        for part in section:
            node = node.setdefault(part, {})
        (tmp_path / "s").write_text("a-secret-from-a-file", encoding="utf-8")
        node[key] = "a-secret-inline-value"
        node[f"{key}_file"] = str(tmp_path / "s")

    return mutate


@pytest.mark.parametrize(
    ("section", "key", "key_path"),
    [
        pytest.param(["bot"], "password", "bot.password", id="bot-password"),
        pytest.param(["homeserver"], "admin_token", "homeserver.admin_token", id="admin-token"),
        pytest.param(
            ["integrations", "helpdesk"],
            "secret",
            "integrations.helpdesk.secret",
            id="webhook-secret",
        ),
    ],
)
def test_secret_and_secret_file_together_are_reported_with_the_key_path(
    tmp_path: Path, section: list[str], key: str, key_path: str
) -> None:
    raw = minimal()
    _both(section, key)(raw, tmp_path)

    problems = problems_of(tmp_path, raw)

    assert "not both" in problem_at(problems, key_path)


def test_a_missing_webhook_secret_is_reported_with_its_key_path(tmp_path: Path) -> None:
    raw = minimal()
    raw["integrations"]["helpdesk"].pop("secret")

    problems = problems_of(tmp_path, raw)

    assert "secret_file" in problem_at(problems, "integrations.helpdesk.secret")


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    raw = minimal()
    del raw["homeserver"]["url"]
    raw["http"] = {"port": "eighty", "max_body": 10}
    raw["rooms"] = {"topic_template": "{oops}"}
    raw["agents"] = {"bob": "not-an-id"}

    problems = problems_of(tmp_path, raw)

    for key_path in ("homeserver.url", "http.port", "http.max_body", "rooms.topic_template"):
        problem_at(problems, key_path)
    problem_at(problems, "agents")
    assert len(problems) == 5, problems


def test_secret_problems_are_reported_together(tmp_path: Path) -> None:
    raw = minimal()
    raw["bot"]["password"] = "change-me"
    raw["homeserver"]["admin_token_file"] = "missing-token-file"
    raw["integrations"]["helpdesk"]["secret"] = "whsec_c2hvcnQ="

    problems = problems_of(tmp_path, raw)

    problem_at(problems, "bot.password")
    problem_at(problems, "homeserver.admin_token_file")
    problem_at(problems, "integrations.helpdesk.secret")


def test_a_bad_integration_name_is_reported(tmp_path: Path) -> None:
    raw = minimal()
    raw["integrations"] = {"Help Desk": copy.deepcopy(raw["integrations"]["helpdesk"])}

    problems = problems_of(tmp_path, raw)

    assert "Help Desk" in problem_at(problems, "integrations")


def test_a_file_that_is_not_yaml_or_not_a_mapping_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("homeserver:\n  url: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(broken)
    assert "line" in info.value.problems[0]

    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, ["a", "list"]))
    assert "mapping" in info.value.problems[0]

    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.yaml")
    assert "cannot read" in info.value.problems[0]


def test_relative_data_dir_resolves_against_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "sealroom"
    folder.mkdir(parents=True)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    raw = minimal()
    raw["bot"]["data_dir"] = "state"
    path = write(folder, raw)

    config = load(path)

    assert config.bot.data_dir == folder / "state"
    assert config.database_url == f"sqlite+aiosqlite:///{folder / 'state' / 'sealroom.db'}"


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    raw = minimal()
    raw["bot"]["data_dir"] = str(tmp_path / "abs")

    assert load(write(tmp_path, raw)).bot.data_dir == tmp_path / "abs"


# -- sealroom check-config ---------------------------------------------------------------------


def test_check_config_exits_2_and_prints_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = minimal()
    raw["http"] = {"port": "eighty"}
    raw["rooms"] = {"colour": "blue"}
    raw["bot"]["password"] = "change-me"
    path = write(tmp_path, raw)

    code = cli.main(["check-config", "-c", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert str(path) in err
    assert "http.port:" in err
    assert "rooms.colour: unknown option" in err
    # The secrets are checked in the same run, not only once the rest is fixed.
    assert "bot.password: replace the example value" in err
    assert "change-me" not in err


def test_check_config_exits_0_for_a_valid_file(
    example_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["check-config", "-c", str(EXAMPLE)])

    captured = capsys.readouterr()
    assert code == 0
    assert "valid" in captured.out
    assert captured.err == ""
    for secret in EXAMPLE_ENV.values():
        assert secret not in captured.out


def test_check_config_warns_that_without_an_admin_token_rooms_are_not_purged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, minimal())  # no homeserver.admin_token

    code = cli.main(["check-config", "-c", str(path)])

    out = capsys.readouterr().out.splitlines()
    assert code == 0  # a warning, not an error
    assert out[0] == f"{path}: configuration is valid"
    [warning] = out[1:]
    assert warning.startswith(f"{path}: warning: homeserver.admin_token is not set")
    assert "keeps the redacted events and the uploaded files" in warning


def test_check_config_reports_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["check-config", "-c", str(tmp_path / "nope.yaml")])

    assert code == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "key_path", "hint"),
    [
        pytest.param(
            {"preset": "servicenow"}, "integrations.helpdesk.preset", "zammad", id="preset"
        ),
        pytest.param(
            {"fields": {"ticket_id": "ticket id"}},
            "integrations.helpdesk.fields.ticket_id",
            "JSON pointer",
            id="path",
        ),
        pytest.param(
            {"fields": {"ticket": "/id"}},
            "integrations.helpdesk.fields.ticket",
            "unknown option",
            id="field-name",
        ),
        pytest.param(
            {"fields": {"close": [""]}}, "integrations.helpdesk.fields.close", "empty", id="value"
        ),
        pytest.param(
            {"agents": {"42": "bob"}}, "integrations.helpdesk.agents", "42", id="agent-id"
        ),
    ],
)
def test_mapping_mistakes_are_reported_with_their_key_path(
    tmp_path: Path, options: dict[str, Any], key_path: str, hint: str
) -> None:
    raw = minimal()
    raw["integrations"]["helpdesk"].update(options)

    assert hint in problem_at(problems_of(tmp_path, raw), key_path)


def test_integration_agents_are_looked_up_before_the_global_map(tmp_path: Path) -> None:
    raw = minimal()
    raw["integrations"]["helpdesk"]["agents"] = {"Alice@Example.com": "@alice2:example.org"}

    config = load(write(tmp_path, raw))

    assert config.integrations["helpdesk"].agents == {"alice@example.com": "@alice2:example.org"}
    assert config.integrations["helpdesk"].field_map() is None  # sealroom's own body


@pytest.mark.parametrize(
    ("outbound", "key_path", "hint"),
    [
        pytest.param(
            {"kind": "zendesk", "url": "https://x.zendesk.com", "token": "t" * 20},
            "integrations.helpdesk.outbound.email",
            "e-mail",
            id="zendesk-email",
        ),
        pytest.param(
            {"kind": "zammad", "url": "https://zammad.example.com"},
            "integrations.helpdesk.outbound.token",
            "token_file",
            id="zammad-token",
        ),
        pytest.param(
            {"kind": "callback", "url": "https://h.example.com/e", "secret": "whsec_c2hvcnQ="},
            "integrations.helpdesk.outbound.secret",
            "whsec_",
            id="callback-secret",
        ),
        pytest.param(
            {"kind": "zammad", "url": "ftp://x", "token": "t" * 20},
            "integrations.helpdesk.outbound.url",
            "https://",
            id="url",
        ),
        pytest.param(
            {
                "kind": "zammad",
                "url": "https://z.example.com",
                "token": "t" * 20,
                "allowed_hosts": ["z.example.com:443"],
            },
            "integrations.helpdesk.outbound.allowed_hosts",
            "no port",
            id="host",
        ),
        pytest.param(
            {
                "kind": "zammad",
                "url": "https://z.example.com",
                "token": "t" * 20,
                "milestones": ["room_gone"],
            },
            "integrations.helpdesk.outbound.milestones.0",
            "room_ready",
            id="milestone",
        ),
    ],
)
def test_outbound_mistakes_are_reported_with_their_key_path(
    tmp_path: Path, outbound: dict[str, Any], key_path: str, hint: str
) -> None:
    raw = minimal()
    raw["integrations"]["helpdesk"]["outbound"] = outbound

    assert hint in problem_at(problems_of(tmp_path, raw), key_path)


def test_outbound_credentials_are_redacted_from_logs(tmp_path: Path) -> None:
    raw = minimal()
    raw["integrations"]["helpdesk"]["outbound"] = {
        "kind": "zammad",
        "url": "https://zammad.example.com",
        "token_file": "zammad-token",
    }
    (tmp_path / "zammad-token").write_text("zammad-token-from-a-file\n", encoding="utf-8")

    config = load(write(tmp_path, raw))

    assert "zammad-token-from-a-file" in cli.config_secrets(config)
    outbound = config.integrations["helpdesk"].outbound
    assert outbound is not None
    assert outbound.hosts == {"zammad.example.com"}


# -- rooms: zero-knowledge mode, idle timeout; per-integration lifetime (#9) --------------------


@pytest.mark.parametrize(
    ("mutate", "key_path", "hint"),
    [
        pytest.param(
            _set("rooms.idle_hours", 0), "rooms.idle_hours", "greater than 0", id="idle0"
        ),
        pytest.param(
            _set("rooms.idle_hours", "soon"), "rooms.idle_hours", "number", id="idle-nan"
        ),
        pytest.param(_set("rooms.bot_stays", "maybe"), "rooms.bot_stays", "bool", id="stays"),
        pytest.param(
            _set("integrations.helpdesk.lifetime_hours", -1),
            "integrations.helpdesk.lifetime_hours",
            "greater than 0",
            id="integration-lifetime",
        ),
        pytest.param(
            _set("integrations.helpdesk.lifetime_hours", 24 * 365),
            "integrations.helpdesk.lifetime_hours",
            "2160",
            id="integration-lifetime-too-long",
        ),
    ],
)
def test_lifecycle_options_are_checked_with_their_key_path(
    tmp_path: Path, mutate: Any, key_path: str, hint: str
) -> None:
    raw = minimal()
    mutate(raw)

    assert hint.lower() in problem_at(problems_of(tmp_path, raw), key_path).lower()


def test_zero_knowledge_mode_is_refused_without_an_admin_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = minimal()  # no homeserver.admin_token
    raw["rooms"] = {"bot_stays": False}

    problem = problem_at(problems_of(tmp_path, raw), "rooms.bot_stays")
    code = cli.main(["check-config", "-c", str(write(tmp_path, raw))])

    assert "homeserver.admin_token" in problem
    assert code == 2
    assert "rooms.bot_stays: false" in capsys.readouterr().err


def test_zero_knowledge_mode_idle_timeout_and_integration_lifetime_load(tmp_path: Path) -> None:
    from bridge.app import domain_settings

    raw = minimal()
    raw["homeserver"]["admin_token"] = "syt_an-admin-token-for-the-tests"
    raw["rooms"] = {"bot_stays": False, "idle_hours": 1.5, "lifetime_hours": 48}
    raw["integrations"]["helpdesk"]["lifetime_hours"] = 4

    config = load(write(tmp_path, raw))
    settings = domain_settings(config)

    assert (config.rooms.bot_stays, config.rooms.idle_hours) == (False, 1.5)
    assert settings.bot_stays is False
    assert settings.idle_timeout == timedelta(hours=1.5)
    assert settings.lifetime("helpdesk") == timedelta(hours=4)
    assert settings.lifetime("another") == timedelta(hours=48)


def test_by_default_the_bot_stays_and_rooms_never_idle_out(tmp_path: Path) -> None:
    from bridge.app import domain_settings

    settings = domain_settings(load(write(tmp_path, minimal())))

    assert (settings.bot_stays, settings.idle_timeout) == (True, None)
    assert settings.lifetime("helpdesk") == timedelta(hours=72)


def test_the_first_notice_wait_and_remote_patience_reach_the_domain(tmp_path: Path) -> None:
    raw = minimal()
    raw["rooms"] = {"first_notice_wait_seconds": 1.5}
    raw["invites"] = {"remote_server_patience_minutes": 2}
    settings = domain_settings(load(write(tmp_path, raw)))
    assert settings.first_notice_wait == timedelta(seconds=1.5)
    assert settings.remote_invite_patience == timedelta(minutes=2)
    defaults = domain_settings(load(write(tmp_path, minimal(), "defaults.yaml")))
    assert defaults.first_notice_wait == timedelta(seconds=3)
    assert defaults.remote_invite_patience == timedelta(minutes=10)
