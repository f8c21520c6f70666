"""Published secrets never sign anything real (config.settings.secret_keys).

Each profile is started for real, in a process of its own with only the
environment the test gives it: the settings refuse at import, so that is
where an operator would see the refusal.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from django.core.checks import run_checks
from django.test import override_settings

from simulators.payment_provider import sign

ROOT = Path(__file__).resolve().parents[3]
OLD_SECRET_KEY = "embedded-profile-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"
OLD_WEBHOOK_SECRET = "simulator-webhook-secret"
# Variables the child must not inherit from this test process or the shell.
_CLEARED = {
    "DJANGO_SETTINGS_MODULE",
    "SECRET_KEY",
    "PAYMENT_WEBHOOK_SECRET",
    "PAYMENT_PROVIDER_API_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "BROKER_URL",
    "EMAIL_URL",
    "ALLOWED_HOSTS",
    "ENCRYPTION_KEYS",
    "SECRETS_PATH",
    "SQLITE_PATH",
}


def _run(
    settings_module: str, env: dict[str, str], code: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    environment.update(
        {
            "DJANGO_SETTINGS_MODULE": settings_module,
            # An installation of its own, never the checkout's var/.
            "SECRETS_PATH": str(tmp_path / "var" / "secrets.json"),
            "SQLITE_PATH": str(tmp_path / "var" / "emporium.sqlite3"),
            **env,
        }
    )
    return subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


_SETUP = "import django; django.setup(); from django.conf import settings; "
_PRINT_SECRETS = _SETUP + "print(settings.SECRET_KEY); print(settings.PAYMENT_WEBHOOK_SECRET)"


def _production_env() -> dict[str, str]:
    """A production environment that starts: every secret real."""
    return {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "PAYMENT_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "DATABASE_URL": "postgres://emporium:s3cr3t-db-pass@127.0.0.1:5432/emporium",
        "ALLOWED_HOSTS": "shop.example.com",
        "ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "JWT_PRIVATE_KEYS": "j1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }


def _env_example_placeholders() -> list[tuple[str, str]]:
    """Every ``NAME=value`` of .env.example whose value is a stand-in for a secret."""
    found = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"([A-Z_]+)=(.*)", line.strip())
        if match and "change-me" in match.group(2):
            found.append((match.group(1), match.group(2)))
    return found


# -- the embedded profile -----------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        {},  # nothing: before, the published defaults were used
        {"SECRET_KEY": OLD_SECRET_KEY},
        {"SECRET_KEY": secrets.token_urlsafe(64), "PAYMENT_WEBHOOK_SECRET": OLD_WEBHOOK_SECRET},
    ],
    ids=["no-secrets", "published-secret-key", "published-webhook-secret"],
)
def test_the_embedded_profile_on_a_database_server_refuses_to_start(
    given: dict[str, str], tmp_path: Path
) -> None:
    env = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/emporium_unused", **given}

    setup = _run("config.settings.embedded", env, _SETUP, tmp_path)
    check = _run(
        "config.settings.embedded",
        env,
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check'])",
        tmp_path,
    )

    for completed in (setup, check):
        assert completed.returncode != 0
        assert "ImproperlyConfigured" in completed.stderr
        assert "The embedded profile refuses these secrets on a database server" in (
            completed.stderr
        )
    assert not (tmp_path / "var" / "secrets.json").exists()  # nothing generated to fall back on


def test_the_embedded_profile_on_a_database_server_starts_with_real_secrets(
    tmp_path: Path,
) -> None:
    key, hook = secrets.token_urlsafe(64), secrets.token_urlsafe(32)
    env = {
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/emporium_unused",
        "SECRET_KEY": key,
        "PAYMENT_WEBHOOK_SECRET": hook,
    }

    completed = _run("config.settings.embedded", env, _PRINT_SECRETS, tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == [key, hook]


def test_two_installations_generate_different_keys_kept_private(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()

    a = _run("config.settings.embedded", {}, _PRINT_SECRETS, first)
    a_again = _run("config.settings.embedded", {}, _PRINT_SECRETS, first)
    b = _run("config.settings.embedded", {}, _PRINT_SECRETS, second)

    for completed in (a, a_again, b):
        assert completed.returncode == 0, completed.stderr
    a_keys, b_keys = a.stdout.split(), b.stdout.split()
    assert len(a_keys) == len(b_keys) == 2
    assert not set(a_keys) & set(b_keys)
    assert a_again.stdout.split() == a_keys  # generated once per installation
    assert not {OLD_SECRET_KEY, OLD_WEBHOOK_SECRET} & set(a_keys + b_keys)
    for installation in (first, second):
        mode = (installation / "var" / "secrets.json").stat().st_mode
        assert stat.S_IMODE(mode) == 0o600


def test_a_token_forged_with_the_old_published_key_is_rejected(tmp_path: Path) -> None:
    now = int(time.time())
    forged = jwt.encode(
        {
            "token_type": "access",
            "exp": now + 600,
            "iat": now,
            "jti": secrets.token_hex(16),
            "user_id": "1",
        },
        OLD_SECRET_KEY,
        algorithm="HS256",
    )
    body = b'{"type": "charge.succeeded", "data": {}}'
    forged_signature = sign(OLD_WEBHOOK_SECRET, now, body)
    code = (
        _SETUP
        + "from rest_framework_simplejwt.authentication import JWTAuthentication\n"
        + "from rest_framework_simplejwt.exceptions import InvalidToken\n"
        + "from emporium.payments.webhooks import InvalidSignature, signature_verify\n"
        + "try:\n"
        + f"    JWTAuthentication().get_validated_token({forged!r}.encode())\n"
        + "    print('token accepted')\n"
        + "except InvalidToken:\n"
        + "    print('token rejected')\n"
        + "try:\n"
        + f"    signature_verify(header={forged_signature!r}, body={body!r}, "
        + "secret=settings.PAYMENT_WEBHOOK_SECRET, tolerance=300)\n"
        + "    print('callback accepted')\n"
        + "except InvalidSignature:\n"
        + "    print('callback rejected')\n"
    )

    completed = _run("config.settings.embedded", {}, code, tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split("\n")[:2] == ["token rejected", "callback rejected"]


# -- the production profile ---------------------------------------------------------


def test_production_starts_with_real_secrets(tmp_path: Path) -> None:
    completed = _run("config.settings.production", _production_env(), _SETUP, tmp_path)

    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        *_env_example_placeholders(),
        ("SECRET_KEY", OLD_SECRET_KEY),
        ("PAYMENT_WEBHOOK_SECRET", OLD_WEBHOOK_SECRET),
        ("PAYMENT_WEBHOOK_SECRET", secrets.token_hex(31)),  # 248 bits: one byte short
        ("PAYMENT_WEBHOOK_SECRET", "ab" * 40),  # long, but a pattern
        ("SECRET_KEY", secrets.token_urlsafe(32)),  # 256 bits, but under Django's 50 characters
    ],
)
def test_production_refuses_a_placeholder_or_weak_secret(
    name: str, value: str, tmp_path: Path
) -> None:
    completed = _run(
        "config.settings.production", {**_production_env(), name: value}, _SETUP, tmp_path
    )

    assert completed.returncode != 0
    assert "ImproperlyConfigured: Production refuses these secrets" in completed.stderr
    assert name in completed.stderr.splitlines()[-1]


@pytest.mark.parametrize("value", [secrets.token_urlsafe(64), "a"])
def test_production_refuses_a_leftover_jwt_signing_key(value: str, tmp_path: Path) -> None:
    """The HMAC token key signs nothing now; a deployment still setting it is told so."""
    completed = _run(
        "config.settings.production",
        {**_production_env(), "JWT_SIGNING_KEY": value},
        _SETUP,
        tmp_path,
    )

    assert completed.returncode != 0
    assert completed.stderr.splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: Production refuses these secrets: "
        "JWT_SIGNING_KEY is no longer read: tokens are signed with Ed25519 keys from "
        "JWT_PRIVATE_KEYS (manage.py jwt_key_generate); remove JWT_SIGNING_KEY. "
        "(This is config.settings.production, the default of manage.py and the servers; "
        "for development set DJANGO_SETTINGS_MODULE=config.settings.embedded, as the "
        "Makefile's commands do.)"
    )


def test_the_env_example_placeholders_are_all_covered() -> None:
    names = {name for name, _ in _env_example_placeholders()}

    # Every secret and every service password .env.example stands in for.
    assert names == {
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "BROKER_URL",
        "PAYMENT_PROVIDER_API_KEY",
        "PAYMENT_WEBHOOK_SECRET",
        "EMAIL_URL",
    }


def _secret_errors() -> list[str]:
    return [
        message.msg
        for message in run_checks(include_deployment_checks=True)
        if message.id == "emporium.E001"
    ]


def test_check_deploy_passes_real_secrets() -> None:
    with override_settings(
        SECRET_KEY=secrets.token_urlsafe(64), PAYMENT_WEBHOOK_SECRET=secrets.token_urlsafe(32)
    ):
        assert _secret_errors() == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"SECRET_KEY": OLD_SECRET_KEY}, "SECRET_KEY is a published placeholder value"),
        ({"PAYMENT_WEBHOOK_SECRET": OLD_WEBHOOK_SECRET}, "PAYMENT_WEBHOOK_SECRET is a published"),
        ({"PAYMENT_WEBHOOK_SECRET": "short"}, "PAYMENT_WEBHOOK_SECRET is too weak"),
    ],
)
def test_check_deploy_fails_on_a_published_or_weak_secret(
    overrides: dict[str, str], expected: str
) -> None:

    values = {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "PAYMENT_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        **overrides,
    }

    with override_settings(**values):
        errors = _secret_errors()

    assert len(errors) == 1
    assert errors[0].startswith(expected)


def test_manage_py_check_deploy_exits_with_the_error_id(tmp_path: Path) -> None:
    """The command operators run, on settings that carry a weak webhook secret."""
    env = {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "PAYMENT_WEBHOOK_SECRET": "",
    }
    code = (
        "from django.conf import settings; import django; django.setup(); "
        "settings.PAYMENT_WEBHOOK_SECRET = 'simulator-webhook-secret'; "
        "from django.core.management import call_command; call_command('check', deploy=True)"
    )

    completed = _run("config.settings.embedded", env, code, tmp_path)

    assert completed.returncode != 0
    assert "emporium.E001" in completed.stderr
    assert "SystemCheckError" in completed.stderr
