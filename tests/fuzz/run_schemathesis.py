"""Fuzzes the API from its own OpenAPI document against a real server.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/emporium [REDIS_URL=redis://...] \\
        .venv/bin/python -m tests.fuzz.run_schemathesis [--max-examples 10] [--seed 1]

1. creates a fresh PostgreSQL database beside DATABASE_URL's (its name plus
   ``_fuzz``), migrates it, loads the demo data (``seed_demo --products 200``)
   and adds a customer and a staff account with random passwords;
2. starts granian on ``config.wsgi`` (as production serves HTTP) on a free
   loopback port, with ``tests.fuzz.settings``;
3. signs both accounts in through ``POST /api/auth/login/``;
4. runs schemathesis over ``/api/schema/`` three times - anonymous, as the
   customer, as staff - with every check, valid and invalid data, and the
   schema's links followed (stateful), from a fixed seed;
5. sets every failure against ``.ci/schemathesis-accepted.yaml`` (each entry
   says why it is accepted) and exits 1 if any failure is not listed there;
6. stops the server and drops the database.

Reports (schemathesis' output, JUnit XML, the server's log) go to
``var/fuzz/``. The exit code is 0 only when every failure was accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import yaml
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
ACCEPTED_FILE = ROOT / ".ci" / "schemathesis-accepted.yaml"
REPORT_DIR = ROOT / "var" / "fuzz"
SETTINGS = "tests.fuzz.settings"
CUSTOMER = "fuzz-customer"
STAFF = "fuzz-staff"
STAFF_ROLES = ("support", "catalog_manager")  # reads everything, changes the catalog only
NEGATIVE_DATA_STATUSES = "400,401,403,404,405,406,409,413,415,422,429"

# A customer and a staff account. Staff holds the support and catalog roles
# (where those groups exist) but is not a superuser: fuzzing account changes
# could lock the run's own accounts out.
_ACCOUNTS_SCRIPT = """
import os
from django.contrib.auth.models import Group
from emporium.accounts.models import User

password = os.environ["FUZZ_PASSWORD"]
for username, staff in ((os.environ["FUZZ_CUSTOMER"], False), (os.environ["FUZZ_STAFF"], True)):
    user = User.objects.filter(username=username).first() or User(
        username=username, email=username + "@emporium.example"
    )
    user.is_staff = staff
    user.set_password(password)
    user.save()
    if staff:
        user.groups.set(Group.objects.filter(name__in=os.environ["FUZZ_STAFF_ROLES"].split(",")))
"""

# schemathesis' titles of the checks it reports, as printed in its failures.
_CASE_START = re.compile(r"^\d+\. Test Case ID: \S+$", re.MULTILINE)
_FAILURE_TITLE = re.compile(r"^- (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Failure:
    role: str
    operation: str  # "GET /api/orders/", or a stateful step
    title: str  # schemathesis' name of the failed check, e.g. "Server error"
    case: str  # the whole report of the case: response, curl command


@dataclass(frozen=True)
class Accepted:
    operation: str
    failure: str
    evidence: str | None
    reason: str

    def covers(self, failure: Failure) -> bool:
        return (
            re.fullmatch(self.operation, failure.operation) is not None
            and re.search(self.failure, failure.title) is not None
            and (self.evidence is None or re.search(self.evidence, failure.case) is not None)
        )


def accepted_list(path: Path = ACCEPTED_FILE) -> list[Accepted]:
    entries = (yaml.safe_load(path.read_text()) or {}).get("accepted") or []
    result = []
    for entry in entries:
        if not str(entry.get("reason", "")).strip():
            raise SystemExit(f"{path}: every accepted failure needs a reason: {entry}")
        result.append(
            Accepted(
                operation=entry["operation"],
                failure=entry["failure"],
                evidence=entry.get("evidence"),
                reason=entry["reason"],
            )
        )
    return result


def failures_of(junit_xml: Path, role: str) -> tuple[int, list[Failure]]:
    """The operations tested and every failed case in schemathesis' JUnit report."""
    # The reports are multi-line attributes, whose line breaks an XML parser turns
    # into spaces; written as character references they survive.
    text = junit_xml.read_text()
    text = text[text.index("<testsuites") :].strip().replace("\n", "&#10;")
    root = ElementTree.fromstring(text)  # noqa: S314 - our own tool's report
    testcases = list(root.iter("testcase"))
    found: list[Failure] = []
    for testcase in testcases:
        operation = testcase.get("name", "")
        for element in (*testcase.findall("failure"), *testcase.findall("error")):
            message = element.get("message") or element.text or ""
            if element.tag == "error":
                found.append(Failure(role, operation, f"Error: {message[:200]}", message))
                continue
            starts = [match.start() for match in _CASE_START.finditer(message)] or [0]
            for begin, end in zip(starts, [*starts[1:], len(message)], strict=True):
                case = message[begin:end]
                titles = _FAILURE_TITLE.findall(case) or ["(no title)"]
                found.extend(Failure(role, operation, title.strip(), case) for title in titles)
    return len(testcases), found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _database_urls(database_url: str) -> tuple[str, str, str]:
    """(the fuzz database's name, its URL, the URL of the server's maintenance database)."""
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise SystemExit("DATABASE_URL must name a PostgreSQL database")
    name = (parts.path.lstrip("/") or "emporium") + "_fuzz"
    fuzz_url = urlunsplit(parts._replace(path="/" + name))
    admin_url = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    return name, fuzz_url, admin_url


@contextmanager
def fresh_database(database_url: str) -> Iterator[str]:
    name, fuzz_url, admin_url = _database_urls(database_url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield fuzz_url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, check=True
    )


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - the server this script started
        url,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


