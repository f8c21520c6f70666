"""Sensitive columns sealed at rest with AES-256-GCM, bound to their table, column and row.

A sealed value is stored as the text envelope ``v1:<kid>:<base64(nonce || ciphertext || tag)>``:
a 96-bit random nonce, the AES-GCM output with its 128-bit tag, and the id of
the key that sealed it. The associated data names the envelope version, the
key id, the table, the column and the row's ``row_uuid`` (a random UUID the
row gets in Python before it is inserted, so the value can be sealed before
the database allocates the primary key; docs/adr/0022-encryption-at-rest.md).
A ciphertext copied to another row or column, or with a flipped bit, does not
open: :class:`DecryptionFailed` is raised.

Keys come from ``settings.EMPORIUM_ENCRYPTION_KEYS`` (``ENCRYPTION_KEYS`` in
the environment): the first seals, every listed key opens. Equality lookups go
through a blind index (:class:`BlindIndexField`): an HMAC-SHA256 of the value
under a key derived from each encryption key, never the ciphertext.

Models use :class:`EncryptedTextField` / :class:`EncryptedJSONField` like any
field: the attribute holds the plaintext, ``save()``, ``create()`` and
``bulk_create()`` seal it, reading the attribute opens it (once, lazily).
``QuerySet.update()`` and lookups on a sealed column are refused, because they
would send the plaintext to the table; ``values()`` gives :class:`Sealed`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.query_utils import DeferredAttribute

ENVELOPE_VERSION = "v1"
NONCE_BYTES = 12
TAG_BYTES = 16
# Longest blind index: a 32-character key id, ":", 64 hex digits.
BLIND_INDEX_LENGTH = 97


class EncryptionError(Exception):
    """A sealed value could not be opened or written."""


class MalformedEnvelope(EncryptionError):
    """The stored text is not a ``v1:<kid>:<base64>`` envelope."""


class UnknownKey(EncryptionError):
    """The envelope names a key id that ENCRYPTION_KEYS no longer lists."""


class DecryptionFailed(EncryptionError):
    """The authentication tag does not match: the value was altered or belongs elsewhere."""


@dataclass(frozen=True)
class Keyring:
    """The configured keys: ``active_id`` seals, every key in ``keys`` opens."""

    keys: dict[str, bytes]
    active_id: str
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, compare=False, repr=False)
    _index_keys: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for key_id, key in self.keys.items():
            self._ciphers[key_id] = AESGCM(key)
            # A separate key for the blind index: knowing index values says
            # nothing about the encryption key, and the other way round.
            self._index_keys[key_id] = HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=b"emporium blind index v1",
            ).derive(key)

    def cipher(self, key_id: str) -> AESGCM:
        try:
            return self._ciphers[key_id]
        except KeyError:
            raise UnknownKey(
                f"Key {key_id!r} is not in ENCRYPTION_KEYS; it is needed to open this value."
            ) from None

    def index_key(self, key_id: str) -> bytes:
        return self._index_keys[key_id]


@cache
def keyring() -> Keyring:
    pairs = list(getattr(settings, "EMPORIUM_ENCRYPTION_KEYS", ()))
    if not pairs:
        raise ImproperlyConfigured("EMPORIUM_ENCRYPTION_KEYS is empty: set ENCRYPTION_KEYS.")
    return Keyring(keys=dict(pairs), active_id=pairs[0][0])


def _keyring_forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "EMPORIUM_ENCRYPTION_KEYS":
        keyring.cache_clear()


setting_changed.connect(_keyring_forget)


def associated_data(*, key_id: str, table: str, column: str, row_id: str) -> bytes:
    """What a ciphertext is bound to besides its key (JSON, so no part can spill into another)."""
    return json.dumps(
        [ENVELOPE_VERSION, key_id, table, column, row_id], separators=(",", ":")
    ).encode()


def envelope_prefix(key_id: str) -> str:
    """How every value sealed under ``key_id`` begins (the rotation selects on it)."""
    return f"{ENVELOPE_VERSION}:{key_id}:"


def envelope_key_id(envelope: str) -> str:
    version, separator, rest = envelope.partition(":")
    key_id, separator_after, _ = rest.partition(":")
    if version != ENVELOPE_VERSION or not separator or not separator_after or not key_id:
        raise MalformedEnvelope("The stored value is not a v1 envelope.")
    return key_id


def seal(plaintext: str, *, table: str, column: str, row_id: str) -> str:
    """The envelope of ``plaintext`` under the active key, for this table, column and row."""
    keys = keyring()
    nonce = os.urandom(NONCE_BYTES)
    data = associated_data(key_id=keys.active_id, table=table, column=column, row_id=row_id)
    sealed = keys.cipher(keys.active_id).encrypt(nonce, plaintext.encode(), data)
    return envelope_prefix(keys.active_id) + base64.b64encode(nonce + sealed).decode("ascii")


def unseal(envelope: str, *, table: str, column: str, row_id: str) -> str:
    """The plaintext of an envelope sealed for this table, column and row, under any listed key."""
    key_id = envelope_key_id(envelope)
    try:
        raw = base64.b64decode(envelope[len(envelope_prefix(key_id)) :], validate=True)
    except (binascii.Error, ValueError) as error:
        raise MalformedEnvelope("The stored value's payload is not base64.") from error
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise MalformedEnvelope("The stored value is too short to be a sealed value.")
    data = associated_data(key_id=key_id, table=table, column=column, row_id=row_id)
    try:
        plaintext = keyring().cipher(key_id).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], data)
    except InvalidTag:
        raise DecryptionFailed(
            f"The value in {table}.{column} of row {row_id} does not authenticate: it was "
            "altered, or copied from another row or column."
        ) from None
    return plaintext.decode()


def blind_index(value: str, *, table: str, column: str, key_id: str | None = None) -> str:
    """``<kid>:<hex HMAC-SHA256>`` of the value for this column, under the active key by default."""
    keys = keyring()
    key_id = key_id or keys.active_id
    keys.cipher(key_id)  # the same refusal as opening, for an unknown id
    message = associated_data(key_id=key_id, table=table, column=column, row_id="") + b"\0"
    digest = hmac.new(keys.index_key(key_id), message + value.encode(), hashlib.sha256)
    return f"{key_id}:{digest.hexdigest()}"


def blind_index_candidates(value: str, *, table: str, column: str) -> list[str]:
    """Every index ``value`` may be stored under: one per listed key (rows not yet rotated)."""
    return [
        blind_index(value, table=table, column=column, key_id=key_id) for key_id in keyring().keys
    ]


class Sealed:
    """A value as stored (an envelope), opened on first use by the field's descriptor."""

    __slots__ = ("envelope", "opened", "plaintext")

    def __init__(self, envelope: str) -> None:
        self.envelope = envelope
        self.opened = False
        self.plaintext: Any = None

    def __repr__(self) -> str:
        return f"Sealed({envelope_key_id_or_none(self.envelope)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.envelope == self.envelope

    def __hash__(self) -> int:
        return hash(self.envelope)


