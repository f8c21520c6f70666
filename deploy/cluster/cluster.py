"""Emporium's production topology on loopback: `make cluster`, `make cluster-status`,
`make cluster-stop` (docs/load_balancing.md, "The whole topology on one machine").

    python deploy/cluster/cluster.py start|status|stop
    python deploy/cluster/cluster.py kill NAME [--signal KILL]   # one process, for fault drills
    python deploy/cluster/cluster.py restart NAME                # start it again, same command

Everything lives under CLUSTER_DIR (default var/cluster/): the PostgreSQL primary
and its streaming replica (initdb, pg_basebackup -R), Redis, the generated CA and
certificate, secrets, nginx's configuration rendered from deploy/nginx/, logs,
metric files and state.json, which lists every process with its pid, port and
health check. `stop` ends every process the state names, empties the work
queues and removes the directory, so nothing is left behind. RabbitMQ is the
machine's broker (CLUSTER_BROKER_URL, else BROKER_URL), on a virtual host of
its own; `start` empties its work queues too, before the worker starts, in case
an earlier cluster did not stop cleanly.

Settings, all from the environment:

    CLUSTER_DIR            state directory                        var/cluster
    CLUSTER_APP_SERVERS    granian app servers behind nginx       2
    CLUSTER_WS_SERVERS     uvicorn WebSocket servers              1
    CLUSTER_WEB_WORKERS    granian workers per app server         1
    CLUSTER_WEB_THREADS    granian blocking threads per worker    1
    CLUSTER_PORT_BASE      first port (HTTPS is base+443); 0 = any free ports   18000
    CLUSTER_REPLICA        1 = a streaming replica                1
    CLUSTER_PGBOUNCER      1 = PgBouncer in transaction mode in front of the primary   0
    CLUSTER_FAULT_PROXY    1 = the app reaches PostgreSQL, Redis and RabbitMQ
                           through deploy/cluster/faultproxy.py    0
    CLUSTER_PROMETHEUS     1 = Prometheus scraping every process  1 where installed
    CLUSTER_SEED_PRODUCTS  demo catalog size                      2000
    CLUSTER_BUYERS         buyers with a filled cart and a token in buyers.txt   0
    CLUSTER_RATE           nginx's per-client rate                50r/s
    CLUSTER_BURST          nginx's per-client burst               100
    CLUSTER_CONNECTIONS    nginx's requests in flight per client  64
    CLUSTER_KEEP_LOGS      `stop` copies log/ there before removing everything

App settings in the caller's environment whose names start with THROTTLE_,
CATALOG_CACHE_, DATABASE_POOL_, LOG_LEVEL or ACCESS_LOG are handed to every app
process (a benchmark lifts the write throttle this way).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
PASS_THROUGH_PREFIXES = ("THROTTLE_", "CATALOG_CACHE_", "DATABASE_POOL_", "LOG_LEVEL", "ACCESS_LOG")
KEEP_FROM_CALLER = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


def setting(name: str, default: str) -> str:
    return os.environ.get(name, "") or default


def flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "")
    return default if value == "" else value.lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def logs(self) -> Path:
        return self.root / "log"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def ca(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def nginx(self) -> Path:
        return self.root / "nginx"


def layout() -> Layout:
    return Layout(Path(setting("CLUSTER_DIR", str(ROOT / "var" / "cluster"))).resolve())


# -- state ------------------------------------------------------------------------------


def state_read(where: Layout) -> dict[str, Any]:
    if not where.state.exists():
        return {}
    loaded: dict[str, Any] = json.loads(where.state.read_text())
    return loaded


def state_write(where: Layout, state: dict[str, Any]) -> None:
    temporary = where.state.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2))
    temporary.chmod(0o600)  # it holds the processes' environments, secrets included
    temporary.replace(where.state)


# -- ports ------------------------------------------------------------------------------


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def any_free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in taken:
            return port


def ports_allocate(names: list[str]) -> dict[str, int]:
    """Fixed offsets from CLUSTER_PORT_BASE (HTTPS at base+443), or any free ports with 0."""
    base = int(setting("CLUSTER_PORT_BASE", "18000"))
    ports: dict[str, int] = {}
    if base == 0:
        for name in names:
            ports[name] = any_free_port(set(ports.values()))
        return ports
    offset = 10
    for name in names:
        if name == "https":
            ports[name] = base + 443
        elif name == "http":
            ports[name] = base + 80
        else:
            ports[name] = base + offset
            offset += 1
    busy = [f"{name} {port}" for name, port in ports.items() if not port_free(port)]
    if busy:
        sys.exit(
            "cluster: these ports are taken: " + ", ".join(busy) + " (set CLUSTER_PORT_BASE "
            "to another base, or 0 for any free ports)"
        )
    return ports


# -- secrets and TLS --------------------------------------------------------------------


def token(length: int = 32) -> str:
    return secrets.token_urlsafe(length)


def secrets_generate() -> dict[str, str]:
    from config.settings.jwt_keys import jwt_key_entry

    return {
        "SECRET_KEY": token(64),
        "ENCRYPTION_KEYS": "cluster:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "JWT_PRIVATE_KEYS": jwt_key_entry("cluster"),
        "METRICS_TOKEN": token(),
        "PAYMENT_WEBHOOK_SECRET": token(),
        "PAYMENT_PROVIDER_API_KEY": token(),
        "postgres_password": token(),
        "app_password": token(),
        "replication_password": token(),
        "redis_password": token(),
    }


def tls_generate(where: Layout) -> None:
    """A CA of this cluster's own and a server certificate for localhost and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    where.tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Emporium cluster CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    where.ca.write_bytes(ca.public_bytes(pem))
    (where.tls / "server.pem").write_bytes(server.public_bytes(pem) + ca.public_bytes(pem))
    key_path = where.tls / "server.key"
    key_path.write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    # The CA's key is not kept: nothing else will ever be signed by it.
    where.ca.chmod(0o644)


