"""The container kit: .dockerignore, Dockerfile, compose.yaml and its sealroom config.

Without Docker these files are parsed and checked for what an admin relies on: the build
context holds no secrets or local state, the image runs as a non-root user, its health check
follows the configured port, and compose.yaml wires what deploy/sealroom.yaml expects (loaded
through the real schema). With a Docker daemon the image is also built and run; with Docker's
compose plugin (or the standalone docker-compose), `config` validates compose.yaml. Without them
those tests skip, saying why.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import Config
from bridge.config_file import parse

REPO = Path(__file__).resolve().parents[2]
DEPLOY_CONFIG = REPO / "deploy" / "sealroom.yaml"


# -- .dockerignore, with Docker's matching rules -----------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go filepath.Match plus **) as a regular expression."""
    out = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        rules.append((keep, _pattern_regex(pattern)))
    return rules


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """As Docker decides: the last rule matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for keep, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not keep
    return ignored


RULES = dockerignore_rules((REPO / ".dockerignore").read_text("utf-8"))

NEVER_IN_CONTEXT = [
    ".venv/bin/python",
    ".git/config",
    "data/sealroom.db",
    "data/crypto/sealroom.db",
    "sealroom-demo/secrets/webhook_secret",
    "sealroom-demo/config.yaml",
    "secrets/bot_password",
    ".env",
    "config.yaml",
    "node_modules/matrix-js-sdk/package.json",
    "tests/interop/node_modules/x/index.js",
    "bridge/__pycache__/cli.cpython-311.pyc",
    "store/__pycache__/engine.cpython-311.pyc",
    "bridge/.env",
    ".mypy_cache/3.11/bridge.json",
    "build/lib/bridge/cli.py",
    "sealroom.egg-info/PKG-INFO",
    "tests/unit/test_cli.py",
    "docs/operations.md",
]


@pytest.mark.parametrize("path", NEVER_IN_CONTEXT)
def test_dockerignore_keeps_local_state_and_secrets_out_of_the_context(path: str) -> None:
    assert is_ignored(path, RULES)


def test_dockerignore_matcher_follows_dockers_rules() -> None:
    rules = dockerignore_rules("*\n!src\n**/__pycache__\n")

    assert is_ignored("anything.txt", rules)
    assert not is_ignored("src/a/b.py", rules)
    assert is_ignored("src/a/__pycache__/b.pyc", rules)


# -- the Dockerfile --------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text("utf-8")
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def test_every_file_the_dockerfile_copies_is_in_the_context() -> None:
    for word, args in dockerfile_instructions():
        if word == "COPY":
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (REPO / source).exists(), source
                assert not is_ignored(source, RULES), f"{source} is in .dockerignore"
                for file in (REPO / source).rglob("*.py") if (REPO / source).is_dir() else []:
                    relative = file.relative_to(REPO).as_posix()
                    if "__pycache__" not in relative:
                        assert not is_ignored(relative, RULES), relative


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    instructions = dockerfile_instructions()
    steps = [f"{word} {args}" for word, args in instructions]
    first_dependencies = next(i for i, s in enumerate(steps) if "pip install -r" in s)
    first_source = next(i for i, s in enumerate(steps) if s.startswith("COPY bridge"))
    copies_before = [s for s in steps[:first_dependencies] if s.startswith("COPY")]

    assert first_dependencies < first_source
    assert copies_before == ["COPY pyproject.toml ./"]


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [args for word, args in dockerfile_instructions() if word == "USER"]

    assert users, "no USER instruction: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert int(user) >= 1000


def test_the_healthcheck_reads_the_config_the_service_runs_with() -> None:
    """No port in the Dockerfile's health check: `sealroom healthcheck` reads http.port from
    $SEALROOM_CONFIG, the file `run` uses."""
    instructions = dockerfile_instructions()
    [healthcheck] = [args for word, args in instructions if word == "HEALTHCHECK"]
    env = " ".join(args for word, args in instructions if word == "ENV")

    assert '["sealroom", "healthcheck"]' in healthcheck
    assert not re.search(r"\b8080\b", healthcheck)
    assert "SEALROOM_CONFIG=/etc/sealroom/config.yaml" in env
    assert ("CMD", '["run"]') in instructions  # no -c: the same $SEALROOM_CONFIG
    assert ("VOLUME", '["/data"]') in instructions


# -- compose.yaml and deploy/sealroom.yaml ----------------------------------------------------

COMPOSE_ENV = {
    "SEALROOM_DB_PASSWORD": "a-database-password-for-tests",
    "SEALROOM_SERVER_NAME": "example.org",
    "SEALROOM_PUBLIC_BASE_URL": "https://sealroom.example.org",
}


SECRET_VALUES = {
    "bot_password": "a-bot-password-for-tests",
    "admin_token": "syt_an_admin_token_for_tests",
    "webhook_secret": "whsec_" + "c2VhbHJvb20tY29tcG9zZS10ZXN0LWtleQ==",
}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "compose.yaml").read_text("utf-8")))


def _interpolate_compose(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, from COMPOSE_ENV."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if name in COMPOSE_ENV:
            return COMPOSE_ENV[name]
        assert op == ":-", f"${{{name}}} has no default and is not set"
        return rest

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value)


def deploy_config(tmp_path: Path) -> Config:
    """deploy/sealroom.yaml through the real schema, in the sealroom container's environment
    (compose's environment: and secrets: as files)."""
    service = compose()["services"]["sealroom"]
    environment = {k: _interpolate_compose(str(v)) for k, v in service["environment"].items()}
    text = DEPLOY_CONFIG.read_text("utf-8")
    for name in service["secrets"]:
        secret = tmp_path / name
        secret.write_text(SECRET_VALUES[name])
        text = text.replace(f"/run/secrets/{name}", str(secret))
    assert "/run/secrets/" not in text, "a *_file names a secret compose does not mount"
    old = dict(os.environ)
    os.environ.update(environment)
    try:
        return parse(yaml.safe_load(text))
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_the_compose_config_is_valid_in_the_sealroom_container(tmp_path: Path) -> None:
    config = deploy_config(tmp_path)

    assert config.bot.data_dir == Path("/data")  # the image's volume, not /data/data
    assert config.http.bind == "0.0.0.0"
    assert config.database_url.startswith("postgresql+asyncpg://sealroom:")
    assert config.homeserver.url == "http://synapse:8008"


def test_compose_wires_what_the_sealroom_config_expects(tmp_path: Path) -> None:
    config = deploy_config(tmp_path)
    services = compose()["services"]
    sealroom = services["sealroom"]
    volumes = {v.split(":")[1]: v for v in sealroom["volumes"]}
    ports = [p.rsplit(":", 1) for p in sealroom["ports"]]

    assert {"postgres", "synapse", "sealroom"} <= set(services)
    assert sealroom["environment"]["SEALROOM_CONFIG"] == "/etc/sealroom/config.yaml"
    assert volumes["/etc/sealroom/config.yaml"].endswith(":ro")
    assert volumes["/data"].startswith("sealroom:")  # a named volume for bot.data_dir
    assert "sealroom" in compose()["volumes"]
    # The public port is published, to the host's loopback only (the proxy's side) ...
    assert [(host, int(port)) for host, port in ports] == [("127.0.0.1:8080", config.http.port)]
    # ... and the metrics listener is not published at all.
    assert config.metrics.port is not None
    assert all(int(port) != config.metrics.port for _, port in ports)
    # The database sealroom uses is the postgres service's, with its user and database.
    postgres = services["postgres"]["environment"]
    assert "@postgres/" in config.database_url
    assert config.database_url.endswith(f"/{postgres['POSTGRES_DB']}")
    assert f"//{postgres['POSTGRES_USER']}:" in config.database_url
    assert set(sealroom["secrets"]) <= set(compose()["secrets"])
    assert set(sealroom["depends_on"]) == {"postgres", "synapse"}


def test_the_compose_config_uses_only_documented_options(tmp_path: Path) -> None:
    """Every key of deploy/sealroom.yaml is a key of config.example.yaml (the reference)."""

    def keys(node: Any, prefix: str = "") -> set[str]:
        if not isinstance(node, dict):
            return set()
        found = set()
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if prefix in ("agents", "integrations"):
                continue
            found |= {path} | keys(value, path)
        return found

    example = yaml.safe_load((REPO / "config.example.yaml").read_text("utf-8"))
    deploy = yaml.safe_load(DEPLOY_CONFIG.read_text("utf-8"))
    # *_file forms are commented out in the example; compare them by their secret's key.
    documented = keys(example) | {f"{k}_file" for k in keys(example)}
    documented |= {"homeserver.admin_token_file", "bot.password_file"}

    assert keys(deploy) - documented == set()


# -- with Docker -------------------------------------------------------------------------------


def _docker_daemon() -> str | None:
    """Why Docker cannot be used here, or None."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        return "no Docker daemon answers (docker info failed)"
    return None


def _compose_command() -> list[str] | None:
    """Docker's compose plugin, else the standalone docker-compose (Debian's 1.29), if any."""
    if shutil.which("docker") is not None:
        plugin = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if plugin.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose") is not None:
        return ["docker-compose"]
    return None


def _compose_folder(tmp_path: Path) -> Path:
    """compose.yaml and what it names, in a folder of its own: empty secret files (compose checks
    they exist), and no .env of the checkout's to read the database password from."""
    shutil.copy(REPO / "compose.yaml", tmp_path / "compose.yaml")
    (tmp_path / "deploy").mkdir()
    shutil.copy(DEPLOY_CONFIG, tmp_path / "deploy" / "sealroom.yaml")
    (tmp_path / "secrets").mkdir()
    for name in compose()["secrets"]:
        (tmp_path / "secrets" / name).touch()
    return tmp_path / "compose.yaml"


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed")
    result = subprocess.run(
        [*command, "-f", str(_compose_folder(tmp_path)), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **COMPOSE_ENV},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_to_start_without_the_database_password(tmp_path: Path) -> None:
    """`${SEALROOM_DB_PASSWORD:?...}`: no silent empty password."""
    command = _compose_command()
    if command is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed")
    env = {k: v for k, v in os.environ.items() if k != "SEALROOM_DB_PASSWORD"}
    result = subprocess.run(
        [*command, "-f", str(_compose_folder(tmp_path)), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    assert "set SEALROOM_DB_PASSWORD in .env" in result.stderr


def test_the_image_builds_and_runs_as_non_root() -> None:
    reason = _docker_daemon()
    if reason:
        pytest.skip(reason)
    tag = "sealroom-test:container-kit"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(REPO)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    try:
        version = subprocess.run(
            ["docker", "run", "--rm", tag, "--version"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        uid = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        example = subprocess.run(
            ["docker", "run", "--rm", tag, "example-config"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120, check=False)
    assert version.stdout.startswith("sealroom ")
    assert uid.stdout.strip() not in ("", "0")
    assert example.stdout == (REPO / "config.example.yaml").read_text("utf-8")