def envelope_key_id_or_none(envelope: str) -> str | None:
    try:
        return envelope_key_id(envelope)
    except MalformedEnvelope:
        return None


def row_uuid_field() -> models.UUIDField[uuid.UUID, uuid.UUID]:
    """The per-row identifier sealed values are bound to; set in Python, before the INSERT."""
    return models.UUIDField(default=uuid.uuid4, unique=True, editable=False)


class _SealedAttribute(DeferredAttribute):
    """Holds the plaintext a model assigned, or the :class:`Sealed` value read from the table.

    A data descriptor (it has ``__set__``), so every read passes here and a
    sealed value is opened on first access, with the row's ``row_uuid``.
    """

    field: EncryptedTextField

    def __get__(self, instance: models.Model | None, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Sealed):
            if not value.opened:
                value.plaintext = self.field.decode(self.field.unseal_for(instance, value.envelope))
                value.opened = True
            return value.plaintext
        return value

    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField[Any, Any]):
    """Text sealed with AES-256-GCM; needs a ``row_uuid`` field (``row_uuid_field()``) on the model.

    NULL stays NULL (no value); every other value, the empty string included,
    is sealed. A value read and left unchanged is written back as it was read.
    """

    descriptor_class = _SealedAttribute
    description = "Text sealed with AES-256-GCM"

    def __init__(self, *args: Any, row_id_field: str = "row_uuid", **kwargs: Any) -> None:
        self.row_id_field = row_id_field
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.row_id_field != "row_uuid":
            kwargs["row_id_field"] = self.row_id_field
        return name, path, args, kwargs

    # What the attribute holds <-> the text that is sealed.
    def encode(self, value: Any) -> str:
        return str(value)

    def decode(self, text: str) -> Any:
        return text

    def changes_in_place(self) -> bool:
        """True when the opened value is mutable, so an opened value must be sealed again."""
        return False

    def row_id(self, instance: models.Model) -> str:
        row_id = getattr(instance, self.row_id_field)
        if row_id is None:
            raise EncryptionError(
                f"{self.model._meta.label}.{self.row_id_field} is empty; it binds {self.name}."
            )
        return str(row_id)

    def seal_for(self, instance: models.Model, value: Any) -> str:
        return seal(
            self.encode(value),
            table=self.model._meta.db_table,
            column=str(self.column),
            row_id=self.row_id(instance),
        )

    def unseal_for(self, instance: models.Model, envelope: str) -> str:
        return unseal(
            envelope,
            table=self.model._meta.db_table,
            column=str(self.column),
            row_id=self.row_id(instance),
        )

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = model_instance.__dict__.get(self.attname)
        if value is None:
            return None
        if isinstance(value, Sealed) and not (value.opened and self.changes_in_place()):
            return value  # as read: unchanged
        if isinstance(value, Sealed):
            value = value.plaintext
        return Sealed(self.seal_for(model_instance, value))

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.envelope
        raise EncryptionError(
            f"{self.model._meta.label}.{self.name} is sealed: write it through save(), "
            "create() or bulk_create(), and look values up through its blind index."
        )

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        return self.get_prep_value(value)

    def from_db_value(
        self, value: str | None, expression: Any, connection: BaseDatabaseWrapper
    ) -> Sealed | None:
        return None if value is None else Sealed(value)

    def to_python(self, value: Any) -> Any:
        return value

    def value_to_string(self, obj: models.Model) -> str:
        return self.encode(self.value_from_object(obj))