# -- processes --------------------------------------------------------------------------


def base_environment() -> dict[str, str]:
    kept = {name: os.environ[name] for name in KEEP_FROM_CALLER if name in os.environ}
    passed = {
        name: value for name, value in os.environ.items() if name.startswith(PASS_THROUGH_PREFIXES)
    }
    return {**kept, **passed}


def spawn(
    where: Layout,
    state: dict[str, Any],
    name: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    port: int | None = None,
    health: dict[str, Any] | None = None,
    kind: str = "process",
) -> None:
    """Starts ``argv`` in a session of its own, its output in log/NAME.log, and records it."""
    entry = {
        "name": name,
        "kind": kind,
        "argv": argv,
        "env": env or {},
        "port": port,
        "health": health or {"type": "pid"},
    }
    entry["pid"] = launch(where, entry)
    state["processes"] = [p for p in state.get("processes", []) if p["name"] != name] + [entry]
    state_write(where, state)


def launch(where: Layout, entry: dict[str, Any]) -> int:
    where.logs.mkdir(parents=True, exist_ok=True)
    with (where.logs / f"{entry['name']}.log").open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - the cluster's own commands
            entry["argv"],
            cwd=ROOT,
            env={**base_environment(), **entry["env"]},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child that exited) is not alive.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if status == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def terminate(pid: int, *, timeout: float = 20.0) -> None:
    """SIGTERM to the process group, SIGKILL to whatever is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


# -- PostgreSQL -------------------------------------------------------------------------
#
# The primary and the replica are made by deploy/postgres/pgcluster.py, the functions
# that `make backup`, `make restore` and the failover script use too: initdb with WAL
# archiving, pg_basebackup -R with a replication slot. Their servers trust connections
# from 127.0.0.1 (loopback only); the app's role still has a password of its own.


def pgcluster() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "pgcluster", ROOT / "deploy" / "postgres" / "pgcluster.py"
    )
    if spec is None or spec.loader is None:
        raise ClusterError("deploy/postgres/pgcluster.py is missing")
    module = importlib.util.module_from_spec(spec)
    sys.modules["pgcluster"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def run(argv: list[str], *, env: dict[str, str] | None = None, what: str) -> str:
    done = subprocess.run(  # noqa: S603 - the cluster's own commands
        argv,
        cwd=ROOT,
        env={**base_environment(), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ClusterError(f"{what} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout


class ClusterError(Exception):
    pass


def postgres_record(
    where: Layout, state: dict[str, Any], name: str, data: Path, port: int, role: str
) -> None:
    server = pgcluster().Cluster(data=data, port=port)
    entry = {
        "name": name,
        "kind": "postgres",
        "data": str(data),
        "pid": server.postmaster_pid(),
        "port": port,
        "health": {"type": "postgres", "port": port, "role": role},
    }
    state["processes"] = [p for p in state["processes"] if p["name"] != name] + [entry]
    state_write(where, state)


def postgres_create(where: Layout, state: dict[str, Any], keys: dict[str, str]) -> None:
    tools = pgcluster()
    ports = state["ports"]
    where.postgres.mkdir(mode=0o755)
    primary = tools.primary_create(
        where.postgres / "primary",
        port=ports["postgres"],
        archive=where.postgres / "archive",
        settings={"synchronous_commit": "on", "log_min_duration_statement": "1000"},
    )
    postgres_record(where, state, "postgres", primary.data, primary.port, "primary")
    primary.sql(f"CREATE ROLE emporium LOGIN PASSWORD '{keys['app_password']}'")
    primary.sql("CREATE DATABASE emporium OWNER emporium")
    if flag("CLUSTER_REPLICA", True):
        replica = tools.replica_create(
            where.postgres / "replica",
            port=ports["replica"],
            primary_port=ports["postgres"],
            slot="cluster_replica",
            application_name="replica",
        )
        postgres_record(where, state, "replica", replica.data, replica.port, "replica")


def as_postgres(argv: list[str]) -> list[str]:
    """PgBouncer, like PostgreSQL, runs as `postgres` when the cluster is started by root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def postgres_server(entry: dict[str, Any]) -> Any:
    return pgcluster().Cluster(data=Path(entry["data"]), port=int(entry["port"]))