@contextmanager
def running_server(env: dict[str, str], log: Path) -> Iterator[str]:
    port = _free_port()
    granian = shutil.which("granian", path=str(Path(sys.executable).parent)) or "granian"
    with log.open("wb") as output:
        server = subprocess.Popen(  # noqa: S603 - granian from this virtualenv
            [
                granian,
                "--interface",
                "wsgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "config.wsgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server stopped at start; see {log}")
            try:
                if _http("GET", f"{base_url}/api/schema/?format=json")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not answer within 60 s; see {log}")
            time.sleep(0.3)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def sign_in(base_url: str, username: str, password: str) -> str:
    status, body = _http(
        "POST", f"{base_url}/api/auth/login/", {"username": username, "password": password}
    )
    if status != 200 or not isinstance(body, dict) or "access" not in body:
        raise SystemExit(f"could not sign {username} in: HTTP {status}")
    return str(body["access"])


def run_schemathesis(
    *, base_url: str, role: str, token: str | None, max_examples: int, seed: int
) -> Path:
    junit = REPORT_DIR / f"schemathesis-{role}.xml"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/api/schema/?format=json",
        "--checks",
        "all",
        # A refusal before validation (a throttle) is a rejection of invalid data too.
        "--experimental-negative-data-rejection-allowed-statuses",
        NEGATIVE_DATA_STATUSES,
        "--data-generation-method",
        "all",
        "--stateful",
        "links",
        "--hypothesis-max-examples",
        str(max_examples),
        "--hypothesis-seed",
        str(seed),
        "--hypothesis-database",
        "none",
        "--hypothesis-suppress-health-check",
        "all",
        "--experimental-no-failfast",
        "--request-timeout",
        "20000",
        "--sanitize-output",
        "false",  # the evidence of some accepted failures is in the Authorization header
        "--junit-xml",
        str(junit),
    ]
    if token is not None:
        # ignored_auth runs anonymous only. With a token given, schemathesis spoils
        # the other scheme of "Bearer or session cookie" (the cookie), and the valid
        # token rightly still gets in; it would report every operation.
        command += ["-H", f"Authorization: Bearer {token}", "--exclude-checks", "ignored_auth"]
    output = REPORT_DIR / f"schemathesis-{role}.txt"
    junit.unlink(missing_ok=True)  # a report left by an earlier run must never be read as this one
    started = time.monotonic()
    with output.open("wb") as sink:
        finished = subprocess.run(  # noqa: S603 - schemathesis from this virtualenv
            command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, check=False
        )
    print(
        f"  {role}: schemathesis exited {finished.returncode} in "
        f"{time.monotonic() - started:.0f} s ({output.relative_to(ROOT)})",
        flush=True,
    )
    # 0: no failure, 1: failures found (judged against the accepted list); anything
    # else is schemathesis itself failing, and its report cannot be trusted.
    if finished.returncode not in (0, 1) or not junit.exists():
        raise SystemExit(f"schemathesis did not complete for {role}; see {output}")
    return junit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=10, help="per operation and run")
    parser.add_argument("--seed", type=int, default=1, help="Hypothesis seed (reproducible runs)")
    parser.add_argument(
        "--roles", default="anonymous,customer,staff", help="comma-separated subset to run"
    )
    options = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        raise SystemExit("DATABASE_URL must point at the PostgreSQL server to use")
    accepted = accepted_list()
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    password = secrets.token_urlsafe(18)

    with fresh_database(database_url) as fuzz_url:
        env = {
            **os.environ,
            "DATABASE_URL": fuzz_url,
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "EMPORIUM_FUZZ_RUN": secrets.token_hex(6),
            "FUZZ_PASSWORD": password,
            "FUZZ_CUSTOMER": CUSTOMER,
            "FUZZ_STAFF": STAFF,
            "FUZZ_STAFF_ROLES": ",".join(STAFF_ROLES),
        }
        print("fuzz: migrating and seeding a fresh database", flush=True)
        _manage(env, "migrate", "--no-input", "-v", "0")
        _manage(env, "seed_demo", "--products", "200", "--no-progress")
        _manage(env, "shell", "-c", _ACCOUNTS_SCRIPT)
        with running_server(env, REPORT_DIR / "server.log") as base_url:
            tokens = {
                "anonymous": None,
                "customer": sign_in(base_url, CUSTOMER, password),
                "staff": sign_in(base_url, STAFF, password),
            }
            print(f"fuzz: schemathesis against {base_url}", flush=True)
            tested = 0
            failures: list[Failure] = []
            for role in options.roles.split(","):
                junit = run_schemathesis(
                    base_url=base_url,
                    role=role,
                    token=tokens[role],
                    max_examples=options.max_examples,
                    seed=options.seed,
                )
                count, found = failures_of(junit, role)
                tested += count
                failures += found

    unaccepted = [f for f in failures if not any(entry.covers(f) for entry in accepted)]
    used = {entry for entry in accepted for f in failures if entry.covers(f)}
    for entry in used:
        print(f"fuzz: accepted ({entry.failure} on {entry.operation}): {entry.reason.strip()}")
    for failure in unaccepted:
        print(f"\nFAILED [{failure.role}] {failure.operation}: {failure.title}\n{failure.case}")
    failed_operations = {(f.role, f.operation) for f in unaccepted}
    print(
        f"\nfuzz: {len(failures)} failed cases, {len(failures) - len(unaccepted)} accepted, "
        f"in {time.monotonic() - started:.0f} s; reports in {REPORT_DIR.relative_to(ROOT)}/"
    )
    print(
        f"schemathesis: {tested - len(failed_operations)} passed, {len(failed_operations)} failed"
    )
    return 1 if unaccepted else 0


if __name__ == "__main__":
    sys.exit(main())
