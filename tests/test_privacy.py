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


# ------------------------------------------------------------------ through the jobs

import pyarrow.compute as pc  # noqa: E402
import pyarrow.ipc as ipc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import ceecore  # noqa: E402
from ceecore import synth  # noqa: E402
from ceecore_cli.main import cli  # noqa: E402

ACCOUNT_TALLIES = ("acct", "acct_month", "acct_port", "ap_uv", "ap_days", "ap_earliest")
PRODUCT_TALLIES = ("uv_moments", "duty", "origin_lines", "claims")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("lines") / "lines.parquet"
    table = synth.generate_table(lines=20_000, accounts=300, seed=8)
    ids = table.column("importer_id").to_pylist()
    ids[7] = "123456789-toolong" * 5  # a malformed id: rejected, and not to be written anywhere
    table = table.set_column(table.schema.get_field_index("importer_id"), "importer_id", pa.array(ids))
    pq.write_table(table, path)
    key = path.parent / "key"
    key.write_bytes(KEY)
    return path, key, table


def _clear_ids(table: pa.Table) -> set[bytes]:
    ids = set(table.column("importer_id").drop_null().to_pylist()) | set(
        table.column("manufacturer_id").drop_null().to_pylist())
    return {i.encode() for i in ids if len(i) >= 6}


def _tally_keys(path: str) -> dict[str, set[int]]:
    table = ipc.open_file(pa.memory_map(path)).read_all()
    names = table.column("tally").combine_chunks().dictionary_decode().to_pylist()
    keys = table.column("key").to_pylist()
    out: dict[str, set[int]] = {}
    for name, key in zip(names, keys):
        out.setdefault(name, set()).add(key)
    return out


def test_run_writes_no_id_in_clear_and_scores_as_without(tmp_path, sample):
    path, _, table = sample
    clear = ceecore.run(path, tmp_path / "clear")
    private = ceecore.run(path, tmp_path / "private", pseudonyms=Pseudonymiser(KEY))
    ids = _clear_ids(table)
    for name in private.outputs:
        content = (tmp_path / "private" / name).read_bytes()
        found = [i for i in ids if i in content]
        assert not found, f"{name} holds ids in clear: {found[:3]}"
    assert any(i in (tmp_path / "clear" / "lines.parquet").read_bytes() for i in ids)  # the check can fail
    keys = [("entry_number", "ascending"), ("line_number", "ascending")]
    a = pq.read_table(tmp_path / "clear" / "lines.parquet").sort_by(keys)
    b = pq.read_table(tmp_path / "private" / "lines.parquet").sort_by(keys)
    assert a.column("score").equals(b.column("score"))
    assert b.column("importer_id").to_pylist()[0].startswith("pn-")
    accounts = pq.read_table(tmp_path / "private" / "accounts.parquet")
    assert set(accounts.column("importer_id").to_pylist()) == set(b.column("importer_id").to_pylist())
    rejects = pq.read_table(tmp_path / "private" / "rejects.parquet")
    assert rejects.num_rows == 1 and rejects.column("reason")[0].as_py() == "bad_importer_id"
    assert rejects.column("importer_id")[0].as_py().startswith("pn-invalid-")
    assert private.stats.rows_read == private.stats.accepted + private.stats.rejected == table.num_rows


def test_a_keyed_model_shares_no_account_key_with_a_clear_one(tmp_path, sample):
    path, _, _ = sample
    ceecore.fit(path).save(tmp_path / "clear.arrow")
    ceecore.fit(path, pseudonyms=Pseudonymiser(KEY)).save(tmp_path / "keyed.arrow")
    clear, keyed = _tally_keys(str(tmp_path / "clear.arrow")), _tally_keys(str(tmp_path / "keyed.arrow"))
    for name in ACCOUNT_TALLIES:
        assert clear[name] and not clear[name] & keyed[name], name
    for name in PRODUCT_TALLIES:
        assert clear[name] == keyed[name], name  # what has no id in it is the same


