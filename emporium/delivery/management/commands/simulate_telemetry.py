"""Drives couriers' phones against a running server: the demo's data source and a load tool.

    python manage.py simulate_telemetry --devices 200 --rate 5 --duration 60 \
        --url http://127.0.0.1:8000 [--batch-size 50] [--token-file F | --issue-devices]

Each second every simulated device generates ``--rate`` points (see
``emporium.delivery.simulation``) and sends them in batches of
``--batch-size`` to ``POST /api/telemetry/`` from a small thread pool. At the
end it prints what was sent and what the server answered, then asks
``/api/telemetry/summary/`` (staff) for a few devices' per-minute counts and
compares them with its own count of the valid, distinct points it sent; a
difference exits with status 1.

Tokens: ``--issue-devices`` creates the devices through the ORM (the command
must then use the server's database) and a staff token for the check: the
account ``telemetry-simulator`` with the admin role and no usable password,
made on first use; ``--token-file`` reads ``<device id> <token>`` lines, and
the summary check then needs ``--staff-token`` (a JWT access token), else it is
skipped. ``--no-summary-check`` skips the check and so never makes the staff
account; ``make run`` runs the simulator that way, for a day, so no account
exists that nobody asked for.
"""

from __future__ import annotations

import logging
import statistics
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
from django.core.management.base import BaseCommand, CommandError, CommandParser

from emporium.delivery.simulation import TraceGenerator, iso_utc, minute_floor

_encoder = msgspec.json.Encoder()
RETRIES = 3


