"""Start-up checks: each problem an operator can fix becomes one line naming the key and the cause.

`sealroom run` checks, in this order and before any part starts: the data directory (created
0700, writable), the database (one connection), and the HTTP port (free). A failure is a
`StartupProblem` whose text is "config.key: what is wrong; what to do", printed on one line
with exit code 2 instead of a traceback. `data_dir_problem` is the side-effect-free part that
`sealroom check-config` runs too.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

from store.engine import Database, DatabaseUnavailable

# Everything sealroom creates is for its own user only: files 0600, folders 0700.
UMASK = 0o077
PRIVATE_DIR = 0o700
DATABASE_TIMEOUT_SECONDS = 15.0


class StartupProblem(Exception):
    """One line for the operator: the config key or path, the cause, and what to do."""


def restrict_new_files() -> None:
    """Make every file and folder this process creates private, whoever creates it.

    Set at CLI start, before anything is created: SQLite (the database and its -wal/-shm files),
    nio's crypto store, the lock file and the state files all inherit it.
    """
    os.umask(UMASK)


# -- the data directory -------------------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor or ".")


def data_dir_problem(path: Path) -> str | None:
    """Why `path` cannot serve as the data directory, judged without creating or writing."""
    if path.exists():
        if not path.is_dir():
            return f"bot.data_dir: {path} exists and is not a folder; choose another bot.data_dir"
        if not os.access(path, os.W_OK | os.X_OK):
            return (
                f"bot.data_dir: cannot write in {path} (permission denied); give the user "
                "sealroom runs as write access to it, or choose another bot.data_dir"
            )
        return None
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        return (
            f"bot.data_dir: cannot create {path}: {ancestor} is a file, not a folder; "
            "choose another bot.data_dir"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return (
            f"bot.data_dir: cannot create {path}: no permission to write in {ancestor}; "
            "create the folder for the user sealroom runs as, or choose another bot.data_dir"
        )
    return None


def prepare_data_dir(path: Path) -> None:
    """Create the data directory (0700) if needed, make it private, and prove it is writable.

    The folder and what sealroom keeps directly in it (the database, the crypto store, the lock
    and state files) lose any group or other permission an older version left on them.

    Raises:
        StartupProblem: naming bot.data_dir and the path.
    """
    problem = data_dir_problem(path)
    if problem:
        raise StartupProblem(problem)
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    except OSError as err:
        raise StartupProblem(
            f"bot.data_dir: cannot create {path}: {err.strerror}; choose another bot.data_dir"
        ) from None
    _make_private(path)
    probe = path / f".sealroom-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as err:
        raise StartupProblem(
            f"bot.data_dir: cannot write in {path}: {err.strerror}; give the user sealroom "
            "runs as write access to it, or choose another bot.data_dir"
        ) from None


def _make_private(path: Path) -> None:
    """Drop group and other permissions from `path` and its direct entries (not via symlinks)."""
    uid = os.geteuid()
    try:
        entries = [path, *path.iterdir()]
    except OSError:
        return
    for entry in entries:
        try:
            info = entry.lstat()
            if stat.S_ISLNK(info.st_mode) or info.st_uid != uid or not info.st_mode & 0o077:
                continue
            os.chmod(entry, stat.S_IMODE(info.st_mode) & ~0o077)
        except OSError:
            continue  # not ours to change; the write test below says whether we can work


# -- the database -------------------------------------------------------------------------------

_DATABASE_ADVICE = {
    "refused": "is PostgreSQL running and listening there? Start it, or fix database.url",
    "unresolvable": "fix the host name in database.url",
    "timeout": "check the host, the port and any firewall in database.url",
    "missing_database": "create the database (for example with createdb), or fix database.url",
    "login": "check the user name and password in database.url",
    "other": "fix database.url, or the database server",
}


async def check_database(url: str, timeout: float = DATABASE_TIMEOUT_SECONDS) -> None:
    """Connect once. Raises StartupProblem naming database.url (never with its password)."""
    database = Database(url)
    try:
        await database.check(timeout)
    except DatabaseUnavailable as err:
        raise database_problem(err) from None
    finally:
        await database.close()


def database_problem(err: DatabaseUnavailable) -> StartupProblem:
    advice = _DATABASE_ADVICE.get(err.kind, _DATABASE_ADVICE["other"])
    return StartupProblem(f"database.url: {err}; {advice}")


# -- the HTTP port ------------------------------------------------------------------------------


def check_port(bind: str, port: int, section: str = "http") -> None:
    """Bind (and release) every address the HTTP server will listen on.

    `section` names the keys in the messages: `http`, or `metrics` for the metrics listener.

    Raises:
        StartupProblem: naming <section>.port or <section>.bind.
    """
    if port == 0:
        return  # the system picks a free port
    try:
        addresses = socket.getaddrinfo(
            bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        raise StartupProblem(
            f"{section}.bind: cannot resolve {bind!r} ({err.strerror}); use an IP address of this "
            "machine, for example 127.0.0.1 or 0.0.0.0"
        ) from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as err:
                raise port_problem(bind, port, err, section) from None


def port_problem(bind: str, port: int, err: OSError, section: str = "http") -> StartupProblem:
    where = f"{bind}:{port}"
    if err.errno == errno.EADDRINUSE:
        return StartupProblem(
            f"{section}.port: {where} is already in use by another program; stop it, or set "
            f"{section}.port to a free port"
        )
    if err.errno == errno.EACCES:
        return StartupProblem(
            f"{section}.port: not allowed to listen on {where} (ports below 1024 need "
            "privileges); choose a port above 1023 and put a reverse proxy in front"
        )
    if err.errno == errno.EADDRNOTAVAIL:
        return StartupProblem(
            f"{section}.bind: {bind} is not an address of this machine; use one of its addresses, "
            "127.0.0.1 or 0.0.0.0"
        )
    return StartupProblem(f"{section}.port: cannot listen on {where}: {err.strerror}")
