"""Keyed pseudonyms for private identifiers.

Importer numbers are often Social Security or Employer Identification numbers, and a
plain hash of one is reversed by trying every number. With a secret key, the importer
and manufacturer ids of every batch are replaced at intake by keyed tokens
(a keyed BLAKE2b MAC of the id, 96 bits in hex): everything downstream (the
kernels' hashes, model files, lines, accounts, worklists, rejects) sees only tokens,
which are stable for one key and cannot be reversed or recomputed without it.

What is not protected: other columns (entry numbers carry the filer code, ports, goods
and values stay in clear), the frequency of a token (an importer with many lines stays
the one with many lines), and anyone who holds the key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ceecore.schema import is_text

__all__ = ["KEY_ENV", "PRIVATE_COLUMNS", "PSEUDONYM_KEY", "Pseudonymiser", "check_pseudonyms"]

KEY_ENV = "CEECORE_PSEUDONYM_KEY"
PRIVATE_COLUMNS = ("importer_id", "manufacturer_id")
PSEUDONYM_KEY = "pseudonym_key"  # model metadata: the fingerprint of the key, when ids were pseudonymised
MIN_KEY_BYTES = 16
_MAX_KEY_FILE_BYTES = 4096
_MAX_ID_BYTES = 64     # longer ids break the data contract (as in the account kernel)
_CONTROL = bytes([*range(0x20), 0x7F])


class Pseudonymiser:
    """Replaces private ids by keyed tokens: ``pn-`` and 24 hex digits (96 bits).

    Nulls and empty strings stay as they are (they are rejected as missing). An id the
    data contract refuses (over 64 bytes, control characters, not UTF-8) becomes a token
    the contract refuses too (``pn-invalid-`` and 64 hex digits), so the line is still
    rejected as ``bad_<column>`` and nothing of its id is written anywhere.
    """

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a pseudonym key must be at least {MIN_KEY_BYTES} bytes")
        # Keyed BLAKE2b is a MAC by design (RFC 7693), as strong here as HMAC-SHA256 and
        # 3x faster; keys over its 64-byte limit are hashed down first.
        self._mac = hashlib.blake2b(key=key if len(key) <= 64 else hashlib.blake2b(key).digest(), digest_size=32)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Pseudonymiser:
        """The key is the file's bytes (say ``head -c 32 /dev/urandom > key``)."""
        where = Path(path)
        try:
            if where.stat().st_size > _MAX_KEY_FILE_BYTES:
                raise ValueError(f"{where}: a pseudonym key file holds at most {_MAX_KEY_FILE_BYTES} bytes")
            key = where.read_bytes()
        except OSError as exc:
            raise ValueError(f"{where}: cannot read the pseudonym key: {exc.strerror or exc}") from exc
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"{where}: a pseudonym key must be at least {MIN_KEY_BYTES} bytes")
        return cls(key)

    @classmethod
    def from_env(cls) -> Pseudonymiser | None:
        """The key in ``CEECORE_PSEUDONYM_KEY`` (as UTF-8 bytes), if set."""
        value = os.environ.get(KEY_ENV)
        if not value:
            return None
        if len(value.encode()) < MIN_KEY_BYTES:
            raise ValueError(f"{KEY_ENV}: a pseudonym key must be at least {MIN_KEY_BYTES} bytes")
        return cls(value.encode())

    @property
    def fingerprint(self) -> str:
        """Names the key without revealing it: models record it, so that lines are never
        scored against a model fitted under another key (their tokens would not match)."""
        mac = self._mac.copy()
        mac.update(b"ceecore key fingerprint")
        return mac.hexdigest()[:16]

    def token(self, value: bytes) -> str:
        """The token of one id's bytes."""
        mac = self._mac.copy()
        mac.update(value)
        digest = mac.hexdigest()
        return "pn-" + digest[:24] if _acceptable(value) else "pn-invalid-" + digest

    def column(self, array: pa.Array | pa.ChunkedArray) -> pa.Array:
        """A text column with each id replaced by its token (each distinct id keyed once;
        a dictionary column's ids are its dictionary's)."""
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if pa.types.is_dictionary(array.type):
            return pa.DictionaryArray.from_arrays(array.indices, self.column(array.dictionary)).dictionary_decode()
        if not is_text(array.type):
            array = array.cast(pa.string())  # ids read as numbers (CSV without a schema)
        encoded = pc.dictionary_encode(array.cast(pa.large_binary()))
        tokens = pa.array(["" if v == b"" else self.token(v) for v in encoded.dictionary.to_pylist()], pa.string())
        return tokens.take(encoded.indices)

    def batch(self, batch: pa.RecordBatch, columns: tuple[str, ...] = PRIVATE_COLUMNS) -> pa.RecordBatch:
        """``batch`` with its private columns (those of ``columns`` it has) tokenised."""
        names = batch.schema.names
        if not any(name in names for name in columns):
            return batch
        arrays = [self.column(batch.column(i)) if name in columns else batch.column(i)
                  for i, name in enumerate(names)]
        fields = [pa.field(name, pa.string()) if name in columns else batch.schema.field(i)
                  for i, name in enumerate(names)]
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, metadata=batch.schema.metadata))


def _acceptable(value: bytes) -> bool:
    """Whether the data contract takes ``value`` as an id: UTF-8, at most 64 bytes, no
    control characters."""
    if len(value) > _MAX_ID_BYTES or len(value.translate(None, _CONTROL)) != len(value):
        return False
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_pseudonyms(meta: Mapping[str, Any], pseudonyms: Pseudonymiser | None, where: str = "the model") -> None:
    """Refuses to score with another key than the model was fitted with (or with one where
    it had none, or none where it had one): the lines' tokens would match no account."""
    fitted = meta.get(PSEUDONYM_KEY)
    given = pseudonyms.fingerprint if pseudonyms is not None else None
    if fitted == given:
        return
    if fitted is None:
        raise ValueError(f"{where} was fitted on ids in clear; score without a pseudonym key, or refit with it")
    if given is None:
        raise ValueError(f"{where} was fitted on pseudonymised ids (key {fitted}); give the same key "
                         f"(--pseudonymise KEYFILE or {KEY_ENV})")
    raise ValueError(f"{where} was fitted with another pseudonym key ({fitted}, not {given}); give the same key")