@dataclass
class Totals:
    """Counts and latencies, shared by the sender threads under a lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed_requests: int = 0
    retries: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def read_tokens(path: Path) -> dict[int, str]:
    tokens: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise CommandError(f"{path}:{number}: expected '<device id> <token>'")
        tokens[int(parts[0])] = parts[1]
    return tokens


def issue_devices(count: int, *, staff_token: bool = True) -> tuple[dict[int, str], str]:
    """Devices, and a staff access token unless not asked for ("" then), made in this database.

    An active device already named ``simulated courier N`` (from an earlier run) is
    taken again with a new token, so that restarting the simulator does not pile up
    devices; a second simulator issuing the same names takes them over.
    """
    from rest_framework_simplejwt.tokens import RefreshToken

    from emporium.accounts.models import User
    from emporium.accounts.roles import Role, user_role_assign
    from emporium.delivery.models import CourierDevice
    from emporium.delivery.services import device_issue, device_token_rotate

    tokens: dict[int, str] = {}
    for number in range(count):
        name = f"simulated courier {number + 1}"
        earlier = CourierDevice.objects.filter(name=name, is_active=True).order_by("pk").first()
        issued = (
            device_token_rotate(device=earlier) if earlier is not None else device_issue(name=name)
        )
        tokens[issued.device.pk] = issued.token
    if not staff_token:
        return tokens, ""
    staff, created = User.objects.get_or_create(
        username="telemetry-simulator",
        defaults={"email": "telemetry-simulator@emporium.invalid"},
    )
    if created:
        staff.set_unusable_password()
        staff.save(update_fields=["password"])
        user_role_assign(user=staff, role=Role.ADMIN)
    if not staff.has_perm("delivery.view_telemetryminute"):
        raise CommandError("the user telemetry-simulator exists and may not read telemetry")
    return tokens, str(RefreshToken.for_user(staff).access_token)


class Command(BaseCommand):
    help = "Simulates courier devices posting GPS telemetry, then checks the server's summary."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--devices", type=int, default=200)
        parser.add_argument("--rate", type=float, default=5.0, help="points per second per device")
        parser.add_argument("--duration", type=float, default=60.0, help="seconds")
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--batch-size", type=int, default=50, help="points per request")
        parser.add_argument("--concurrency", type=int, default=8, help="sender threads")
        parser.add_argument("--duplicate-fraction", type=float, default=0.02)
        parser.add_argument("--invalid-fraction", type=float, default=0.01)
        parser.add_argument("--check-devices", type=int, default=5)
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--staff-token", default="", help="JWT access token for the check")
        parser.add_argument(
            "--no-summary-check",
            action="store_true",
            help="skip the summary check (--issue-devices then makes no staff account)",
        )
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--token-file", type=Path, help="lines of '<device id> <token>'")
        source.add_argument(
            "--issue-devices",
            action="store_true",
            help="create the devices through the ORM (same database as the server)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1 or options["devices"] < 1 or options["duration"] <= 0:
            raise CommandError("--devices, --batch-size and --duration must be positive")
        check: bool = not options["no_summary_check"]
        staff_token: str = options["staff_token"] if check else ""
        if options["issue_devices"]:
            tokens, issued_staff_token = issue_devices(options["devices"], staff_token=check)
            staff_token = staff_token or issued_staff_token
        else:
            tokens = read_tokens(options["token_file"])
            if len(tokens) < options["devices"]:
                raise CommandError(
                    f"{options['token_file']} has {len(tokens)} tokens; "
                    f"--devices asks for {options['devices']}"
                )
            tokens = dict(list(tokens.items())[: options["devices"]])
        base_url = options["url"].rstrip("/")
        # httpx logs every request at INFO, which would bury the progress line.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        generator = TraceGenerator(
            device_ids=list(tokens),
            rate=options["rate"],
            duplicate_fraction=options["duplicate_fraction"],
            invalid_fraction=options["invalid_fraction"],
            seed=options["seed"],
        )
        totals = Totals()
        started_at = datetime.now(UTC)
        wall_start = time.monotonic()
        limits = httpx.Limits(max_connections=options["concurrency"])
        with (
            httpx.Client(base_url=base_url, timeout=30.0, limits=limits) as client,
            ThreadPoolExecutor(max_workers=options["concurrency"]) as pool,
        ):
            futures = self._run(client, pool, generator, tokens, totals, options, wall_start)
            for future in futures:
                future.result()
        elapsed = time.monotonic() - wall_start
        finished_at = datetime.now(UTC)
        self.stdout.write("")
        self._report(totals, generator, elapsed)
        problems = self._check_totals(totals, generator)
        if staff_token:
            problems += self._check_summary(
                base_url, staff_token, generator, started_at, finished_at, options["check_devices"]
            )
        elif check:
            self.stdout.write("summary check skipped: no --staff-token (or use --issue-devices)")
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise SystemExit(1)
        if staff_token:
            self.stdout.write(self.style.SUCCESS("summary check: match"))

    def _run(
        self,
        client: httpx.Client,
        pool: ThreadPoolExecutor,
        generator: TraceGenerator,
        tokens: dict[int, str],
        totals: Totals,
        options: dict[str, Any],
        wall_start: float,
    ) -> list[Future[None]]:
        """Generates one second of points per tick and hands full batches to the pool.

        Like real phones, the devices do not send in step: each device's first
        batch is cut short by its place among the devices (so their batches fall
        due in different seconds), and the batches due in one second are sent
        spread over that second rather than all at its start. Sent together,
        they made a burst that measured queueing, not the server.
        """
        buffers: dict[int, list[dict[str, Any]]] = {device_id: [] for device_id in tokens}
        futures: list[Future[None]] = []
        batch_size: int = options["batch_size"]
        duration: float = options["duration"]
        # How many points each device's next batch waits for: its phase first, then full.
        due = {
            device_id: batch_size - (index * batch_size) // len(tokens)
            for index, device_id in enumerate(tokens)
        }
        tick = 0
        last_progress = 0.0
        while tick < duration:
            tick_seconds = min(1.0, duration - tick)
            now = datetime.now(UTC)
            ready: list[tuple[int, list[dict[str, Any]]]] = []
            for device_id, buffer in buffers.items():
                buffer.extend(generator.points_for(device_id, start=now, seconds=tick_seconds))
                while len(buffer) >= due[device_id]:
                    cut = due[device_id]
                    batch, buffer[:] = buffer[:cut], buffer[cut:]
                    due[device_id] = batch_size
                    ready.append((device_id, batch))
            for number, (device_id, batch) in enumerate(ready):
                pause = wall_start + tick + tick_seconds * number / len(ready) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                futures.append(pool.submit(self._send, client, tokens[device_id], batch, totals))
            tick += 1
            # Pace in real time so timestamps stay close to the server's clock.
            pause = wall_start + tick - time.monotonic()
            if pause > 0 and tick < duration:
                time.sleep(pause)
            if time.monotonic() - last_progress >= 1.0:
                last_progress = time.monotonic()
                self._progress(totals, time.monotonic() - wall_start)
        for device_id, buffer in buffers.items():
            if buffer:
                futures.append(pool.submit(self._send, client, tokens[device_id], buffer, totals))
        return futures

    def _send(
        self, client: httpx.Client, token: str, batch: list[dict[str, Any]], totals: Totals
    ) -> None:
        body = _encoder.encode(batch)
        headers = {"Authorization": f"Device {token}", "Content-Type": "application/json"}
        # A phone retries a batch that failed on the way or on the server: re-sending is
        # harmless (the server drops duplicates), so this is what a device should do.
        for attempt in range(RETRIES + 1):
            begin = time.perf_counter()
            try:
                response = client.post("/api/telemetry/", content=body, headers=headers)
            except httpx.HTTPError as error:
                failure = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 500:
                    break
                failure = f"HTTP {response.status_code}: {response.text[:200]}"
            with totals.lock:
                totals.retries += 1
                totals.errors.append(failure)
            time.sleep(0.05 * 2**attempt)
        else:
            with totals.lock:
                totals.requests += 1
                totals.sent += len(batch)
                totals.failed_requests += 1
            return
        latency_ms = (time.perf_counter() - begin) * 1000
        with totals.lock:
            totals.requests += 1
            totals.sent += len(batch)
            totals.latencies_ms.append(latency_ms)
            if response.status_code != 200:
                totals.failed_requests += 1
                totals.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            answer = response.json()
            totals.accepted += answer["accepted"]
            totals.duplicates += answer["duplicates"]
            totals.rejected += len(answer["rejected"])
            for rejection in answer["rejected"]:
                reason = rejection["reason"]
                totals.rejection_reasons[reason] = totals.rejection_reasons.get(reason, 0) + 1

    def _progress(self, totals: Totals, elapsed: float) -> None:
        with totals.lock:
            line = (
                f"\r{elapsed:6.1f}s  sent {totals.sent:>9}  accepted {totals.accepted:>9}  "
                f"duplicates {totals.duplicates:>7}  rejected {totals.rejected:>7}  "
                f"{totals.sent / max(elapsed, 1e-9):>9.0f} points/s  "
                f"failed requests {totals.failed_requests}"
            )
        self.stdout.write(line, ending="")
        self.stdout.flush()

    def _report(self, totals: Totals, generator: TraceGenerator, elapsed: float) -> None:
        latencies = totals.latencies_ms
        self.stdout.write(
            f"devices {len(generator.vehicles)}  duration {elapsed:.1f} s  "
            f"requests {totals.requests} (failed {totals.failed_requests}, "
            f"retried {totals.retries})\n"
            f"sent {totals.sent}  accepted {totals.accepted}  duplicates {totals.duplicates}  "
            f"rejected {totals.rejected}\n"
            f"throughput {totals.sent / elapsed:.0f} points/s sent, "
            f"{totals.accepted / elapsed:.0f} points/s accepted\n"
            f"request latency p50 {percentile(latencies, 0.50):.1f} ms  "
            f"p99 {percentile(latencies, 0.99):.1f} ms"
            + (f"  mean {statistics.fmean(latencies):.1f} ms" if latencies else "")
        )
        if totals.rejection_reasons:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(totals.rejection_reasons.items()))
            self.stdout.write(f"rejected by reason: {reasons}")
        for error in totals.errors[:5]:
            self.stderr.write(f"request error: {error}")

    def _check_totals(self, totals: Totals, generator: TraceGenerator) -> list[str]:
        """The server's counts must equal what was generated, when every request got through."""
        if totals.failed_requests:
            return [f"{totals.failed_requests} requests failed"]
        expected = generator.stats
        self.stdout.write(
            f"expected accepted {expected.valid}  duplicates {expected.duplicates}  "
            f"rejected {expected.invalid}"
        )
        actual: tuple[int, ...] = (totals.accepted, totals.duplicates, totals.rejected)
        if totals.retries:
            # A retried batch may have been stored the first time (an answer lost after the
            # commit): its points then come back as duplicates, so only the sum is fixed.
            actual = (totals.accepted + totals.duplicates, totals.rejected)
            wanted: tuple[int, ...] = (expected.valid + expected.duplicates, expected.invalid)
        else:
            wanted = (expected.valid, expected.duplicates, expected.invalid)
        if actual != wanted:
            return [f"server counts {actual} differ from the generated ones {wanted}"]
        return []

    def _check_summary(
        self,
        base_url: str,
        staff_token: str,
        generator: TraceGenerator,
        started_at: datetime,
        finished_at: datetime,
        devices: int,
    ) -> list[str]:
        """Compares per-minute counts from /api/telemetry/summary/ with the generator's."""
        problems: list[str] = []
        start = minute_floor(started_at) - timedelta(minutes=1)
        # Points may be stamped slightly after the wall clock's end when ticks ran late.
        end = minute_floor(finished_at) + timedelta(minutes=2)
        headers = {"Authorization": f"Bearer {staff_token}"}
        checked = list(generator.stats.per_minute.items())[:devices]
        with httpx.Client(base_url=base_url, timeout=30.0, headers=headers) as client:
            for device_id, expected in checked:
                response = client.get(
                    "/api/telemetry/summary/",
                    params={
                        "device_id": device_id,
                        "from": iso_utc(start),
                        "to": iso_utc(end),
                        "window": "1m",
                    },
                )
                if response.status_code != 200:
                    problems.append(
                        f"device {device_id}: summary answered {response.status_code} "
                        f"{response.text[:200]}"
                    )
                    continue
                actual = {
                    datetime.fromisoformat(row["start"].replace("Z", "+00:00")): row["count"]
                    for row in response.json()["results"]
                    if row["count"]
                }
                wanted = {minute: count for minute, count in expected.items() if count}
                verdict = "match" if actual == wanted else "MISMATCH"
                self.stdout.write(
                    f"device {device_id}: {sum(wanted.values())} points in {len(wanted)} "
                    f"minutes expected, {sum(actual.values())} in {len(actual)} reported: {verdict}"
                )
                if actual != wanted:
                    problems.append(f"device {device_id}: summary {actual} != expected {wanted}")
        sys.stdout.flush()
        return problems