def test_scoring_needs_the_key_the_model_was_fitted_with(sample):
    path, _, table = sample
    keyed = ceecore.fit(path, pseudonyms=Pseudonymiser(KEY))
    clear = ceecore.fit(path)
    with pytest.raises(ValueError, match="fitted on pseudonymised ids"):
        ceecore.score(path, keyed)
    with pytest.raises(ValueError, match="another pseudonym key"):
        ceecore.Scorer(keyed, pseudonyms=Pseudonymiser(b"a different key!"))
    with pytest.raises(ValueError, match="fitted on ids in clear"):
        ceecore.score(path, clear, pseudonyms=Pseudonymiser(KEY))
    with pytest.raises(ValueError, match="different keys"):
        ceecore.merge_models([keyed, clear])
    assert ceecore.merge_models([keyed, keyed]).meta["pseudonym_key"] == Pseudonymiser(KEY).fingerprint
    batch = table.slice(0, 500)
    scored = ceecore.Scorer(keyed, pseudonyms=Pseudonymiser(KEY)).score(batch)
    whole = ceecore.score(batch, keyed, pseudonyms=Pseudonymiser(KEY)).lines
    assert scored.column("importer_id").to_pylist()[0].startswith("pn-")
    accepted = scored.filter(pc.is_null(scored.column("reject_reason")))
    assert accepted.column("score").to_pylist() == whole.column("score").to_pylist()


def test_the_cli_hides_ids_unless_asked_and_takes_the_key_from_a_file_or_the_environment(tmp_path, sample,
                                                                                        monkeypatch):
    path, key, table = sample
    monkeypatch.delenv(KEY_ENV, raising=False)
    runner = CliRunner()
    shown = runner.invoke(cli, ["run", str(path), "-o", str(tmp_path / "a")])
    assert shown.exit_code == 0, shown.output
    assert "(id hidden)" in shown.output and not any(i.decode() in shown.output for i in _clear_ids(table))
    asked = runner.invoke(cli, ["run", str(path), "-o", str(tmp_path / "b"), "--show-ids"])
    assert any(i.decode() in asked.output for i in _clear_ids(table))
    keyed = runner.invoke(cli, ["run", str(path), "-o", str(tmp_path / "c"), "--pseudonymise", str(key)])
    assert keyed.exit_code == 0 and "pn-" in keyed.output
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    fitted = runner.invoke(cli, ["fit", str(path), "-o", str(tmp_path / "m.arrow")])
    assert fitted.exit_code == 0, fitted.output
    monkeypatch.delenv(KEY_ENV)
    refused = runner.invoke(cli, ["score", str(path), "--model", str(tmp_path / "m.arrow"), "-o",
                                  str(tmp_path / "s.parquet")])
    assert refused.exit_code == 2 and "pseudonymised" in refused.output
    scored = runner.invoke(cli, ["score", str(path), "--model", str(tmp_path / "m.arrow"), "-o",
                                 str(tmp_path / "s.parquet"), "--pseudonymise", str(key)])
    assert scored.exit_code == 0, scored.output
    short = tmp_path / "short.key"
    short.write_bytes(b"x")
    bad = runner.invoke(cli, ["consolidate", str(path), "-o", str(tmp_path / "acc.parquet"), "--pseudonymise",
                              str(short)])
    assert bad.exit_code == 2 and "at least 16 bytes" in bad.output


def test_a_dictionary_of_string_views_is_tokenised():
    """(As polars Categoricals are in memory: pyarrow cannot decode such a dictionary as it is.)"""
    ids = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0, None], pa.uint32()),
                                         pa.array(["a-1", "b-2"], pa.string_view()))
    p = Pseudonymiser(KEY)
    assert p.column(ids).to_pylist() == [p.token(b"a-1"), p.token(b"b-2"), p.token(b"a-1"), None]
