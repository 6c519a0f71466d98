"""cluster.*: several instances need PostgreSQL, one bot device and one pickle key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.config_file import load
from tests.unit.test_config import minimal, problem_at, problems_of, write

PG_URL = "postgresql+asyncpg://sealroom@db.example.org/sealroom"


def clustered(**cluster: Any) -> dict[str, Any]:
    raw = minimal()
    raw["database"] = {"url": PG_URL}
    raw["bot"] = {
        "user_id": "@sealroom:example.org",
        "access_token": "syt_bot_token_for_tests",
        "pickle_key": "a-long-shared-pickle-key",
    }
    raw["cluster"] = {"enabled": True, "instance_id": "web-1", **cluster}
    return raw


def test_off_by_default() -> None:
    from bridge.config_file import parse

    config = parse(minimal())
    assert config.cluster.enabled is False
    assert config.cluster.lost_after_seconds < 11


def test_a_valid_cluster_config_loads(tmp_path: Path) -> None:
    config = load(write(tmp_path, clustered(lock_retry_seconds=0.5, check_seconds=0.5)))
    assert config.cluster.enabled
    assert config.cluster.instance_name() == "web-1"
    assert config.cluster.lock_retry_seconds == 0.5


def test_without_an_instance_id_the_host_and_process_name_it(tmp_path: Path) -> None:
    raw = clustered()
    del raw["cluster"]["instance_id"]
    name = load(write(tmp_path, raw)).cluster.instance_name()
    assert name.endswith(f"-{__import__('os').getpid()}")


def test_sqlite_is_refused(tmp_path: Path) -> None:
    raw = clustered()
    del raw["database"]
    assert "PostgreSQL" in problem_at(problems_of(tmp_path, raw), "cluster.enabled")


def test_a_password_login_is_refused(tmp_path: Path) -> None:
    raw = clustered()
    raw["bot"] = {
        "user_id": "@sealroom:example.org",
        "password": "a-real-bot-password",
        "pickle_key": "a-long-shared-pickle-key",
    }
    assert "bot.access_token" in problem_at(problems_of(tmp_path, raw), "cluster.enabled")


def test_a_generated_pickle_key_is_refused(tmp_path: Path) -> None:
    raw = clustered()
    del raw["bot"]["pickle_key"]
    assert "bot.pickle_key" in problem_at(problems_of(tmp_path, raw), "cluster.enabled")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("lock_retry_seconds", 0),
        ("check_seconds", -1),
        ("lost_after_seconds", 11),
        ("instance_id", ""),
        ("leader", True),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, key: str, value: Any) -> None:
    problem_at(problems_of(tmp_path, clustered(**{key: value})), f"cluster.{key}")


def test_checks_must_come_more_often_than_the_loss_deadline(tmp_path: Path) -> None:
    raw = clustered(check_seconds=5, lost_after_seconds=5)
    assert "lost_after_seconds" in problem_at(problems_of(tmp_path, raw), "cluster.check_seconds")
