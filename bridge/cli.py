"""Command line: `sealroom run|check-config|migrate|bot-identity|sessions|demo`.

Exit codes: 0 ok; 1 failed (for `sessions`: no such session, or nothing to do); 2 the
configuration, or what it points at (data directory, database, HTTP port), is wrong: one line
per problem on stderr, naming the key, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bridge import logs, preflight
from bridge.cli_sessions import run_sessions, sessions_parser
from bridge.config import Config, load
from bridge.errors import ConfigError, SealroomError
from bridge.preflight import StartupProblem

if TYPE_CHECKING:
    from bridge.app import App

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

# What a listening socket's bind fails with; any other error keeps its traceback (a bug).
_LISTEN_ERRNOS = {errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sealroom", description="Secure credential hand-off rooms on Matrix."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the service"),
        ("check-config", "validate the configuration and print every problem"),
        ("migrate", "apply database migrations and exit"),
    ):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument(
            "-c", "--config", type=Path, default=Path("config.yaml"), help="YAML configuration"
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
        "-c", "--config", type=Path, default=Path("config.yaml"), help="YAML configuration"
    )
    identity.add_argument(
        "--recovery-key",
        action="store_true",
        help="restore: read the recovery key from the terminal (or standard input)",
    )
    sessions_parser(sub)
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
    if args.command != "check-config":
        preflight.restrict_new_files()  # before anything below creates a file or a folder
    if args.command == "demo":
        from bridge.devtools.demo import run_demo

        return asyncio.run(run_demo(args.dir.resolve(), args.port, args.exit_after_setup))
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if args.command == "check-config":
        problem = preflight.data_dir_problem(config.bot.data_dir)
        if problem:
            _print_problems(args.config, [problem])
            return EXIT_CONFIG
        print(f"{args.config}: configuration is valid")
        for warning in config_warnings(config):
            print(f"{args.config}: warning: {warning}")
        return EXIT_OK
    logs.configure(config.logging.level, config.logging.format, secrets=config_secrets(config))
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(config))
        if args.command == "sessions":
            return asyncio.run(run_sessions(config, args))
        if args.command == "bot-identity":
            recovery_key = _read_recovery_key() if args.recovery_key else None
            return asyncio.run(_bot_identity(config, recovery_key))
        return asyncio.run(_run(config))
    except StartupProblem as problem:
        print(f"sealroom: {problem}", file=sys.stderr)
        return EXIT_CONFIG


async def _prepare(config: Config) -> None:
    """The data directory and the database, checked before any part starts."""
    preflight.prepare_data_dir(config.bot.data_dir)
    await preflight.check_database(config.database_url)


async def _migrate(config: Config) -> int:
    await _prepare(config)
    import store.migrate  # after the checks: importing Alembic already logs
    from store import Database

    database = Database(config.database_url)
    try:
        await store.migrate.upgrade_to_head(database)
        print(f"database at revision {await store.migrate.current_revision(database)}")
    finally:
        await database.close()
    return EXIT_OK


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