# -- nginx ------------------------------------------------------------------------------


def replaced(text: str, old: str, new: str, source: str) -> str:
    if old not in text:
        raise ClusterError(f"{source} no longer contains {old!r}; update deploy/cluster/cluster.py")
    return text.replace(old, new)


def nginx_render(where: Layout, state: dict[str, Any]) -> Path:
    """deploy/nginx/emporium.conf and emporium-locations.conf with this cluster's values.

    The same files an operator installs; only what depends on where nginx runs
    changes: listen addresses, certificate, upstream servers, cache and static
    paths, and the per-client rate, burst and requests in flight.
    """
    ports = state["ports"]
    prefix = where.nginx
    for folder in ("cache", "temp", "logs"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    site_source = ROOT / "deploy" / "nginx" / "emporium.conf"
    site = site_source.read_text()
    apps = "\n    ".join(
        f"server 127.0.0.1:{ports[f'app-{index}']} max_fails=3 fail_timeout=10s;"
        for index in range(1, state["app_servers"] + 1)
    )
    sockets = "\n    ".join(
        f"server 127.0.0.1:{ports[f'ws-{index}']} max_fails=0;"
        for index in range(1, state["ws_servers"] + 1)
    )
    https = ports["https"]
    for old, new in (
        ("server 127.0.0.1:8000 max_fails=3 fail_timeout=10s;", apps),
        ("server 127.0.0.1:8001 max_fails=0;", sockets),
        ("/var/cache/nginx/emporium", str(prefix / "cache")),
        ("rate=50r/s", f"rate={setting('CLUSTER_RATE', '50r/s')}"),
        ("    listen [::]:80;\n", ""),
        ("    listen [::]:443 ssl http2;\n", ""),
        ("listen 80;", f"listen 127.0.0.1:{ports['http']};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;"),
        ("server_name shop.example.com;", "server_name localhost 127.0.0.1;"),
        ("return 301 https://$host$request_uri;", f"return 301 https://$host:{https}$request_uri;"),
        ("/etc/letsencrypt/live/shop.example.com/fullchain.pem", str(where.tls / "server.pem")),
        ("/etc/letsencrypt/live/shop.example.com/privkey.pem", str(where.tls / "server.key")),
        (
            "include snippets/emporium-locations.conf;",
            f"include {prefix / 'emporium-locations.conf'};",
        ),
    ):
        site = replaced(site, old, new, str(site_source))
    locations_source = ROOT / "deploy" / "nginx" / "emporium-locations.conf"
    locations = locations_source.read_text()
    for old, new in (
        ("burst=100 nodelay", f"burst={setting('CLUSTER_BURST', '100')} nodelay"),
        (
            "limit_conn emporium_connections 64;",
            f"limit_conn emporium_connections {setting('CLUSTER_CONNECTIONS', '64')};",
        ),
        ("alias /srv/emporium/static/;", f"alias {where.root / 'static'}/;"),
    ):
        locations = replaced(locations, old, new, str(locations_source))
    (prefix / "emporium.conf").write_text(site)
    (prefix / "emporium-locations.conf").write_text(locations)
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    main = f"""# Rendered by deploy/cluster/cluster.py from deploy/nginx/; do not edit.
{user}worker_processes {setting("CLUSTER_NGINX_WORKERS", "auto")};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include {prefix}/emporium.conf;
}}
"""
    conf = prefix / "nginx.conf"
    conf.write_text(main)
    if os.geteuid() == 0:
        # The workers run as nobody: they write the cache, temporary files and logs.
        account = pwd.getpwnam("nobody")
        for path in (prefix / "cache", prefix / "temp", prefix / "logs"):
            os.chown(path, account.pw_uid, account.pw_gid)
    return conf


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not found:
        sys.exit("cluster: nginx is not installed (apt-get install nginx)")
    return found


# -- Prometheus -------------------------------------------------------------------------


def prometheus_render(where: Layout, state: dict[str, Any], keys: dict[str, str]) -> Path:
    """deploy/prometheus/prometheus.yml with file_sd targets for this cluster's processes."""
    ports = state["ports"]
    directory = where.root / "prometheus"
    (directory / "targets").mkdir(parents=True, exist_ok=True)
    source = ROOT / "deploy" / "prometheus"
    text = (source / "prometheus.yml").read_text()
    token_file = directory / "metrics-token"
    token_file.write_text(keys["METRICS_TOKEN"] + "\n")
    token_file.chmod(0o600)
    text = replaced(
        text, "/etc/prometheus/emporium-metrics-token", str(token_file), "prometheus.yml"
    )
    text = text.replace("scrape_interval: 15s", "scrape_interval: 5s")
    (directory / "prometheus.yml").write_text(text)
    shutil.copy(source / "alerts.yml", directory / "alerts.yml")
    jobs = {
        "emporium-web": [
            f"127.0.0.1:{ports[f'app-{i}']}" for i in range(1, state["app_servers"] + 1)
        ],
        "emporium-ws": [f"127.0.0.1:{ports[f'ws-{i}']}" for i in range(1, state["ws_servers"] + 1)],
        "emporium-worker": [f"127.0.0.1:{ports['worker-metrics']}"],
        "emporium-beat": [f"127.0.0.1:{ports['beat-metrics']}"],
        "emporium-relay": [f"127.0.0.1:{ports['relay-metrics']}"],
        "emporium-publisher": [f"127.0.0.1:{ports['publisher-metrics']}"],
    }
    for job, targets in jobs.items():
        (directory / "targets" / f"{job}.yml").write_text(
            f"# {job} of make cluster\n- targets: {json.dumps(targets)}\n"
        )
    return directory / "prometheus.yml"


# -- start ------------------------------------------------------------------------------


def broker_url() -> str:
    url = setting("CLUSTER_BROKER_URL", os.environ.get("BROKER_URL", ""))
    if not url:
        sys.exit(
            "cluster: name the RabbitMQ virtual host the cluster may use: "
            "CLUSTER_BROKER_URL=amqp://user:password@127.0.0.1:5672/vhost (or BROKER_URL)"
        )
    return url


def with_netloc(url: str, host: str, port: int) -> str:
    parts = urllib.parse.urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def start() -> None:
    where = layout()
    if where.state.exists():
        sys.exit(f"cluster: already started ({where.state}); `make cluster-stop` first")
    if where.root.exists():
        shutil.rmtree(where.root)
    where.root.mkdir(parents=True)
    where.root.chmod(0o755)  # nginx's workers and PostgreSQL's user go through it
    app_servers = int(setting("CLUSTER_APP_SERVERS", "2"))
    ws_servers = int(setting("CLUSTER_WS_SERVERS", "1"))
    replica = flag("CLUSTER_REPLICA", True)
    pgbouncer = flag("CLUSTER_PGBOUNCER", False)
    fault_proxy = flag("CLUSTER_FAULT_PROXY", False)
    prometheus = flag("CLUSTER_PROMETHEUS", shutil.which("prometheus") is not None)
    names = ["https", "http", "postgres", "redis", "provider"]
    names += [f"app-{i}" for i in range(1, app_servers + 1)]
    names += [f"ws-{i}" for i in range(1, ws_servers + 1)]
    names += ["worker-metrics", "beat-metrics", "relay-metrics", "publisher-metrics"]
    names += ["replica"] if replica else []
    names += ["pgbouncer"] if pgbouncer else []
    names += ["prometheus"] if prometheus else []
    if fault_proxy:
        names += ["proxy-control", "proxy-postgres", "proxy-redis", "proxy-broker"]
    ports = ports_allocate(names)
    keys = secrets_generate()
    secrets_path = where.root / "secrets.json"
    secrets_path.write_text(json.dumps(keys, indent=2))
    secrets_path.chmod(0o600)
    state: dict[str, Any] = {
        "root": str(where.root),
        "started": time.time(),
        "ports": ports,
        "app_servers": app_servers,
        "ws_servers": ws_servers,
        "processes": [],
    }
    state_write(where, state)
    try:
        started = time.monotonic()
        start_all(
            where, state, keys, pgbouncer=pgbouncer, fault_proxy=fault_proxy, prometheus=prometheus
        )
        state["ready_in_seconds"] = round(time.monotonic() - started, 1)
        state_write(where, state)
    except (Exception, KeyboardInterrupt) as error:  # whatever failed, nothing is left behind
        print(f"cluster: {error}", file=sys.stderr)
        print("cluster: stopping what was started; logs were in", where.logs, file=sys.stderr)
        for log in sorted(where.logs.glob("*.log")) if where.logs.exists() else []:
            tail = log.read_text(errors="replace")[-1500:]
            if tail.strip():
                print(f"--- {log.name}\n{tail}", file=sys.stderr)
        stop()
        sys.exit(1)
    print_urls(state)
    print()
    status_print(state)


def start_all(
    where: Layout,
    state: dict[str, Any],
    keys: dict[str, str],
    *,
    pgbouncer: bool,
    fault_proxy: bool,
    prometheus: bool,
) -> None:
    ports = state["ports"]
    step("certificates")
    tls_generate(where)
    step("PostgreSQL primary and streaming replica")
    postgres_create(where, state, keys)

    step("Redis")
    redis_dir = where.root / "redis"
    redis_dir.mkdir()
    redis_conf = redis_dir / "redis.conf"
    redis_conf.write_text(
        f"port {ports['redis']}\nbind 127.0.0.1\nrequirepass {keys['redis_password']}\n"
        f'save ""\nappendonly no\ndir {redis_dir}\nloglevel warning\n'
    )
    redis_conf.chmod(0o600)
    redis_server = shutil.which("redis-server") or sys.exit(
        "cluster: redis-server is not installed"
    )
    spawn(
        where,
        state,
        "redis",
        [redis_server, str(redis_conf)],
        port=ports["redis"],
        health={"type": "redis", "port": ports["redis"]},
        kind="redis",
    )

    database_port = ports["postgres"]
    redis_port = ports["redis"]
    broker = broker_url()
    state["broker"] = broker  # the broker itself, never the fault proxy: purges go there
    broker_parts = urllib.parse.urlsplit(broker)
    broker_target = (broker_parts.hostname or "127.0.0.1", broker_parts.port or 5672)
    if fault_proxy:
        step("fault proxy")
        routes = [
            f"postgres:{ports['proxy-postgres']}:127.0.0.1:{ports['postgres']}",
            f"redis:{ports['proxy-redis']}:127.0.0.1:{ports['redis']}",
            f"broker:{ports['proxy-broker']}:{broker_target[0]}:{broker_target[1]}",
        ]
        spawn(
            where,
            state,
            "faultproxy",
            [
                PYTHON,
                str(ROOT / "deploy" / "cluster" / "faultproxy.py"),
                "--control",
                str(ports["proxy-control"]),
                *[argument for route in routes for argument in ("--route", route)],
            ],
            port=ports["proxy-control"],
            health={"type": "http", "url": f"http://127.0.0.1:{ports['proxy-control']}/"},
            kind="faultproxy",
        )
        wait_for(lambda: port_open(ports["proxy-control"]), 15, "the fault proxy")
        database_port, redis_port = ports["proxy-postgres"], ports["proxy-redis"]
        broker = with_netloc(broker, "127.0.0.1", ports["proxy-broker"])
    if pgbouncer:
        step("PgBouncer")
        database_port = pgbouncer_start(where, state, keys, database_port)

    https = f"https://localhost:{ports['https']}"
    database = f"postgres://emporium:{keys['app_password']}@127.0.0.1:{database_port}/emporium"
    app_env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        **{name: value for name, value in keys.items() if name.isupper()},
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": https,
        "TRUSTED_PROXY_COUNT": "1",
        # Browsers keep HSTS per host name; localhost must not inherit a year of it.
        "SECURE_HSTS_SECONDS": "0",
        "DATABASE_URL": database,
        "REDIS_URL": f"redis://:{keys['redis_password']}@127.0.0.1:{redis_port}/0",
        "BROKER_URL": broker,
        "PAYMENT_PROVIDER_URL": f"http://127.0.0.1:{ports['provider']}",
        "PAYMENT_CALLBACK_URL": f"{https}/api/payments/webhook/",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "SECRETS_PATH": str(where.root / "app-secrets.json"),
        "SQLITE_PATH": str(where.root / "unused.sqlite3"),
    }
    if pgbouncer:
        # PgBouncer before 1.21 cannot keep prepared statements across transactions
        # (docs/adr/0020-*.md): the hot reads go through Django's cursor then.
        app_env["DATABASE_PREPARED_STATEMENTS"] = "false"
    if "replica" in ports:
        app_env["DATABASE_REPLICA_URLS"] = (
            f"postgres://emporium:{keys['app_password']}@127.0.0.1:{ports['replica']}/emporium"
        )
    state["app_env"] = app_env
    state["https"] = https
    state["ca"] = str(where.ca)
    state_write(where, state)

    step("migrations, demo catalog, static files")
    run([PYTHON, "manage.py", "migrate", "--no-input", "-v0"], env=app_env, what="migrate")
    products = setting("CLUSTER_SEED_PRODUCTS", "2000")
    run(
        [PYTHON, "manage.py", "seed_demo", "--products", products, "--no-progress"],
        env=app_env,
        what="seed_demo",
    )
    buyers = int(setting("CLUSTER_BUYERS", "0"))
    if buyers:
        run(
            [
                PYTHON,
                "-m",
                "bench.seed_checkout",
                "--buyers",
                str(buyers),
                "--products",
                "200",
                "--tokens",
                str(where.root / "buyers.txt"),
                "--initial",
                str(where.root / "buyers-stock.json"),
            ],
            env=app_env,
            what="buyers",
        )
    static = where.root / "static"
    run(
        [
            PYTHON,
            "-c",
            "import sys, django; django.setup(); from django.conf import settings; "
            "settings.STATIC_ROOT = sys.argv[1]; from django.core.management import call_command; "
            "call_command('collectstatic', '--no-input', '-v0')",
            str(static),
        ],
        env=app_env,
        what="collectstatic",
    )

    step("payment provider simulator")
    spawn(
        where,
        state,
        "provider",
        [PYTHON, "-m", "simulators.payment_provider", "--port", str(ports["provider"])],
        env={**app_env, "SSL_CERT_FILE": str(where.ca)},
        port=ports["provider"],
        health={"type": "http", "url": f"http://127.0.0.1:{ports['provider']}/healthz"},
        kind="provider",
    )

    step(f"{state['app_servers']} app servers, {state['ws_servers']} WebSocket servers")
    metrics = where.root / "metrics"
    workers = setting("CLUSTER_WEB_WORKERS", "1")
    for index in range(1, state["app_servers"] + 1):
        name = f"app-{index}"
        spawn(
            where,
            state,
            name,
            [
                PYTHON,
                "-m",
                "emporium.core.servers",
                "granian",
                "--interface",
                "wsgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[name]),
                "--workers",
                workers,
                "--blocking-threads",
                setting("CLUSTER_WEB_THREADS", "1"),
                "config.wsgi:application",
            ],
            env={**app_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics / name)},
            port=ports[name],
            health={"type": "http", "url": f"http://127.0.0.1:{ports[name]}/readyz"},
            kind="app",
        )
    for index in range(1, state["ws_servers"] + 1):
        name = f"ws-{index}"
        spawn(
            where,
            state,
            name,
            [
                PYTHON,
                "-m",
                "emporium.core.servers",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[name]),
                "--workers",
                "1",
            ],
            env={**app_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics / name)},
            port=ports[name],
            health={"type": "http", "url": f"http://127.0.0.1:{ports[name]}/readyz"},
            kind="ws",
        )

    step("Celery worker and beat, outbox relay, dashboard publisher")
    # Tasks an earlier cluster left on this virtual host name rows of a database
    # that no longer exists: purge them before a worker can take one.
    queues_purge(app_env, state["broker"])
    background = {
        "worker": [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            # Every queue of config/celery.py's task_queues unless CLUSTER_WORKER_QUEUES names some.
            *(
                ["-Q", os.environ["CLUSTER_WORKER_QUEUES"]]
                if os.environ.get("CLUSTER_WORKER_QUEUES")
                else []
            ),
            # A node name of this cluster's own: two workers named alike on one virtual
            # host (another cluster's, a `make worker`) fight over the same pidbox queue.
            "--hostname",
            f"cluster-{secrets.token_hex(3)}@%h",
            "--concurrency",
            "2",
            "--loglevel",
            "INFO",
        ],
        "beat": [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(where.root / "beat-schedule"),
        ],
        "relay": [PYTHON, "manage.py", "outbox_relay"],
        "publisher": [PYTHON, "manage.py", "dashboard_publisher"],
    }
    for name, argv in background.items():
        port = ports[f"{name}-metrics"]
        spawn(
            where,
            state,
            name,
            argv,
            env={**app_env, "METRICS_PORT": str(port)},
            port=port,
            health={"type": "http", "url": f"http://127.0.0.1:{port}/metrics"},
            kind=name,
        )

    # nginx's passive checks would count a server that is still starting as failed.
    wait_healthy(state, lambda entry: entry["kind"] in ("app", "ws"))

    step("nginx")
    conf = nginx_render(where, state)
    nginx = nginx_binary()
    run(
        [nginx, "-t", "-q", "-p", str(where.nginx), "-c", str(conf), "-e", "stderr"],
        what="nginx -t",
    )
    spawn(
        where,
        state,
        "nginx",
        [nginx, "-p", str(where.nginx), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
        port=ports["https"],
        health={"type": "https", "url": f"{https}/readyz"},
        kind="nginx",
    )

    if prometheus:
        step("Prometheus")
        config = prometheus_render(where, state, keys)
        spawn(
            where,
            state,
            "prometheus",
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={where.root / 'prometheus' / 'data'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                "--storage.tsdb.retention.time=1d",
            ],
            port=ports["prometheus"],
            health={"type": "http", "url": f"http://127.0.0.1:{ports['prometheus']}/-/ready"},
            kind="prometheus",
        )

    step("waiting for every process to be healthy")
    wait_healthy(state, lambda entry: True)


def wait_healthy(state: dict[str, Any], which: Any) -> None:
    deadline = time.monotonic() + float(setting("CLUSTER_START_TIMEOUT", "120"))
    while True:
        chosen = [entry for entry in state["processes"] if which(entry)]
        sick = [
            f"{entry['name']}: {detail}"
            for entry in chosen
            for healthy, detail in [health_check(entry, state)]
            if not healthy
        ]
        if not sick:
            return
        dead = [entry["name"] for entry in chosen if not alive(entry.get("pid"))]
        if dead or time.monotonic() > deadline:
            raise ClusterError("not healthy: " + "; ".join(sick))
        time.sleep(0.5)


def pgbouncer_start(where: Layout, state: dict[str, Any], keys: dict[str, str], target: int) -> int:
    """PgBouncer in transaction mode, as many server connections as the pools ask for."""
    ports = state["ports"]
    directory = where.root / "pgbouncer"
    directory.mkdir()
    users = directory / "users.txt"
    users.write_text(f'"emporium" "{keys["app_password"]}"\n')
    users.chmod(0o600)
    conf = directory / "pgbouncer.ini"
    conf.write_text(
        f"""[databases]
emporium = host=127.0.0.1 port={target} dbname=emporium

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {ports["pgbouncer"]}
unix_socket_dir =
auth_type = plain
auth_file = {users}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
reserve_pool_size = 5
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
pidfile =
logfile =
"""
    )
    conf.chmod(0o600)
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if not binary:
        raise ClusterError("pgbouncer is not installed (apt-get install pgbouncer)")
    argv = [binary, str(conf)]
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(directory, account.pw_uid, account.pw_gid)
        for path in (users, conf):
            os.chown(path, account.pw_uid, account.pw_gid)
        argv = as_postgres(argv)
    spawn(
        where,
        state,
        "pgbouncer",
        argv,
        port=ports["pgbouncer"],
        health={"type": "port", "port": ports["pgbouncer"]},
        kind="pgbouncer",
    )
    wait_for(lambda: port_open(ports["pgbouncer"]), 15, "PgBouncer")
    return int(ports["pgbouncer"])


def step(what: str) -> None:
    print(f"== {what}", flush=True)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} did not start")
        time.sleep(0.1)


