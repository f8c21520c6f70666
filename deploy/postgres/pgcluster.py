#!/usr/bin/env python3
"""PostgreSQL clusters of Emporium's own: a primary, streaming replicas, backups, restores.

Standard library only, so a database host needs nothing but PostgreSQL and
Python to run it; the tests, ``make cluster``, ``make backup``, ``make restore``
and ``make failover`` all go through these functions. Every server runs as the
``postgres`` operating-system user when invoked as root (PostgreSQL refuses to
run as root) and as the invoking user otherwise. The binaries are taken from
``PG_BINDIR``, else from ``pg_config --bindir``, else from the newest
``/usr/lib/postgresql/<version>/bin``.

    pgcluster.py primary  --data DIR --port 5440 [--archive DIR]   # initdb + start
    pgcluster.py replica  --data DIR --port 5441 --primary-port 5440  # pg_basebackup -R + start
    pgcluster.py start|stop|kill|promote|status --data DIR
    pgcluster.py backup   --port 5440 --backups DIR [--keep 7] [--database emporium]
    pgcluster.py restore  --backups DIR --data DIR --port 5442 [--target-time ISO]
    pgcluster.py failover --old-primary DIR --replica DIR           # fence the old, promote

Security: the clusters made here trust every connection from 127.0.0.1
(``--auth-host=trust``), which suits a loopback topology for development and
tests; a real deployment keeps its own ``pg_hba.conf`` and passwords.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

SERVICE_USER = "postgres"
WAL_SEGMENT_BYTES = 16 * 1024 * 1024
# Settings every cluster made here shares: a replica can stream and serve reads,
# WAL is archived when a directory is given, statement counts are kept.
BASE_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "wal_keep_size": "'256MB'",
    "max_connections": "200",
    "shared_buffers": "'64MB'",
    "shared_preload_libraries": "'pg_stat_statements'",
    "track_commit_timestamp": "on",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def _bindir() -> Path:
    configured = os.environ.get("PG_BINDIR")
    if configured:
        return Path(configured)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)  # noqa: S603
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not versions:
        raise RuntimeError("no PostgreSQL binaries: set PG_BINDIR")
    return versions[-1].parent


def _as_service_user() -> list[str]:
    """The prefix that runs a command as the server's user (nothing unless we are root)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", SERVICE_USER, "--"]


def _own(path: Path) -> None:
    """Gives ``path`` (made by root) to the server's user."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SERVICE_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(command: Sequence[str], *, check: bool = True, timeout: float = 300) -> str:
    completed = subprocess.run(  # noqa: S603 - the PostgreSQL binaries, arguments from here
        [*_as_service_user(), *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd="/",
    )
    if check and completed.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(command)} exited {completed.returncode}:\n"
            f"{completed.stdout[-3000:]}{completed.stderr[-3000:]}"
        )
    return completed.stdout


def _directory_for_server(path: Path, *, mode: int = 0o700) -> Path:
    """An empty (or existing) directory the server's user owns, its parents traversable."""
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    _own(path)
    return path


