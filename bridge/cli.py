"""Command line: `sealroom run|check-config|migrate|bot-identity|sessions|healthcheck|
example-config|demo` and `sealroom --version`.

Exit codes: 0 ok; 1 failed (for `sessions`: no such session, or nothing to do); 2 the
configuration, or what it points at (data directory, database, HTTP port), is wrong: one line
per problem on stderr, naming the key, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import http.client
import importlib.metadata
import importlib.resources
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bridge import logs, preflight
from bridge.cli_migrate import run_migrate, schema_problem
from bridge.cli_sessions import run_sessions, sessions_parser
from bridge.config import Config
from bridge.config_file import default_path, load
from bridge.errors import ConfigError, SealroomError
from bridge.preflight import StartupProblem

if TYPE_CHECKING:
    from bridge.app import App

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

# What a listening socket's bind fails with; any other error keeps its traceback (a bug).
_LISTEN_ERRNOS = {errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL}


def version() -> str:
    """The installed distribution's version (pyproject.toml's), or a marker outside an install."""
    try:
        return importlib.metadata.version("sealroom")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def example_config() -> str:
    """config.example.yaml as shipped inside the package (the wheel and the image have it)."""
    return (importlib.resources.files("bridge") / "config.example.yaml").read_text("utf-8")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sealroom", description="Secure credential hand-off rooms on Matrix."
    )
    parser.add_argument("--version", action="version", version=f"sealroom {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the service"),
        ("check-config", "validate the configuration and print every problem"),
        (
            "migrate",
            "apply database migrations and exit (or, with --downgrade-to, undo the newer ones "
            "before going back to an older version)",
        ),
        (
            "healthcheck",
            "exit 0 if the running service answers GET /healthz on the configured "
            "http.bind and http.port (for a container's HEALTHCHECK)",
        ),
    ):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument(
            "-c",
            "--config",
            type=Path,
            default=default_path(),
            help="YAML configuration (default: $SEALROOM_CONFIG, else config.yaml)",
        )
    sub.choices["migrate"].add_argument(
        "--downgrade-to",
        metavar="REVISION",
        help="undo the migrations after REVISION (e.g. 0003), for a rollback to the version "
        "whose newest migration it is; back up the database first",
    )
    identity = sub.add_parser(
        "bot-identity",
        help="set up (or restore) the bot's cross-signing, secret storage and key backup",
        description="Without options: set up the bot's cross-signed identity if it has none and "
        "print its recovery key once; otherwise show its state. With --recovery-key: after the "
        "bot's data directory was lost, read the recovery key (prompted, or from standard "
        "input) and cross-sign the bot's new device. Stop the service first.",
    )
    identity.add_argument(
        "-c",
        "--config",
        type=Path,
        default=default_path(),
        help="YAML configuration (default: $SEALROOM_CONFIG, else config.yaml)",
    )
    identity.add_argument(
        "--recovery-key",
        action="store_true",
        help="restore: read the recovery key from the terminal (or standard input)",
    )
    sessions_parser(sub)
    sub.add_parser(
        "example-config",
        help="print the commented example configuration (every option and its default)",
        description="Print config.example.yaml: sealroom example-config > config.yaml",
    )
    demo = sub.add_parser(
        "demo",
        help="start a local Synapse and sealroom and walk through the flow",
        description="Start a local Synapse (SQLite) and sealroom on 127.0.0.1, send a signed "
        "sample webhook and print the invite link and the agent's login.",
    )
    demo.add_argument("--dir", type=Path, default=Path("sealroom-demo"), help="working folder")
    demo.add_argument("--port", type=int, default=8080, help="sealroom's HTTP port")
    demo.add_argument(
        "--exit-after-setup",
        action="store_true",
        help="stop once the invite link is printed (for scripts and tests)",
    )
    return parser


def _load(path: Path) -> Config | None:
    try:
        return load(path)
    except ConfigError as err:
        _print_problems(path, err.problems)
        return None


def _print_problems(path: Path, problems: list[str]) -> None:
    """One problem is one line; several are a count and then one line each."""
    if len(problems) == 1:
        print(f"{path}: {problems[0]}", file=sys.stderr)
        return
    print(f"{path}: {len(problems)} problems:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def config_secrets(config: Config) -> list[str | None]:
    """Every secret in the configuration, so that the log redaction cuts them out anywhere."""
    return [
        config.homeserver.admin_token_value(),
        config.bot.password_value(),
        config.bot.access_token_value(),
        config.bot.pickle_key_value(),
        config.api.token_value(),
        *(
            value
            for integration in config.integrations.values()
            for value in integration.secret_values()
        ),
        *(
            value
            for integration in config.integrations.values()
            if integration.outbound is not None
            for value in integration.outbound.secret_values()
        ),
    ]


def config_warnings(config: Config) -> list[str]:
    """What a valid configuration still leaves undone (one line each, not errors)."""
    warnings = []
    if config.homeserver.admin_token_value() is None:
        warnings.append(
            "homeserver.admin_token is not set: closed rooms are redacted, but the homeserver "
            "keeps the redacted events and the uploaded files (only an admin token lets "
            "sealroom purge them)"
        )
    return warnings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "example-config":
        sys.stdout.write(example_config())
        return EXIT_OK
    if args.command == "check-config":
        return _check_config(args.config)
    preflight.restrict_new_files()  # before anything below creates a file or a folder
    if args.command == "demo":
        from bridge.devtools.demo import run_demo

        return asyncio.run(run_demo(args.dir.resolve(), args.port, args.exit_after_setup))
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if args.command == "healthcheck":
        return _healthcheck(config)
    logs.configure(config.logging.level, config.logging.format, secrets=config_secrets(config))
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(config, args.downgrade_to))
        if args.command == "sessions":
            return asyncio.run(run_sessions(config, args))
        if args.command == "bot-identity":
            recovery_key = _read_recovery_key() if args.recovery_key else None
            return asyncio.run(_bot_identity(config, recovery_key))
        return asyncio.run(_run(config))
    except StartupProblem as problem:
        print(f"sealroom: {problem}", file=sys.stderr)
        return EXIT_CONFIG


def _check_config(path: Path) -> int:
    """Every problem in one run: the file's values, its secrets and the data directory."""
    config: Config | None = None
    try:
        config = load(path)
    except ConfigError as err:
        problems, data_dir = err.problems, err.data_dir
    else:
        problems, data_dir = [], config.bot.data_dir
    data_dir_problem = None if data_dir is None else preflight.data_dir_problem(data_dir)
    if data_dir_problem is not None:
        problems.append(data_dir_problem)
    if problems or config is None:
        _print_problems(path, problems)
        return EXIT_CONFIG
    print(f"{path}: configuration is valid")
    for warning in config_warnings(config):
        print(f"{path}: warning: {warning}")
    return EXIT_OK