# -- health -----------------------------------------------------------------------------


def health_check(entry: dict[str, Any], state: dict[str, Any]) -> tuple[bool, str]:
    """(healthy, detail) of one process: alive, and answering its own check."""
    if not alive(entry.get("pid")):
        return False, "not running"
    check = entry["health"]
    kind = check["type"]
    try:
        if kind == "postgres":
            return postgres_health(check, state)
        if kind == "redis":
            import redis

            keys = json.loads((Path(state["root"]) / "secrets.json").read_text())
            client = redis.Redis(
                port=check["port"], password=keys["redis_password"], socket_timeout=2
            )
            return bool(client.ping()), "PONG"
        if kind == "port":
            return port_open(check["port"]), "listening"
        if kind in ("http", "https"):
            context = ssl.create_default_context(cafile=state["ca"]) if kind == "https" else None
            request = urllib.request.Request(check["url"], headers={"Host": "localhost"})  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=3, context=context) as answer:  # noqa: S310
                    return True, f"{answer.status} {summary(answer.read())}"
            except urllib.error.HTTPError as error:
                return False, f"{error.code} {summary(error.read())}"
        return True, "running"
    except Exception as error:  # a failed probe is a status, never a crash
        return False, f"{type(error).__name__}: {str(error)[:80]}"


