"""A three-node PostgreSQL cluster managed by Patroni, with one etcd member as its store, for
the failover tests.

Everything listens on 127.0.0.1 on free ports and lives under one temporary directory; as
root, every program (etcd, Patroni, and the PostgreSQL servers Patroni starts) runs as the
unprivileged server user of `exportsathi_db.servers`. Timings are a test's, not production's:
a leader key that lives 10 s, a 1 s HA loop, a crashed leader failed over at once
(`primary_start_timeout: 0`), synchronous replication on.

    with PatroniCluster() as cluster:      # etcd + 3 Patroni nodes, bootstrapped and healthy
        cluster.leader()                   # Member(name='node1', role='leader', ...)
        cluster.kill_postmaster("node1")   # an unplanned loss
        cluster.switchover()               # a planned one (Patroni's REST API)

Status and switchover go through Patroni's REST API on loopback (never `patronictl`, which
hangs while etcd is down), with timeouts. At the end every process group is killed, even
after a failure, and the directory is deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy.engine import URL

from exportsathi_db.servers import free_port
from exportsathi_db.servers.programs import as_user, own_dir, run, server_user

PATRONI = Path(shutil.which("patroni") or "/usr/bin/patroni")
ETCD = Path(shutil.which("etcd") or "/usr/bin/etcd")
PG15_BIN = Path("/usr/lib/postgresql/15/bin")
LOOPBACK = "127.0.0.1"
LEADER_ROLES = ("leader", "master", "primary")

# The cluster-wide (DCS) settings Patroni bootstraps with. Kept small for a test: a leader
# key of 10 s, a 1 s loop, a crashed primary failed over instead of restarted in place.
DCS_SETTINGS: dict[str, Any] = {
    "ttl": 10,
    "loop_wait": 1,
    "retry_timeout": 3,
    "maximum_lag_on_failover": 1024 * 1024,
    "primary_start_timeout": 0,
    "synchronous_mode": True,
    "postgresql": {
        "use_pg_rewind": True,
        "use_slots": True,
        "parameters": {
            "max_connections": 100,
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "wal_keep_size": "128MB",
            "hot_standby": "on",
            "wal_log_hints": "on",
            # the test's own durability: synchronous_commit stays 'on'
            "synchronous_commit": "on",
        },
    },
}


def missing_components(bin_dir: Path = PG15_BIN) -> list[str]:
    """What the cluster needs and this machine lacks (Debian package names)."""
    missing = []
    if not PATRONI.is_file():
        missing.append("patroni")
    if not ETCD.is_file():
        missing.append("etcd-server")
    if not (bin_dir / "postgres").is_file():
        missing.append("postgresql-15")
    return missing


@dataclass(frozen=True)
class Member:
    """One node as Patroni's /cluster endpoint reports it."""

    name: str
    role: str  # leader, sync_standby, replica
    state: str  # running, streaming, starting, stopped, ...
    port: int
    timeline: int | None
    lag: int | str | None

    @property
    def is_leader(self) -> bool:
        return self.role in LEADER_ROLES

    @property
    def is_up(self) -> bool:
        return self.state in ("running", "streaming")


class ClusterError(RuntimeError):
    """The HA cluster did not start, or did not reach the state waited for; the message
    ends with the tail of the relevant logs."""


@dataclass
class _Process:
    """A program started in a process group of its own (killed as a group at the end)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float) -> None:
        """SIGTERM the group and wait up to `grace` seconds (if any), then SIGKILL it."""
        if grace > 0:
            _signal_group(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        _signal_group(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


@dataclass
class Node:
    """One Patroni node: its PostgreSQL port, REST API port and directories."""

    name: str
    port: int
    api_port: int
    home: Path
    process: _Process | None = None

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def api(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port}"

    def postmaster_pid(self) -> int | None:
        """The pid of this node's running postmaster (from postmaster.pid), else None."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, IndexError, ValueError):
            return None
        return pid if comm in ("postgres", "postmaster") else None


