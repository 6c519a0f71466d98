"""Command line: `sealroom run|check-config|migrate|demo`. Exit codes: 0 ok, 2 bad config."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bridge import logs
from bridge.config import Config, load
from bridge.errors import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


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
        print(f"{path}: {len(err.problems)} problem(s):", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def config_secrets(config: Config) -> list[str | None]:
    """Every secret in the configuration, so that the log redaction cuts them out anywhere."""
    return [
        config.homeserver.admin_token_value(),
        config.bot.password_value(),
        config.bot.access_token_value(),
        config.bot.pickle_key_value(),
        *(integration.secret_value() for integration in config.integrations.values()),
    ]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from bridge.devtools.demo import run_demo

        return asyncio.run(run_demo(args.dir.resolve(), args.port, args.exit_after_setup))
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if args.command == "check-config":
        print(f"{args.config}: configuration is valid")
        return EXIT_OK
    logs.configure(config.logging.level, config.logging.format, secrets=config_secrets(config))
    if args.command == "migrate":
        return asyncio.run(_migrate(config))
    if args.command == "bot-identity":
        recovery_key = _read_recovery_key() if args.recovery_key else None
        return asyncio.run(_bot_identity(config, recovery_key))
    return asyncio.run(_run(config))


async def _migrate(config: Config) -> int:
    import store.migrate
    from store import Database

    config.bot.data_dir.mkdir(parents=True, exist_ok=True)
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
    from bridge.app import App, show_recovery_key
    from bridge.errors import SealroomError
    from bridge.matrix.bot_identity import describe

    app = App(config)
    config.bot.data_dir.mkdir(parents=True, exist_ok=True)
    try:
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
        await app.database.close()
    return EXIT_OK


async def _run(config: Config) -> int:
    from bridge.app import App

    await App(config).run_until_signal()
    return EXIT_OK