def summary(body: bytes) -> str:
    if body.startswith(b"# HELP"):
        return f"metrics, {body.count(b'# HELP')} families"
    try:
        data = json.loads(body)
    except ValueError:
        return body[:40].decode(errors="replace").strip()
    if isinstance(data, dict):
        if "status" in data:
            return str(data["status"])
        if "error" in data:
            return str(data["error"].get("code"))
        return ",".join(list(data)[:3])
    return ""


def postgres_health(check: dict[str, Any], state: dict[str, Any]) -> tuple[bool, str]:
    import psycopg

    keys = json.loads((Path(state["root"]) / "secrets.json").read_text())
    with psycopg.connect(
        host="127.0.0.1",
        port=check["port"],
        user="postgres",
        dbname="postgres",
        password=keys["postgres_password"],
        connect_timeout=3,
    ) as connection:
        standby = connection.execute("SELECT pg_is_in_recovery()").fetchone()
        if check["role"] == "primary":
            senders = connection.execute("SELECT count(*) FROM pg_stat_replication").fetchone()
            return (
                standby is not None and not standby[0]
            ), f"primary, {senders[0] if senders else 0} streaming"
        receiver = connection.execute(
            "SELECT status, EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) "
            "FROM pg_stat_wal_receiver RIGHT JOIN (SELECT 1) one ON true"
        ).fetchone()
        if not standby or not standby[0]:
            return False, "not in recovery (promoted?)"
        status = receiver[0] if receiver else None
        lag = receiver[1] if receiver else None
        lag_text = f", last replay {float(lag):.1f}s ago" if lag is not None else ""
        return status == "streaming", f"replica, {status or 'not receiving'}{lag_text}"


