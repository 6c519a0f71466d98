"""`api.token` / `api.token_file`: off by default, `${ENV}` and files like every secret, problems
named by key path, and the token is cut out of the logs like the other secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import cli
from bridge.config_file import load
from tests.unit.test_config import EXAMPLE, EXAMPLE_ENV, minimal, problem_at, problems_of, write

TOKEN = "0123456789abcdef0123456789abcdef-api"


def test_the_api_is_off_by_default_and_in_the_example(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)

    assert load(EXAMPLE).api.token_value() is None


def test_a_token_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALROOM_API_TOKEN", TOKEN)
    raw = minimal() | {"api": {"token": "${SEALROOM_API_TOKEN}"}}

    config = load(write(tmp_path, raw))

    assert config.api.token_value() == TOKEN
    assert TOKEN in cli.config_secrets(config)  # redacted from every log line
    assert TOKEN not in repr(config)


def test_a_token_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "api.token").write_text(TOKEN + "\n")
    raw = minimal() | {"api": {"token_file": "api.token"}}

    assert load(write(tmp_path, raw)).api.token_value() == TOKEN


@pytest.mark.parametrize(
    ("api", "key_path", "words"),
    [
        ({"token": "short"}, "api.token", "at least 32 characters"),
        ({"token": "change-me"}, "api.token", "real secret"),
        ({"token": "x" * 20 + " " + "y" * 20}, "api.token", "without spaces"),
        ({"token": TOKEN, "token_file": "/run/secrets/t"}, "api.token", "not both"),
        ({"token_file": "/nonexistent/api.token"}, "api.token_file", "cannot read"),
        ({"tokn": TOKEN}, "api.tokn", "unknown option"),
        ({"token": "${SEALROOM_NO_SUCH_VARIABLE}"}, "api.token", "SEALROOM_NO_SUCH_VARIABLE"),
    ],
)
def test_problems_name_the_key(
    tmp_path: Path, api: dict[str, str], key_path: str, words: str
) -> None:
    problems = problems_of(tmp_path, minimal() | {"api": api})

    assert words in problem_at(problems, key_path)