class EncryptedJSONField(EncryptedTextField):
    """A JSON value (sorted keys) sealed like :class:`EncryptedTextField`."""

    description = "JSON sealed with AES-256-GCM"
    # What the Django mypy plugin reads as the types set and read (any JSON value).
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def encode(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    def decode(self, text: str) -> Any:
        return json.loads(text)

    def changes_in_place(self) -> bool:
        return True


class BlindIndexField(models.CharField[str | None, str | None]):
    """The keyed HMAC of a sealed field's plaintext, for equality lookups.

    Filled on every save from ``source`` (list both in ``update_fields``). Look
    values up with ``filter(<index>__in=model_field.candidates(value))``.
    """

    def __init__(self, *args: Any, source: str, **kwargs: Any) -> None:
        self.source = source
        kwargs.setdefault("max_length", BLIND_INDEX_LENGTH)
        kwargs.setdefault("null", True)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("editable", False)
        kwargs.setdefault("db_index", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        return name, path, args, kwargs

    def source_field(self) -> EncryptedTextField:
        source = self.model._meta.get_field(self.source)
        if not isinstance(source, EncryptedTextField):
            raise ImproperlyConfigured(f"{self.name}: {self.source} is not a sealed field.")
        return source

    def index_of(self, plaintext: Any, *, key_id: str | None = None) -> str:
        source = self.source_field()
        return blind_index(
            source.encode(plaintext),
            table=self.model._meta.db_table,
            column=str(source.column),
            key_id=key_id,
        )

    def candidates(self, plaintext: Any) -> list[str]:
        source = self.source_field()
        return blind_index_candidates(
            source.encode(plaintext), table=self.model._meta.db_table, column=str(source.column)
        )

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        source = self.source_field()
        held = model_instance.__dict__.get(source.attname)
        if isinstance(held, Sealed) and not held.opened:
            return getattr(model_instance, self.attname)  # the source was not touched
        plaintext = getattr(model_instance, source.attname)
        value = None if plaintext is None else self.index_of(plaintext)
        setattr(model_instance, self.attname, value)
        return value


# -- key rotation ---------------------------------------------------------------------


@dataclass
class ColumnRotation:
    """What one pass over a sealed column did."""

    label: str
    rotated: int = 0
    # Rows a concurrent write changed between the read and the conditional
    # UPDATE, or that another transaction held locked: left for the next pass.
    skipped: int = 0
    # Rows whose value does not open (unknown key, tampering): never rewritten.
    unreadable: list[int] = field(default_factory=list)


def sealed_columns() -> list[tuple[type[models.Model], EncryptedTextField]]:
    """Every sealed column of every installed model (found through the app registry)."""
    from django.apps import apps

    return [
        (model, model_field)
        for model in apps.get_models()
        for model_field in model._meta.concrete_fields
        if isinstance(model_field, EncryptedTextField)
    ]


def _blind_index_of(
    model: type[models.Model], source: EncryptedTextField
) -> BlindIndexField | None:
    for model_field in model._meta.concrete_fields:
        if isinstance(model_field, BlindIndexField) and model_field.source == source.name:
            return model_field
    return None


def sealed_column_rotate(
    *, model: type[models.Model], sealed_field: EncryptedTextField, batch_size: int = 500
) -> ColumnRotation:
    """Seals again, under the active key, every value of one column sealed under another.

    Rows are taken in primary-key order, ``batch_size`` at a time, one
    transaction per batch; each is rewritten with an UPDATE that also requires
    the column to still hold the ciphertext that was read, so a value written
    meanwhile is never overwritten (the write already used the active key, or
    the next pass takes it). On PostgreSQL the batch is read FOR UPDATE SKIP
    LOCKED: rows a writer holds are skipped, not waited for. Rows already under
    the active key are not selected, so a pass that stopped half-way is resumed
    by running it again.
    """
    from django.db import connection, transaction

    quote = connection.ops.quote_name
    table = model._meta.db_table
    pk_column = str(model._meta.pk.column) if model._meta.pk else "id"
    row_field = model._meta.get_field(sealed_field.row_id_field)
    if not isinstance(row_field, models.Field):
        raise ImproperlyConfigured(f"{sealed_field.row_id_field} is not a column.")
    row_column = str(row_field.column)
    column = str(sealed_field.column)
    index_field = _blind_index_of(model, sealed_field)
    active = envelope_prefix(keyring().active_id)
    lock = (
        " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    )
    select = (
        f"SELECT {quote(pk_column)}, {quote(row_column)}, {quote(column)} FROM {quote(table)} "  # noqa: S608 (names from the model)
        f"WHERE {quote(pk_column)} > %s AND {quote(column)} IS NOT NULL "
        f"AND substr({quote(column)}, 1, %s) <> %s ORDER BY {quote(pk_column)} LIMIT %s{lock}"
    )
    assignments = f"{quote(column)} = %s"
    if index_field is not None:
        assignments += f", {quote(str(index_field.column))} = %s"
    update = (
        f"UPDATE {quote(table)} SET {assignments} "  # noqa: S608 (names from the model)
        f"WHERE {quote(pk_column)} = %s AND {quote(column)} = %s"
    )
    result = ColumnRotation(label=f"{model._meta.label}.{sealed_field.name}")
    after: Any = 0 if isinstance(model._meta.pk, models.AutoField) else ""
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(select, [after, len(active), active, batch_size])
            rows = cursor.fetchall()
            if not rows:
                break
            for pk, row_id, envelope in rows:
                after = pk
                try:
                    text = unseal(envelope, table=table, column=column, row_id=str(row_id))
                except EncryptionError:
                    result.unreadable.append(pk)
                    continue
                values: list[Any] = [seal(text, table=table, column=column, row_id=str(row_id))]
                if index_field is not None:
                    values.append(blind_index(text, table=table, column=column))
                cursor.execute(update, [*values, pk, envelope])
                if cursor.rowcount == 1:
                    result.rotated += 1
                else:
                    result.skipped += 1
            if len(rows) < batch_size:
                break
    return result


def sealed_column_remaining(*, model: type[models.Model], sealed_field: EncryptedTextField) -> int:
    """How many values of the column are not sealed under the active key."""
    from django.db import connection

    quote = connection.ops.quote_name
    column = quote(str(sealed_field.column))
    active = envelope_prefix(keyring().active_id)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {quote(model._meta.db_table)} "  # noqa: S608 (names from the model)
            f"WHERE {column} IS NOT NULL AND substr({column}, 1, %s) <> %s",
            [len(active), active],
        )
        return int(cursor.fetchone()[0])