# -- status, URLs -----------------------------------------------------------------------


def print_urls(state: dict[str, Any]) -> None:
    ports = state["ports"]
    https = state["https"]
    print(f"""
Emporium cluster ({state["app_servers"]} app servers) is up:
  shop, API       {https}/api/   (CA: {state["ca"]};  curl --cacert {state["ca"]} {https}/readyz)
  API docs        {https}/api/docs/
  dashboard       {https}/dashboard/
  WebSockets      wss://localhost:{ports["https"]}/ws/
  plain HTTP      http://127.0.0.1:{ports["http"]}/ (redirects to HTTPS)""")
    if "prometheus" in ports:
        print(f"  Prometheus      http://127.0.0.1:{ports['prometheus']}/targets")
    print(
        f"  PostgreSQL      primary 127.0.0.1:{ports['postgres']}"
        + (f", replica 127.0.0.1:{ports['replica']}" if "replica" in ports else "")
    )
    if "proxy-control" in ports:
        print(f"  fault proxy     http://127.0.0.1:{ports['proxy-control']}/")
    print(f"  secrets, logs   {state['root']}/secrets.json, {state['root']}/log/")


def status_print(state: dict[str, Any]) -> int:
    print(f"{'process':<12}{'pid':>8}{'port':>7}  {'health':<8}detail")
    sick = 0
    for entry in state.get("processes", []):
        healthy, detail = health_check(entry, state)
        sick += not healthy
        pid = entry.get("pid") or "-"
        port = entry.get("port") or "-"
        print(
            f"{entry['name']:<12}{pid!s:>8}{port!s:>7}  {'ok' if healthy else 'FAILING':<8}{detail}"
        )
    return sick