# Seconds the health check waits for the service's answer (a container's HEALTHCHECK has its own
# --timeout around the whole command).
HEALTHCHECK_TIMEOUT_SECONDS = 5.0


def _healthcheck(config: Config) -> int:
    """GET /healthz where `run` listens: a wildcard bind is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(  # noqa: S104
        config.http.bind, config.http.bind
    )
    connection = http.client.HTTPConnection(
        host, config.http.port, timeout=HEALTHCHECK_TIMEOUT_SECONDS
    )
    try:
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
    except OSError as err:
        print(f"sealroom: unhealthy: http://{host}:{config.http.port}/healthz: {err}")
        return EXIT_FAILED
    finally:
        connection.close()
    if status != 200:
        print(f"sealroom: unhealthy: http://{host}:{config.http.port}/healthz answered {status}")
        return EXIT_FAILED
    print("sealroom: healthy")
    return EXIT_OK


async def _prepare(config: Config) -> None:
    """The data directory and the database, checked before any part starts."""
    preflight.prepare_data_dir(config.bot.data_dir)
    await preflight.check_database(config.database_url)


async def _migrate(config: Config, downgrade_to: str | None) -> int:
    await _prepare(config)
    return await run_migrate(config.database_url, downgrade_to)


def _read_recovery_key() -> str:
    """Never from the command line (shell history, `ps`): a prompt without echo, or stdin."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("The bot's recovery key: ")
    return sys.stdin.readline()


async def _bot_identity(config: Config, recovery_key: str | None) -> int:
    await _prepare(config)
    from bridge.app import App, show_recovery_key
    from bridge.matrix.bot_identity import describe

    app = App(config)
    try:
        if app.leadership is not None:
            # The bot's device is used by one process at a time: wait for the cluster lock.
            print("bot-identity: waiting for the cluster lock (stop the running instances)")
            await app.leadership.campaign()
        await app.bot.start()
        await app.bot.wait_until_synced(120)
        if recovery_key is not None:
            await app.identity.restore(recovery_key)
            print("The bot's device is cross-signed again.")
        else:
            created = await app.identity.ensure()
            if created is not None:
                show_recovery_key(created, config.bot.user_id)
        print(describe(await app.identity.status()))
    except SealroomError as err:
        print(f"bot-identity: {err.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await app.bot.stop()
        if app.leadership is not None:
            await app.leadership.close()
        await app.database.close()
    return EXIT_OK


async def _run(config: Config) -> int:
    await _prepare(config)
    preflight.check_port(config.http.bind, config.http.port)
    if config.metrics.port is not None:
        preflight.check_port(config.metrics.bind, config.metrics.port, "metrics")
    from bridge.app import App  # after the checks: importing Alembic already logs

    app = App(config)
    try:
        await app.run_until_signal()
    except Exception as err:
        problem = _start_failure(config, app, err)
        if problem is None:
            raise
        await _stop_quietly(app)
        raise problem from None
    return EXIT_OK


def _start_failure(config: Config, app: App, err: Exception) -> StartupProblem | None:
    """What went wrong in a start that passed the checks above (something changed meanwhile)."""
    problem = schema_problem(err)
    if problem is not None:
        return problem
    if isinstance(err, SealroomError):
        if err.errcode == "SEALROOM_BOT_LOCKED":
            return StartupProblem(f"bot.data_dir: {config.bot.data_dir}: {err.message}")
        return StartupProblem(err.message)
    unavailable = app.database.explain(err)
    if unavailable is not None:
        return preflight.database_problem(unavailable)
    if not isinstance(err, OSError):
        return None
    if err.filename is not None:
        return StartupProblem(
            f"bot.data_dir: cannot use {err.filename}: {err.strerror}; check the permissions "
            "of bot.data_dir"
        )
    if err.errno in _LISTEN_ERRNOS:
        return preflight.port_problem(config.http.bind, config.http.port, err)
    return None


async def _stop_quietly(app: App) -> None:
    """Stop what did start; the process exits anyway, so a second failure changes nothing."""
    try:
        await app.stop()
    except Exception:  # noqa: S110 (the first failure is what the operator must see)
        pass
