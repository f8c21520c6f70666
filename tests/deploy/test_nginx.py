"""nginx accepts both servers built on deploy/nginx/emporium-locations.conf:
the host's TLS server (deploy/nginx/emporium.conf) and the compose stack's
(deploy/compose/nginx.conf), by ``nginx -t`` in a prefix of the test's own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCATIONS = ROOT / "deploy" / "nginx" / "emporium-locations.conf"


def _nginx() -> str:
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if found is None:
        if os.environ.get("EMPORIUM_REQUIRE_SERVICES") == "1":
            pytest.fail("nginx is required (apt-get install nginx)")
        pytest.skip("nginx is not installed")
    return found


def nginx_prefix(prefix: Path, server_conf: str) -> Path:
    """A prefix holding ``server_conf`` inside an http {} block, with the shared snippet."""
    (prefix / "snippets").mkdir(parents=True, exist_ok=True)
    (prefix / "cache").mkdir(exist_ok=True)
    shutil.copy(LOCATIONS, prefix / "snippets" / "emporium-locations.conf")
    (prefix / "site.conf").write_text(
        server_conf.replace("/var/cache/nginx", str(prefix / "cache"))
    )
    (prefix / "nginx.conf").write_text(
        f"pid {prefix}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n"
        f"  proxy_temp_path {prefix}/proxy;\n  include {prefix}/site.conf;\n}}\n"
    )
    return prefix / "nginx.conf"


def nginx_test(prefix: Path, server_conf: str) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on ``server_conf`` inside an http {} block, with the shared snippet."""
    conf = nginx_prefix(prefix, server_conf)
    return subprocess.run(  # noqa: S603
        [_nginx(), "-t", "-p", str(prefix), "-c", str(conf), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _certificate(directory: Path) -> tuple[Path, Path]:
    certificate, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(  # noqa: S603
        [  # noqa: S607 - the system's openssl
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=shop.example.com",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
    )
    return certificate, key


def _host_conf(tmp_path: Path) -> str:
    certificate, key = _certificate(tmp_path)
    text = (ROOT / "deploy" / "nginx" / "emporium.conf").read_text()
    return text.replace(
        "/etc/letsencrypt/live/shop.example.com/fullchain.pem", str(certificate)
    ).replace("/etc/letsencrypt/live/shop.example.com/privkey.pem", str(key))


def _compose_conf() -> str:
    # nginx before 1.27.3 has no `resolve` on upstream servers, and Docker's names
    # exist only inside the stack: the two upstream lines become loopback ones.
    text = (ROOT / "deploy" / "compose" / "nginx.conf").read_text()
    for line in (
        "server web-1:8000 resolve max_fails=3 fail_timeout=10s;",
        "server web-2:8000 resolve max_fails=3 fail_timeout=10s;",
        "server ws:8001 resolve max_fails=0;",
    ):
        assert line in text
    return (
        text.replace("server web-1:8000 resolve", "server 127.0.0.1:8000")
        .replace("server web-2:8000 resolve", "server 127.0.0.2:8000")
        .replace("server ws:8001 resolve", "server 127.0.0.1:8001")
        .replace("resolver 127.0.0.11 valid=10s ipv6=off;", "")
    )


@pytest.mark.parametrize("which", ["host", "compose"])
def test_nginx_accepts_the_server(which: str, tmp_path: Path) -> None:
    conf = _host_conf(tmp_path) if which == "host" else _compose_conf()
    done = nginx_test(tmp_path / "prefix", conf)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_a_broken_snippet_is_rejected(tmp_path: Path) -> None:
    conf = _compose_conf()
    prefix = tmp_path / "prefix"
    assert nginx_test(prefix, conf).returncode == 0
    # The snippet refers to the zone and map each server defines; without them it fails.
    broken = conf.replace("keys_zone=emporium_catalog:20m", "keys_zone=other:20m")
    done = nginx_test(prefix, broken)
    assert done.returncode != 0
    assert "emporium_catalog" in done.stderr


def test_metrics_is_not_served_through_nginx(tmp_path: Path) -> None:
    """The compose server, run for real in front of an upstream that would answer
    anything 200: /metrics is nginx's 404 in the one error shape, / is proxied."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Answers200)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = _free_port()
    conf = (
        _compose_conf()
        .replace("server 127.0.0.1:8000", f"server 127.0.0.1:{upstream.server_address[1]}")
        .replace("server 127.0.0.2:8000", f"server 127.0.0.1:{upstream.server_address[1]}")
        .replace("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;")
    )
    prefix = tmp_path / "prefix"
    nginx_conf = nginx_prefix(prefix, conf)
    (prefix / "logs").mkdir(exist_ok=True)
    server = subprocess.Popen(  # noqa: S603
        [_nginx(), "-p", str(prefix), "-c", str(nginx_conf), "-e", "stderr", "-g", "daemon off;"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                root = httpx.get(f"{base}/", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        assert root.status_code == 200
        assert root.text == "upstream"
        scraped = httpx.get(f"{base}/metrics", timeout=2)
        assert scraped.status_code == 404
        assert scraped.json()["error"]["code"] == "not_found"
        assert httpx.get(f"{base}/metrics/", timeout=2).text == "upstream"  # only that path
    finally:
        server.terminate()
        server.wait(timeout=10)
        upstream.shutdown()


class _Answers200(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"upstream"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _CountsPublicAnswers(BaseHTTPRequestHandler):
    """Answers every GET 200 with ``Cache-Control: public`` and counts what reached it."""

    reached: list[str] = []

    def do_GET(self) -> None:
        self.reached.append(self.path)
        body = f"answer {len(self.reached)}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "public, max-age=30")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_anonymous_searches_and_suggestions_are_kept_by_the_micro_cache(tmp_path: Path) -> None:
    """The compose server for real: search results, the search page and autocomplete
    come from nginx's cache for anonymous requests (each query string its own
    entry); a request with a cookie or a token always reaches the app."""
    _CountsPublicAnswers.reached = []
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _CountsPublicAnswers)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = _free_port()
    conf = (
        _compose_conf()
        .replace("server 127.0.0.1:8000", f"server 127.0.0.1:{upstream.server_address[1]}")
        .replace("server 127.0.0.2:8000", f"server 127.0.0.1:{upstream.server_address[1]}")
        .replace("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;")
    )
    prefix = tmp_path / "prefix"
    nginx_conf = nginx_prefix(prefix, conf)
    (prefix / "logs").mkdir(exist_ok=True)
    # Workers write the cache under the test's own (private) directory: as root,
    # they keep the master's user instead of dropping to nobody.
    if os.geteuid() == 0:
        nginx_conf.write_text("user root;\n" + nginx_conf.read_text())
    server = subprocess.Popen(  # noqa: S603
        [_nginx(), "-p", str(prefix), "-c", str(nginx_conf), "-e", "stderr", "-g", "daemon off;"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{base}/", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        for path in ("/api/search/?q=lamp", "/api/search/suggest/?q=la", "/search/?q=lamp"):
            first = httpx.get(base + path, timeout=2)
            again = httpx.get(base + path, timeout=2)
            assert (first.headers["X-Cache-Status"], again.headers["X-Cache-Status"]) == (
                "MISS",
                "HIT",
            )
            assert again.text == first.text
            assert _CountsPublicAnswers.reached.count(path) == 1
            for headers in ({"Cookie": "sessionid=x"}, {"Authorization": "Bearer x"}):
                passed = httpx.get(base + path, headers=headers, timeout=2)
                assert passed.headers["X-Cache-Status"] == "BYPASS"
            assert _CountsPublicAnswers.reached.count(path) == 3
        other = httpx.get(f"{base}/api/search/?q=lamp&page=2", timeout=2)
        assert other.headers["X-Cache-Status"] == "MISS"
    finally:
        server.terminate()
        server.wait(timeout=10)
        upstream.shutdown()