def status() -> None:
    where = layout()
    state = state_read(where)
    if not state:
        print(f"cluster: not running (no {where.state})")
        sys.exit(3)
    sick = status_print(state)
    sys.exit(1 if sick else 0)


# -- stop -------------------------------------------------------------------------------


def queues_purge(app_env: dict[str, str], broker: str) -> None:
    """Empties the work queues on the cluster's virtual host (``celery purge``)."""
    completed = subprocess.run(  # noqa: S603 - the project's own Celery app
        [PYTHON, "-m", "celery", "-A", "config", "purge", "-f"],
        cwd=ROOT,
        env={**os.environ, **app_env, "BROKER_URL": broker},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        print(f"cluster: purging the queues failed: {completed.stderr.strip()}", file=sys.stderr)


def stop() -> None:
    where = layout()
    state = state_read(where)
    for entry in reversed(state.get("processes", [])):
        if entry["kind"] == "postgres":
            continue
        if entry.get("pid"):
            terminate(int(entry["pid"]))
    # Nothing publishes any more: what is left queued would reach the next cluster.
    worker = next((p for p in state.get("processes", []) if p["kind"] == "worker"), None)
    if worker is not None and state.get("broker"):
        queues_purge(worker["env"], state["broker"])
    for entry in reversed(state.get("processes", [])):
        if entry["kind"] == "postgres":
            with contextlib.suppress(Exception):
                postgres_server(entry).stop()
    # Whatever a lost state file no longer names: servers started from this directory.
    for pid_file in list(where.root.glob("postgres/*/postmaster.pid")):
        with contextlib.suppress(Exception):
            pgcluster().Cluster(data=pid_file.parent, port=0).stop(mode="immediate")
    left = [
        f"{name} {port}" for name, port in state.get("ports", {}).items() if port_open(int(port))
    ]
    keep = os.environ.get("CLUSTER_KEEP_LOGS")
    if keep and where.logs.exists():
        shutil.copytree(where.logs, Path(keep), dirs_exist_ok=True)
    if where.root.exists():
        shutil.rmtree(where.root, ignore_errors=True)
    if left:
        print("cluster: still listening after stop: " + ", ".join(left), file=sys.stderr)
        sys.exit(1)
    print(f"cluster: stopped; {where.root} removed")


# -- one process, for fault drills --------------------------------------------------------


def entry_named(state: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in state.get("processes", []):
        if entry["name"] == name:
            return dict(entry)
    sys.exit(f"cluster: no process named {name!r}")


def kill_one(name: str, signal_name: str) -> None:
    where = layout()
    state = state_read(where)
    entry = entry_named(state, name)
    if entry["kind"] == "postgres":
        server = postgres_server(entry)
        server.kill() if signal_name == "KILL" else server.stop()
    else:
        os.killpg(int(entry["pid"]), getattr(signal, f"SIG{signal_name}"))
    print(f"cluster: {name} (pid {entry.get('pid')}) sent {signal_name}")


def restart_one(name: str) -> None:
    where = layout()
    state = state_read(where)
    entry = entry_named(state, name)
    if alive(entry.get("pid")) and entry["kind"] != "postgres":
        terminate(int(entry["pid"]))
    if entry["kind"] == "postgres":
        server = postgres_server(entry)
        server.start()
        role = entry["health"]["role"]
        postgres_record(where, state, name, server.data, server.port, role)
    else:
        entry["pid"] = launch(where, entry)
        state["processes"] = [entry if p["name"] == name else p for p in state["processes"]]
        state_write(where, state)
    print(f"cluster: {name} started again (pid {entry_named(state_read(where), name)['pid']})")


def main() -> None:
    parser = argparse.ArgumentParser(description="Emporium's topology on loopback")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start")
    commands.add_parser("status")
    commands.add_parser("stop")
    kill = commands.add_parser("kill")
    kill.add_argument("name")
    kill.add_argument("--signal", default="KILL", choices=["KILL", "TERM", "STOP", "CONT"])
    restart = commands.add_parser("restart")
    restart.add_argument("name")
    args = parser.parse_args()
    if args.command == "start":
        start()
    elif args.command == "status":
        status()
    elif args.command == "stop":
        stop()
    elif args.command == "kill":
        kill_one(args.name, args.signal)
    else:
        restart_one(args.name)


if __name__ == "__main__":
    main()