@dataclass
class PatroniCluster:
    """etcd and `size` Patroni nodes of PostgreSQL (Debian's 15 by default), on loopback."""

    size: int = 3
    bin_dir: Path = PG15_BIN
    superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    replication_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def __post_init__(self) -> None:
        self.run_as = server_user()
        self.root = Path(tempfile.mkdtemp(prefix="exportsathi-ha-"))
        own_dir(self.root, self.run_as)
        self.scope = f"exportsathi-ha-{secrets.token_hex(4)}"
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.etcd: _Process | None = None
        self.nodes = [
            Node(f"node{i}", free_port(), free_port(), self.root / f"node{i}")
            for i in range(1, self.size + 1)
        ]

    # ---- lifecycle

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()

    def start(self, timeout: float = 120) -> None:
        """Start etcd, then every node at once (one wins the bootstrap, the others copy it);
        return when the cluster is healthy (`wait_healthy`)."""
        self._start_etcd()
        for node in self.nodes:
            own_dir(node.home, self.run_as)
            config = node.home / "patroni.json"  # YAML is a superset of JSON
            config.write_text(json.dumps(self._patroni_config(node), indent=1))
            if self.run_as:
                os.chown(config, *self.run_as)
            node.process = self._spawn(node.name, [str(PATRONI), str(config)], node.home)
        self.wait_healthy(timeout)

    def destroy(self) -> None:
        """Kill everything and delete the directory. Nothing here is worth a clean shutdown:
        Patroni's process groups are killed first (so none restarts its PostgreSQL), then
        each postmaster gets an immediate shutdown (which still frees its shared memory)."""
        for proc in [n.process for n in self.nodes if n.process is not None]:
            proc.stop(grace=0)
        for node in self.nodes:  # a postmaster outlives Patroni (it runs in its own group)
            if (pid := node.postmaster_pid()) is not None:
                _signal(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        for node in self.nodes:
            while (pid := node.postmaster_pid()) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid is not None:  # its children (each a process group) notice and exit
                _signal(pid, signal.SIGKILL)
        if self.etcd is not None:
            self.etcd.stop(grace=5)
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- what the tests use

    def url(
        self,
        database: str,
        user: str,
        password: str,
        *,
        target_session_attrs: str = "read-write",
        nodes: list[Node] | None = None,
    ) -> URL:
        """A multi-host asyncpg URL listing the nodes (one `host=` query value each)."""
        hosts = tuple(f"{LOOPBACK}:{n.port}" for n in nodes or self.nodes)
        query = {"host": hosts, "target_session_attrs": target_session_attrs}
        return URL.create("postgresql+asyncpg", user, password, None, None, database, query)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def members(self, timeout: float = 2.0) -> list[Member]:
        """The cluster as any answering node's REST API reports it (`GET /cluster`)."""
        last: Exception | None = None
        for node in self.nodes:
            try:
                body = self._request(node, "GET", "/cluster", timeout=timeout)
            except (OSError, ValueError) as exc:  # URLError is an OSError
                last = exc
                continue
            return [
                Member(
                    m["name"],
                    m["role"],
                    m.get("state", ""),
                    int(m.get("port", 0)),
                    m.get("timeline"),
                    m.get("lag"),
                )
                for m in json.loads(body)["members"]
            ]
        raise ClusterError(f"no Patroni REST API answered: {last}")

    def leader(self) -> Member | None:
        """The member holding the leader key and running, if any."""
        with contextlib.suppress(ClusterError):
            for m in self.members():
                if m.is_leader and m.is_up:
                    return m
        return None

    def wait_healthy(self, timeout: float = 60) -> Member:
        """Wait until one leader runs, every other node streams from it with no lag, and one
        of them is the synchronous standby; the leader."""
        deadline = time.monotonic() + timeout
        seen: list[Member] | str = "nothing yet"
        while time.monotonic() < deadline:
            self._check_processes()
            try:
                seen = self.members()
            except ClusterError as exc:
                seen = str(exc)
            else:
                if self._healthy(seen):
                    return next(m for m in seen if m.is_leader)
            time.sleep(0.2)
        raise ClusterError(f"not healthy within {timeout} s: {seen}\n{self.logs()}")

    def wait_leader(self, *, other_than: str | None = None, timeout: float = 60) -> Member:
        """Wait until a leader (other than `other_than`) runs; it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader.name != other_than:
                return leader
            time.sleep(0.05)
        raise ClusterError(f"no new leader within {timeout} s\n{self.logs()}")

    def wait_replayed(self, timeout: float = 30) -> None:
        """Wait until every standby has replayed the leader's WAL as of now (Patroni's lag
        figures are up to a loop old): what was just written is readable on every node."""
        target = self.psql("SELECT pg_current_wal_lsn()")
        standbys = [n for n in self.nodes if n.port != self.wait_healthy(timeout).port]
        deadline = time.monotonic() + timeout
        for node in standbys:
            sql = f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
            while self.psql(sql, node=node) != "t":
                if time.monotonic() > deadline:
                    raise ClusterError(f"{node.name} did not replay up to {target}")
                time.sleep(0.05)

    def kill_postmaster(self, name: str) -> int:
        """SIGKILL the node's postmaster (only it: its children notice and exit); its pid."""
        pid = self.node(name).postmaster_pid()
        if pid is None:
            raise ClusterError(f"{name} has no running postmaster")
        os.kill(pid, signal.SIGKILL)
        return pid

    def switchover(self, candidate: str | None = None, timeout: float = 30) -> str:
        """A planned switchover through the leader's REST API (`POST /switchover`); returns
        when Patroni answers, which it does once the new leader is promoted."""
        leader = self.leader()
        if leader is None:
            raise ClusterError("no leader to switch over from")
        body: dict[str, str] = {"leader": leader.name}
        if candidate:
            body["candidate"] = candidate
        try:
            return self._request(
                self.node(leader.name), "POST", "/switchover", body, timeout=timeout
            )
        except urllib.error.HTTPError as exc:
            raise ClusterError(f"switchover refused ({exc.code}): {exc.read()!r}") from exc

    def psql(self, sql: str, *, node: Node | None = None, database: str = "postgres") -> str:
        """Run `sql` with psql on a node (the leader by default) over its unix socket."""
        if node is None:
            leader = self.leader()
            if leader is None:
                raise ClusterError("no leader to run SQL on")
            node = self.node(leader.name)
        args = [self.bin_dir / "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", node.home]
        args += ["-p", node.port, "-U", "postgres", "-d", database, "-c", sql]
        return run(args, self.run_as).stdout.strip()

    def logs(self, lines: int = 15) -> str:
        """The tail of every log (etcd, Patroni, PostgreSQL), for failure messages."""
        parts = []
        files = [self.root / "etcd.log"]
        for node in self.nodes:
            files.append(node.home / f"{node.name}.log")
            files.extend(sorted((node.home / "pglog").glob("*.log"))[-1:])
        for path in files:
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
                parts.append(f"--- {path.relative_to(self.root)} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    # ---- internals

    def _healthy(self, members: list[Member]) -> bool:
        leaders = [m for m in members if m.is_leader and m.is_up]
        if len(members) != self.size or len(leaders) != 1:
            return False
        replicas = [m for m in members if not m.is_leader]
        return (
            all(m.is_up and m.lag == 0 for m in replicas)
            and all(m.timeline == leaders[0].timeline for m in replicas)
            and any(m.role == "sync_standby" for m in replicas)
        )

    def _check_processes(self) -> None:
        for proc in [self.etcd, *(n.process for n in self.nodes)]:
            if proc is not None and not proc.alive():
                raise ClusterError(f"{proc.name} exited ({proc.popen.returncode})\n{self.logs()}")

    def _start_etcd(self) -> None:
        data = own_dir(self.root / "etcd", self.run_as)
        client = f"http://{LOOPBACK}:{self.etcd_port}"
        peer = f"http://{LOOPBACK}:{self.etcd_peer_port}"
        args = [
            str(ETCD), "--name", "etcd0", "--data-dir", str(data),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"etcd0={peer}", "--initial-cluster-state", "new",
            "--initial-cluster-token", self.scope, "--logger", "zap", "--log-level", "warn",
        ]  # fmt: skip
        self.etcd = self._spawn("etcd", args, self.root)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.etcd.alive():
                break
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(f"{client}/health", timeout=1) as resp,  # noqa: S310
            ):
                if json.loads(resp.read()).get("health") == "true":
                    return
            time.sleep(0.1)
        raise ClusterError(f"etcd did not become healthy\n{self.logs()}")

    def _patroni_config(self, node: Node) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "namespace": "/exportsathi-ha/",
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"{LOOPBACK}:{node.api_port}",
                "connect_address": f"{LOOPBACK}:{node.api_port}",
            },
            "etcd3": {"hosts": [f"{LOOPBACK}:{self.etcd_port}"]},
            "bootstrap": {
                "dcs": DCS_SETTINGS,
                "initdb": [{"encoding": "UTF8"}, "no-locale", "data-checksums"],
            },
            "postgresql": {
                "listen": f"{LOOPBACK}:{node.port}",
                "connect_address": f"{LOOPBACK}:{node.port}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(self.bin_dir),
                "pgpass": str(node.home / "pgpass"),
                "use_unix_socket": True,
                "authentication": {
                    "superuser": {"username": "postgres", "password": self.superuser_password},
                    "replication": {
                        "username": "replicator",
                        "password": self.replication_password,
                    },
                },
                "parameters": {
                    "unix_socket_directories": str(node.home),
                    "shared_buffers": "32MB",
                    "logging_collector": "on",
                    "log_directory": str(node.home / "pglog"),
                    "log_filename": "postgresql-%H%M%S.log",
                    "log_min_messages": "warning",
                },
                "pg_hba": [
                    "local all all trust",
                    f"host all all {LOOPBACK}/32 scram-sha-256",
                    f"host replication replicator {LOOPBACK}/32 scram-sha-256",
                ],
                # Copy the leader with a fast checkpoint, not a spread one (minutes).
                "basebackup": {"checkpoint": "fast"},
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
            "watchdog": {"mode": "off"},
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
        }

    def _spawn(self, name: str, args: list[str], cwd: Path) -> _Process:
        log = (cwd / f"{name}.log") if name != "etcd" else self.root / "etcd.log"
        env = {  # no PG*, PATRONI_* or ETCD_* of ours: those would override the configs
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(cwd),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        with log.open("ab") as fh:
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,  # its own process group, killed as one at the end
                **as_user(self.run_as),
            )
        return _Process(name, popen, log)

    def _request(
        self,
        node: Node,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        timeout: float,
    ) -> str:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 (http on loopback)
            node.api + path, data=data, method=method
        )
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            text: str = resp.read().decode()
            return text


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group led by `pid` (a session leader), if it still exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
