"""The sealing primitives, the key list from the environment and the installation's own key."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings.env import encryption_keys_local, encryption_keys_parse
from emporium.core.encryption import (
    DecryptionFailed,
    MalformedEnvelope,
    UnknownKey,
    blind_index,
    blind_index_candidates,
    envelope_key_id,
    seal,
    unseal,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
ROW = str(uuid.UUID(int=1))
WHERE = {"table": "orders_order", "column": "phone", "row_id": ROW}


@pytest.fixture(autouse=True)
def _keys(settings: Any) -> None:
    settings.EMPORIUM_ENCRYPTION_KEYS = (("a", KEY_A),)


def _flip_bit(envelope: str, byte: int) -> str:
    prefix, payload = envelope.rsplit(":", 1)
    raw = bytearray(base64.b64decode(payload))
    raw[byte] ^= 0x01
    return f"{prefix}:{base64.b64encode(bytes(raw)).decode()}"


def test_a_sealed_value_opens_to_its_plaintext_and_names_its_key() -> None:
    envelope = seal("+4930123456", **WHERE)

    assert envelope.startswith("v1:a:")
    assert "4930123456" not in envelope
    assert envelope_key_id(envelope) == "a"
    assert unseal(envelope, **WHERE) == "+4930123456"


def test_two_seals_of_one_value_differ_by_their_random_nonce() -> None:
    first, second = seal("same", **WHERE), seal("same", **WHERE)

    assert first != second
    assert base64.b64decode(first.split(":")[2])[:12] != base64.b64decode(second.split(":")[2])[:12]


@pytest.mark.parametrize("byte", [0, 11, 12, 20, -1])  # nonce, ciphertext, tag
def test_a_flipped_bit_anywhere_is_detected(byte: int) -> None:
    tampered = _flip_bit(seal("Main Street 1", **WHERE), byte)

    with pytest.raises(DecryptionFailed, match="does not authenticate"):
        unseal(tampered, **WHERE)


@pytest.mark.parametrize(
    "elsewhere",
    [
        {"row_id": str(uuid.UUID(int=2))},
        {"column": "shipping_address"},
        {"table": "payments_payment"},
    ],
    ids=["other row", "other column", "other table"],
)
def test_a_ciphertext_moved_elsewhere_does_not_open(elsewhere: dict[str, str]) -> None:
    envelope = seal("Main Street 1", **WHERE)

    with pytest.raises(DecryptionFailed):
        unseal(envelope, **{**WHERE, **elsewhere})


def test_a_changed_key_id_does_not_open(settings: Any) -> None:
    settings.EMPORIUM_ENCRYPTION_KEYS = (("a", KEY_A), ("b", KEY_A))
    envelope = seal("Main Street 1", **WHERE)

    with pytest.raises(DecryptionFailed):
        unseal(envelope.replace("v1:a:", "v1:b:", 1), **WHERE)


def test_an_unlisted_key_is_named_and_a_listed_old_key_still_opens(settings: Any) -> None:
    envelope = seal("Main Street 1", **WHERE)

    settings.EMPORIUM_ENCRYPTION_KEYS = (("b", KEY_B),)
    with pytest.raises(UnknownKey, match="'a'"):
        unseal(envelope, **WHERE)

    settings.EMPORIUM_ENCRYPTION_KEYS = (("b", KEY_B), ("a", KEY_A))
    assert unseal(envelope, **WHERE) == "Main Street 1"
    assert seal("x", **WHERE).startswith("v1:b:")


@pytest.mark.parametrize("stored", ["plain text", "v2:a:AAAA", "v1:a:%%%", "v1:a:AAAA"])
def test_what_is_not_an_envelope_is_refused(stored: str) -> None:
    with pytest.raises(MalformedEnvelope):
        unseal(stored, **WHERE)


def test_the_blind_index_is_keyed_per_column_and_has_a_candidate_per_key(settings: Any) -> None:
    index = blind_index("+4930123456", table="orders_order", column="phone")

    assert index == blind_index("+4930123456", table="orders_order", column="phone")
    assert index != blind_index("+4930123457", table="orders_order", column="phone")
    assert index != blind_index("+4930123456", table="orders_order", column="other")
    assert index.startswith("a:")
    assert "4930123456" not in index

    settings.EMPORIUM_ENCRYPTION_KEYS = (("b", KEY_B), ("a", KEY_A))
    candidates = blind_index_candidates("+4930123456", table="orders_order", column="phone")
    assert candidates[1] == index
    assert candidates[0].startswith("b:")
    assert candidates[0] != index


def _encoded(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_the_key_list_is_parsed_in_order_the_first_sealing() -> None:
    text = f" new:{_encoded(KEY_B)} , old:{base64.urlsafe_b64encode(KEY_A).decode()},"

    assert encryption_keys_parse(text) == (("new", KEY_B), ("old", KEY_A))
    assert encryption_keys_parse("") == ()


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (f"{_encoded(KEY_A)}", "each entry"),
        (f"bad_id:{_encoded(KEY_A)}", "each entry"),
        ("a:not base64!", "not base64"),
        (f"a:{_encoded(KEY_A[:16])}", "16 bytes"),
        (f"a:{_encoded(KEY_A)},a:{_encoded(KEY_B)}", "twice"),
    ],
)
def test_a_malformed_key_list_stops_the_start(text: str, complaint: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=complaint):
        encryption_keys_parse(text)


def test_the_installation_key_is_random_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "var" / "encryption.keys"

    keys = encryption_keys_local(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(keys) == 1
    assert len(keys[0][1]) == 32
    assert encryption_keys_local(path) == keys  # kept, not regenerated
    assert encryption_keys_local(tmp_path / "other.keys") != keys  # never a shared key
    assert [entry.name for entry in path.parent.iterdir()] == ["encryption.keys"]


def test_an_installation_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "encryption.keys"
    encryption_keys_local(path)
    os.chmod(path, 0o644)

    with pytest.raises(ImproperlyConfigured, match="chmod 600"):
        encryption_keys_local(path)


def test_production_refuses_to_start_without_keys(tmp_path: Path) -> None:
    import subprocess
    import sys

    from config.settings.env import BASE_DIR

    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"ENCRYPTION_KEYS", "DJANGO_SETTINGS_MODULE"}
    }
    environment.update(
        {
            "SECRET_KEY": "s" * 64,
            "ALLOWED_HOSTS": "shop.example.com",
            "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
            "ENCRYPTION_KEYS": "",
        }
    )
    script = "import config.settings.production"
    result = subprocess.run(  # noqa: S603 (fixed arguments)
        [sys.executable, "-c", script],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "ENCRYPTION_KEYS must list at least one key" in result.stderr
