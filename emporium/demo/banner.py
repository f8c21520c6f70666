"""What ``make run`` prints once its server answers: where everything is, and how to sign in.

The demo logins are derived from the seeding constants, and only shown on the
embedded profile, the one profile where ``seed_demo`` gives them a known password.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from emporium.demo.seeding import (
    CUSTOMER_COUNT,
    CUSTOMER_PASSWORD,
    EMBEDDED_ROLE_PASSWORD,
    EMBEDDED_STAFF_PASSWORD,
    ROLE_USERNAMES,
    STAFF_USERNAME,
)

# (label, path) of each place a new user wants, in the order the banner lists them.
PLACES: tuple[tuple[str, str], ...] = (
    ("Home", "/"),
    ("API docs (Swagger UI)", "/api/docs/"),
    ("OpenAPI schema", "/api/schema/"),
    ("Search page", "/search/"),
    ("Live dashboard (staff)", "/dashboard/"),
    ("Django admin", "/admin/"),
    ("Prometheus metrics", "/metrics"),
    ("Liveness", "/healthz"),
    ("Readiness", "/readyz"),
)
# The home page: a template and no database query. Any answer below 500 means "up".
POLL_PATH = "/"


@dataclass(frozen=True)
class Login:
    who: str
    usernames: str
    password: str


def demo_logins() -> list[Login]:
    """The accounts ``seed_demo`` gives a known password: on the embedded profile only."""
    if settings.EMPORIUM_PROFILE != "embedded":
        return []
    return [
        Login("staff (superuser)", STAFF_USERNAME, EMBEDDED_STAFF_PASSWORD),
        Login("customers", f"customer01 … customer{CUSTOMER_COUNT:02d}", CUSTOMER_PASSWORD),
        Login(
            "support, catalog manager", ", ".join(ROLE_USERNAMES.values()), EMBEDDED_ROLE_PASSWORD
        ),
    ]


def server_wait(base_url: str, *, timeout: float, interval: float = 0.25) -> bool:
    """Polls the server until it answers any HTTP status below 500; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per poll otherwise
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(base_url + POLL_PATH).status_code < 500:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(interval)
    return False


def banner_text(base_url: str, *, log_files: list[str]) -> str:
    """The lines printed once the server is up."""
    width = max(len(label) for label, _ in PLACES)
    lines = ["", f"Emporium is up at {base_url} ({settings.EMPORIUM_PROFILE} profile)", ""]
    lines += [f"  {label:<{width}}  {base_url}{path}" for label, path in PLACES]
    logins = demo_logins()
    if logins:
        lines += ["", "Demo logins:"]
        who_width = max(len(login.who) for login in logins)
        lines += [
            f"  {login.who:<{who_width}}  {login.usernames} / {login.password}" for login in logins
        ]
    if log_files:
        lines += ["", "Simulators write to " + ", ".join(log_files)]
    lines.append("")
    return "\n".join(lines)