def _port_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] == "Z"
    return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    """One PostgreSQL cluster: its data directory and the port it listens on."""

    data: Path
    port: int

    @property
    def log_path(self) -> Path:
        return self.data / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres:postgres@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    # -- life cycle -------------------------------------------------------------

    def start(self, *, timeout: float = 60) -> None:
        bindir = _bindir()
        _run(
            [
                str(bindir / "pg_ctl"),
                "start",
                "-D",
                str(self.data),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                f"-p {self.port} -k {self.data}",
            ],
            timeout=timeout + 10,
        )

    def stop(self, *, mode: str = "fast") -> None:
        """``fast`` (clean) or ``immediate`` (as a crash: recovery runs at the next start)."""
        if not self.running():
            return
        _run([str(_bindir() / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w"])

    def kill(self) -> None:
        """SIGKILL the postmaster, as a lost machine would; its children exit on their own."""
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            deadline = time.monotonic() + 20
            while _port_answers(self.port) and time.monotonic() < deadline:
                time.sleep(0.05)

    def postmaster_pid(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
            if _zombie(pid):  # killed, not yet reaped (a container's init may never reap it)
                return None
            return pid
        return None

    def running(self) -> bool:
        return self.postmaster_pid() is not None

    def promote(self, *, timeout: float = 60) -> None:
        _run(
            [
                str(_bindir() / "pg_ctl"),
                "promote",
                "-D",
                str(self.data),
                "-w",
                "-t",
                str(int(timeout)),
            ],
            timeout=timeout + 10,
        )

    def sql(self, statement: str, *, database: str = "postgres") -> str:
        """One statement through psql, its rows as unaligned text."""
        return _run(
            [
                str(_bindir() / "psql"),
                "-X",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                statement,
            ]
        ).strip()

    def in_recovery(self) -> bool:
        return self.sql("SELECT pg_is_in_recovery()") == "t"

    def remove(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.data, ignore_errors=True)


def _settings_write(data: Path, settings: dict[str, str]) -> None:
    with (data / "postgresql.auto.conf").open("a") as conf:
        for name, value in settings.items():
            conf.write(f"{name} = {value}\n")


def archive_command(archive: Path) -> str:
    """Copies a finished WAL segment into ``archive`` under a temporary name, then renames it:
    a segment is either absent or whole, and one already there is never overwritten."""
    target = shlex.quote(str(archive))
    return f"'test ! -f {target}/%f && cp %p {target}/%f.part && mv {target}/%f.part {target}/%f'"


def primary_create(
    data: Path,
    *,
    port: int,
    archive: Path | None = None,
    settings: dict[str, str] | None = None,
    start: bool = True,
) -> Cluster:
    """``initdb`` a new cluster in ``data`` (made if missing, must be empty) and start it.

    With ``archive`` every finished WAL segment is copied there (``archive_mode``,
    ``archive_timeout`` 60 s bounds how old the newest archived change can be).
    """
    bindir = _bindir()
    data = _directory_for_server(data)
    if any(data.iterdir()):
        raise RuntimeError(f"{data} is not empty")
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        ]
    )
    chosen = {**BASE_SETTINGS, "port": str(port)}
    if archive is not None:
        archive = _directory_for_server(archive, mode=0o750)
        chosen.update(
            archive_mode="on",
            archive_command=archive_command(archive),
            archive_timeout="60",
        )
    chosen.update(settings or {})
    _settings_write(data, chosen)
    cluster = Cluster(data=data, port=port)
    if start:
        cluster.start()
        cluster.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return cluster


def replica_create(
    data: Path,
    *,
    port: int,
    primary_port: int,
    primary_host: str = "127.0.0.1",
    slot: str | None = None,
    application_name: str = "replica",
    start: bool = True,
) -> Cluster:
    """A streaming replica of the primary at ``primary_host:primary_port``.

    ``pg_basebackup -R`` copies the primary and writes ``standby.signal`` and
    ``primary_conninfo``; the copy listens on ``port``. With ``slot`` the
    primary keeps a replication slot of that name, so it holds WAL the replica
    has not received yet (a replica that is away long fills the primary's disk:
    watch ``pg_replication_slots``). ``application_name`` is the name the
    primary sees, the one ``synchronous_standby_names`` lists.
    """
    bindir = _bindir()
    data = _directory_for_server(data)
    if any(data.iterdir()):
        raise RuntimeError(f"{data} is not empty")
    command = [
        str(bindir / "pg_basebackup"),
        "-h",
        primary_host,
        "-p",
        str(primary_port),
        "-U",
        "postgres",
        "-D",
        str(data),
        "-R",
        "-X",
        "stream",
        "-c",
        "fast",
        "-d",
        f"host={primary_host} port={primary_port} user=postgres "
        f"application_name={application_name}",
    ]
    if slot:
        command += ["-S", slot, "-C"]
    _run(command)
    # The copy carries the primary's archive settings; a replica archives nothing
    # (archive_mode on, not always) until it is promoted, when it takes over.
    _settings_write(data, {"port": str(port)})
    cluster = Cluster(data=data, port=port)
    if start:
        cluster.start()
    return cluster


def replica_wait_streaming(primary: Cluster, *, timeout: float = 30) -> bool:
    """True once the primary sees at least one replica streaming."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(RuntimeError):
            if (
                primary.sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                != "0"
            ):
                return True
        time.sleep(0.1)
    return False


# -- backups ------------------------------------------------------------------------


def _segment_name(timeline: int, lsn: str) -> str:
    high, low = (int(part, 16) for part in lsn.split("/"))
    position = (high << 32) | low
    return f"{timeline:08X}{position >> 32:08X}{(position & 0xFFFFFFFF) // WAL_SEGMENT_BYTES:08X}"


@dataclass(frozen=True)
class BaseBackup:
    path: Path
    taken_at: dt.datetime
    start_segment: str  # the oldest archived WAL segment a restore from it needs


def base_backups(backups: Path) -> list[BaseBackup]:
    """The base backups under ``backups/base``, oldest first."""
    found = []
    for entry in sorted((backups / "base").glob("*/backup.json")):
        meta = json.loads(entry.read_text())
        found.append(
            BaseBackup(
                path=entry.parent,
                taken_at=dt.datetime.fromisoformat(meta["taken_at"]),
                start_segment=meta["start_segment"],
            )
        )
    return found


def backup_take(
    backups: Path,
    *,
    port: int,
    host: str = "127.0.0.1",
    databases: Sequence[str] = (),
    keep: int = 7,
    wal: Path | None = None,
) -> BaseBackup:
    """A base backup (``pg_basebackup``, tar, compressed) and ``pg_dump -Fc`` of ``databases``.

    The base backup plus the WAL the primary archives into ``backups/wal``
    restores to any moment after it (:func:`restore`); the logical dumps are a
    second layer that survives a broken archive or a cluster-wide mistake and
    loads into any PostgreSQL version. Keeps the newest ``keep`` base backups
    and dumps and the WAL they need (:func:`backups_prune`).
    """
    bindir = _bindir()
    backups = _directory_for_server(backups, mode=0o750)
    _directory_for_server(backups / "base", mode=0o750)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = _directory_for_server(backups / "base" / stamp, mode=0o750)
    _run(
        [
            str(bindir / "pg_basebackup"),
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            "postgres",
            "-D",
            str(target),
            "-Ft",
            "-z",
            "-X",
            "stream",
            "-c",
            "fast",
        ]
    )
    manifest = json.loads((target / "backup_manifest").read_text())
    first = manifest["WAL-Ranges"][0]
    start_segment = _segment_name(int(first["Timeline"]), first["Start-LSN"])
    taken = BaseBackup(path=target, taken_at=dt.datetime.now(dt.UTC), start_segment=start_segment)
    (target / "backup.json").write_text(
        json.dumps({"taken_at": taken.taken_at.isoformat(), "start_segment": start_segment})
    )
    if databases:
        dumps = _directory_for_server(backups / "dumps", mode=0o750)
        for database in databases:
            _run(
                [
                    str(bindir / "pg_dump"),
                    "-h",
                    host,
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-Fc",
                    "-f",
                    str(dumps / f"{database}-{stamp}.dump"),
                    database,
                ]
            )
    backups_prune(backups, keep=keep, wal=wal)
    return taken


def backups_prune(backups: Path, *, keep: int, wal: Path | None = None) -> list[Path]:
    """Removes all but the newest ``keep`` base backups and dumps, and archived WAL older
    than the oldest kept base backup needs; the removed paths."""
    removed: list[Path] = []
    kept = base_backups(backups)
    for old in kept[: max(0, len(kept) - keep)]:
        shutil.rmtree(old.path)
        removed.append(old.path)
    kept = kept[max(0, len(kept) - keep) :]
    wal = wal or backups / "wal"
    if kept and wal.is_dir():
        oldest_needed = kept[0].start_segment
        for segment in wal.iterdir():
            name = segment.name
            # Segments and their .backup history files sort by name, timeline first;
            # timeline history files (*.history) are always kept.
            if re.fullmatch(r"[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?", name) and (
                name[:24] < oldest_needed
            ):
                segment.unlink()
                removed.append(segment)
    dumps = backups / "dumps"
    if dumps.is_dir():
        by_database: dict[str, list[Path]] = {}
        for dump in sorted(dumps.glob("*.dump")):
            by_database.setdefault(dump.name.rsplit("-", 1)[0], []).append(dump)
        for files in by_database.values():
            for old_dump in files[: max(0, len(files) - keep)]:
                old_dump.unlink()
                removed.append(old_dump)
    return removed


def restore(
    backups: Path,
    data: Path,
    *,
    port: int,
    target_time: dt.datetime | None = None,
    timeout: float = 300,
    wal: Path | None = None,
) -> Cluster:
    """A new cluster in ``data`` from the newest base backup taken before ``target_time``,
    replayed from the WAL archive up to ``target_time`` (or to the end of the archive),
    then promoted so it accepts writes. It never archives into the same directory."""
    candidates = [
        backup
        for backup in base_backups(backups)
        if target_time is None or backup.taken_at <= target_time
    ]
    if not candidates:
        raise RuntimeError(f"no base backup in {backups} older than {target_time}")
    chosen = candidates[-1]
    data = _directory_for_server(data)
    if any(data.iterdir()):
        raise RuntimeError(f"{data} is not empty")
    with tarfile.open(chosen.path / "base.tar.gz") as archive:
        archive.extractall(data, filter="data")
    if os.geteuid() == 0:
        _run(["true"])  # the service user exists
        entry = pwd.getpwnam(SERVICE_USER)
        for root, directories, files in os.walk(data):
            for name in [*directories, *files]:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    wal = wal or backups / "wal"
    recovery = {
        "port": str(port),
        "restore_command": f"'cp {shlex.quote(str(wal))}/%f %p'",
        "archive_mode": "off",
        "recovery_target_action": "'promote'",
        "recovery_target_timeline": "'latest'",
    }
    if target_time is not None:
        recovery["recovery_target_time"] = f"'{target_time.isoformat()}'"
        recovery["recovery_target_inclusive"] = "on"
    _settings_write(data, recovery)
    signal_file = data / "recovery.signal"
    signal_file.touch()
    _own(signal_file)
    # standby.signal from a backup of a replica would keep it a standby for ever.
    (data / "standby.signal").unlink(missing_ok=True)
    cluster = Cluster(data=data, port=port)
    try:
        cluster.start(timeout=timeout)
    except RuntimeError:
        _recovery_failed(cluster)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not cluster.in_recovery():
                return cluster
        except RuntimeError:
            if not cluster.running():
                _recovery_failed(cluster)
        if time.monotonic() > deadline:
            raise RuntimeError(f"recovery did not finish in {timeout} s: see {cluster.log_path}")
        time.sleep(0.1)


def _recovery_failed(cluster: Cluster) -> NoReturn:
    log = cluster.log_path.read_text(errors="replace").strip().splitlines()
    hint = ""
    if any("before configured recovery target was reached" in line for line in log):
        hint = (
            " The target is later than the newest archived commit: restore to the end of "
            "the archive (no target time) or to an earlier moment."
        )
    raise RuntimeError(f"recovery stopped.{hint} {cluster.log_path}:\n" + "\n".join(log[-5:]))


def failover(old_primary: Cluster | None, replica: Cluster) -> None:
    """Fences the old primary (stopped at once if it still runs, so two primaries never
    take writes) and promotes ``replica``; returns once it accepts writes."""
    if old_primary is not None and old_primary.running():
        old_primary.stop(mode="immediate")
    replica.promote()
    deadline = time.monotonic() + 60
    while replica.in_recovery():
        if time.monotonic() > deadline:
            raise RuntimeError("the promoted replica is still in recovery")
        time.sleep(0.05)


# -- command line -----------------------------------------------------------------------


def _port_of(data: Path) -> int:
    for line in reversed((data / "postgresql.auto.conf").read_text().splitlines()):
        if line.startswith("port"):
            return int(line.split("=", 1)[1].strip().strip("'"))
    raise RuntimeError(f"no port recorded in {data}/postgresql.auto.conf")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    primary = commands.add_parser("primary", help="initdb and start a primary")
    primary.add_argument("--data", type=Path, required=True)
    primary.add_argument("--port", type=int, required=True)
    primary.add_argument("--archive", type=Path)
    replica = commands.add_parser(
        "replica", help="pg_basebackup -R a streaming replica and start it"
    )
    replica.add_argument("--data", type=Path, required=True)
    replica.add_argument("--port", type=int, required=True)
    replica.add_argument("--primary-port", type=int, required=True)
    replica.add_argument("--primary-host", default="127.0.0.1")
    replica.add_argument("--slot")
    for name in ("start", "stop", "kill", "promote", "status"):
        command = commands.add_parser(name)
        command.add_argument("--data", type=Path, required=True)
    backup = commands.add_parser("backup", help="base backup + logical dumps, then prune")
    backup.add_argument("--port", type=int, required=True)
    backup.add_argument("--host", default="127.0.0.1")
    backup.add_argument("--backups", type=Path, required=True)
    backup.add_argument("--database", action="append", default=[])
    backup.add_argument("--keep", type=int, default=7)
    backup.add_argument("--wal", type=Path, help="the WAL archive (default BACKUPS/wal)")
    restore_command = commands.add_parser("restore", help="restore into a new cluster (PITR)")
    restore_command.add_argument("--backups", type=Path, required=True)
    restore_command.add_argument("--data", type=Path, required=True)
    restore_command.add_argument("--port", type=int, required=True)
    restore_command.add_argument("--target-time", type=dt.datetime.fromisoformat)
    restore_command.add_argument("--wal", type=Path, help="the WAL archive (default BACKUPS/wal)")
    failover_command = commands.add_parser(
        "failover", help="fence the old primary, promote the replica"
    )
    failover_command.add_argument("--old-primary", type=Path)
    failover_command.add_argument("--replica", type=Path, required=True)
    arguments = parser.parse_args(argv)

    if arguments.command == "primary":
        cluster = primary_create(arguments.data, port=arguments.port, archive=arguments.archive)
        print(cluster.url())
    elif arguments.command == "replica":
        cluster = replica_create(
            arguments.data,
            port=arguments.port,
            primary_port=arguments.primary_port,
            primary_host=arguments.primary_host,
            slot=arguments.slot,
        )
        print(cluster.url())
    elif arguments.command in {"start", "stop", "kill", "promote", "status"}:
        cluster = Cluster(data=arguments.data.resolve(), port=_port_of(arguments.data))
        if arguments.command == "status":
            state = "stopped"
            if cluster.running():
                state = "replica" if cluster.in_recovery() else "primary"
            print(f"{cluster.data} port {cluster.port}: {state}")
        else:
            getattr(cluster, arguments.command)()
    elif arguments.command == "backup":
        taken = backup_take(
            arguments.backups,
            port=arguments.port,
            host=arguments.host,
            databases=arguments.database,
            keep=arguments.keep,
            wal=arguments.wal,
        )
        print(f"base backup {taken.path} (needs WAL from {taken.start_segment})")
    elif arguments.command == "restore":
        target = arguments.target_time
        if target is not None and target.tzinfo is None:
            target = target.replace(tzinfo=dt.UTC)
        started = time.monotonic()
        cluster = restore(
            arguments.backups,
            arguments.data,
            port=arguments.port,
            target_time=target,
            wal=arguments.wal,
        )
        print(
            f"restored into {cluster.data}, port {cluster.port}, "
            f"in {time.monotonic() - started:.1f} s"
        )
    elif arguments.command == "failover":
        old = (
            Cluster(data=arguments.old_primary.resolve(), port=_port_of(arguments.old_primary))
            if arguments.old_primary
            else None
        )
        promoted = Cluster(data=arguments.replica.resolve(), port=_port_of(arguments.replica))
        started = time.monotonic()
        failover(old, promoted)
        print(
            f"{promoted.data} (port {promoted.port}) is the primary, "
            f"in {time.monotonic() - started:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
