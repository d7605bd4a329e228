"""Keyed pseudonyms: private ids never reach an output, a model file or the terminal in clear."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ceecore.privacy import KEY_ENV, Pseudonymiser

KEY = b"k" * 16 + b"secret"


def test_tokens_are_keyed_stable_and_contract_valid():
    one, again, other = Pseudonymiser(KEY), Pseudonymiser(KEY), Pseudonymiser(b"another key of 16+")
    ssn = b"123-45-6789"
    assert one.token(ssn) == again.token(ssn) != other.token(ssn)
    assert one.token(ssn).startswith("pn-") and len(one.token(ssn)) == 27
    assert b"6789" not in one.token(ssn).encode()
    assert one.fingerprint == again.fingerprint != other.fingerprint
    assert one.token(ssn) != one.token(b"123-45-6780")


@pytest.mark.parametrize("bad", [b"x" * 65, b"12\x0134", b"\xff\xfe"])
def test_an_id_the_contract_refuses_stays_refused_and_unreadable(bad):
    token = Pseudonymiser(KEY).token(bad)
    assert token.startswith("pn-invalid-") and len(token.encode()) > 64  # still too long to be a key
    assert bad not in token.encode()


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string(), pa.string_view(), pa.binary(),
                                  pa.dictionary(pa.int8(), pa.string()), pa.dictionary(pa.uint32(), pa.large_string())])
def test_any_text_layout_gives_the_same_tokens(kind):
    ids = pa.array(["123-45-6789", None, "", "123-45-6789", "98-7654321"])
    if pa.types.is_binary(kind):
        ids = ids.cast(pa.binary())
    elif pa.types.is_dictionary(kind):
        ids = ids.cast(kind.value_type).dictionary_encode().cast(kind)
    else:
        ids = ids.cast(kind)
    p = Pseudonymiser(KEY)
    tokens = p.column(ids).to_pylist()
    assert tokens == [p.token(b"123-45-6789"), None, "", p.token(b"123-45-6789"), p.token(b"98-7654321")]


def test_a_batch_keeps_its_other_columns_and_row_order():
    batch = pa.record_batch({"importer_id": ["a-1", "b-2"], "manufacturer_id": ["M1", None],
                             "entered_value": [1.0, 2.0]})
    out = Pseudonymiser(KEY).batch(batch)
    assert out.schema.names == batch.schema.names
    assert out.column(2).equals(batch.column(2))
    assert out.column(1).to_pylist()[1] is None
    assert "a-1" not in str(out.to_pydict())


def test_keys_are_checked(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymiser(b"short")
    short = tmp_path / "short.key"
    short.write_bytes(b"123")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymiser.from_file(short)
    with pytest.raises(ValueError, match="cannot read"):
        Pseudonymiser.from_file(tmp_path / "missing.key")
    huge = tmp_path / "huge.key"
    huge.write_bytes(b"x" * 10_000)
    with pytest.raises(ValueError, match="at most"):
        Pseudonymiser.from_file(huge)
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert Pseudonymiser.from_env() is None
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    assert Pseudonymiser.from_env().fingerprint == Pseudonymiser(KEY).fingerprint
