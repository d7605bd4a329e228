"""Hostile input bytes (issue 11, findings 1-4): never a crash, every row accounted for.

- Arrow data whose buffers contradict each other (string offsets past the data,
  dictionary indices out of range, views into buffers that do not exist) is refused
  with a ContractError naming the source and the rows, before any kernel reads it;
  random bit flips of an IPC file give a clean result or a clean error, never a signal.
- Dictionary columns of every index and value type (polars Categoricals are string_view
  dictionaries with uint32 indices) read like plain text, rejects and outputs included.
- Values at the contract's limits never overflow a sum (tally sums saturate).
- Keys that are not UTF-8 (from binary columns) are rejected; no output holds bytes that
  are not UTF-8.
- Raw values not computed are null in the scored lines, not NaN.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ceecore
from ceecore import REJECT_REASONS, ContractError
from ceecore_cli.main import cli
from tests.processes import cli_env
from ceecore.synth import generate_table

FUZZ_EXAMPLES = int(os.environ.get("CEECORE_FUZZ_EXAMPLES", "40"))
KEYS = ("entry_number", "importer_id", "manufacturer_id")


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return generate_table(lines=400, accounts=20, seed=11)


@pytest.fixture(scope="module")
def model(table) -> ceecore.Model:
    return ceecore.fit(table)


def write_ipc(path, data: pa.Table | pa.RecordBatch) -> str:
    with ipc.new_file(path, data.schema) as writer:
        writer.write(data)
    return str(path)


def jobs(source, model: ceecore.Model, tmp_path) -> dict[str, tuple]:
    """Runs consolidate, score and run on ``source``; each one's row counts."""
    out = {"consolidate": ceecore.run_consolidation(source, rejects=tmp_path / "c-rejects.parquet").stats,
           "score": ceecore.score(source, model, rejects=tmp_path / "s-rejects.parquet").stats,
           "run": ceecore.run(source, tmp_path / "run").stats}
    for stats in out.values():
        assert stats.rows_read == stats.accepted + stats.rejected
    return {job: (s.rows_read, s.accepted, s.rejected, s.by_reason) for job, s in out.items()}


# ------------------------------------------------------------------ 1. corrupt buffers


def with_column(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, column)


def offsets_past_data(values: pa.Array, kind: pa.DataType = pa.string()) -> pa.Array:
    """A ``kind`` (string or large_string) array with an offset past its data buffer (in
    the middle: pyarrow's cheap validation checks only the last)."""
    values = values.cast(kind)
    width = np.int64 if kind == pa.large_string() else np.int32
    offsets = np.frombuffer(values.buffers()[1], width)[values.offset: values.offset + len(values) + 1].copy()
    offsets[len(values) // 2] += 1 << 20
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(offsets.tobytes()), values.buffers()[2]])


def index_out_of_range(values: pa.Array) -> pa.Array:
    encoded = values.dictionary_encode()
    indices = encoded.indices.to_numpy().copy()
    indices[len(indices) // 2] = 1 << 20
    return pa.DictionaryArray.from_arrays(pa.array(indices), encoded.dictionary, safe=False)


def view_into_missing_buffer(values: pa.Array) -> pa.Array:
    views = values.cast(pa.string_view())
    raw = np.frombuffer(views.buffers()[1], np.int32).reshape(-1, 4).copy()
    raw[len(values) // 2, [0, 2, 3]] = (20, 7, 0)  # 20 bytes stored out of line, in buffer 7
    return pa.Array.from_buffers(pa.string_view(), len(values), [None, pa.py_buffer(raw.tobytes()), *views.buffers()[2:]])


CORRUPTIONS = {"offset past the data": offsets_past_data, "dictionary index out of range": index_out_of_range,
               "view into a missing buffer": view_into_missing_buffer}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_buffers_in_a_file_are_a_contract_error_naming_file_and_rows(tmp_path, table, model, corrupt):
    bad = with_column(table, "importer_id", corrupt(table["importer_id"].combine_chunks()))
    path = write_ipc(tmp_path / "bad.arrow", bad)
    for job in (lambda: ceecore.run_consolidation(path), lambda: ceecore.score(path, model),
                lambda: ceecore.run(path, tmp_path / "out"), lambda: ceecore.fit(path)):
        with pytest.raises(ContractError, match=rf"bad.arrow: rows 0 to {table.num_rows - 1} are not valid Arrow"):
            job()
    assert not (tmp_path / "out" / "lines.parquet").exists()


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_buffers_in_memory_are_a_contract_error(table, model, corrupt):
    bad = with_column(table, "entry_number", corrupt(table["entry_number"].combine_chunks()))
    with pytest.raises(ContractError, match="not valid Arrow data"):
        ceecore.AccountBook(threads=1).update(bad, source="feed")
    with pytest.raises(ContractError, match="not valid Arrow data"):
        ceecore.Scorer(model).score(bad)
    with pytest.raises(ContractError, match="<Producer>: rows 0 to"):
        ceecore.consolidate(Producer(bad))
    for method in (ceecore.AccountBook.ingest, ceecore.AccountBook.parse):
        with pytest.raises(ContractError, match="feed: rows 0 to"):
            method(ceecore.AccountBook(threads=1), bad.to_batches()[0], source="feed")


def test_a_corrupt_account_state_is_refused(table):
    state = ceecore.AccountBook(threads=1)
    state.update(table)
    saved = state.to_arrow()
    bad = with_column(saved, "importer_id", offsets_past_data(saved["importer_id"].combine_chunks(), pa.large_string()))
    with pytest.raises(ValueError, match="account state: rows 0 to .* not valid Arrow data"):
        ceecore.AccountBook.from_arrow(bad)


class Producer:
    """A foreign Arrow producer: only the C stream interface."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self.table.__arrow_c_stream__(requested_schema)


def test_a_corrupt_column_the_job_does_not_read_is_ignored(table):
    extra = table.append_column("notes", offsets_past_data(table["importer_id"].combine_chunks()))
    assert ceecore.run_consolidation(extra).stats.accepted == table.num_rows


@pytest.mark.parametrize("job", ["consolidate", "fit", "score", "run"])
def test_the_cli_exits_2_on_corrupt_buffers(tmp_path, table, model, job):
    bad = with_column(table, "hts_code", index_out_of_range(table["hts_code"].combine_chunks()))
    path = write_ipc(tmp_path / "bad.arrow", bad)
    model.save(tmp_path / "model.arrow")
    out = tmp_path / "out"
    args = {"consolidate": ["-o", out / "accounts.parquet"], "fit": ["-o", out / "model.arrow"],
            "score": ["--model", tmp_path / "model.arrow", "-o", out / "lines.parquet"], "run": ["-o", out]}[job]
    result = CliRunner().invoke(cli, [job, path, *map(str, args)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "bad.arrow: rows 0 to" in result.stderr and "Traceback" not in result.output
    assert not out.exists() or not any(p.suffix in (".parquet", ".arrow", ".json") for p in out.rglob("*"))


@pytest.fixture(scope="module")
def ipc_bytes(table) -> bytearray:
    """A small valid IPC file with string, dictionary and view columns (a bytearray: its
    repr stays short in hypothesis's reports)."""
    mixed = with_column(table, "importer_id", table["importer_id"].combine_chunks().dictionary_encode())
    mixed = with_column(mixed, "port_code", mixed["port_code"].cast(pa.string_view()))
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, mixed.schema) as writer:
        writer.write_table(mixed, max_chunksize=150)
    return bytearray(sink.getvalue().to_pybytes())


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 8))
def test_bit_flipped_ipc_files_never_crash(tmp_path_factory, ipc_bytes, model, seed, flips):
    rng = random.Random(seed)
    data = bytearray(ipc_bytes)
    for _ in range(flips):
        k = rng.randrange(len(data))
        data[k] ^= 1 << rng.randrange(8)
    tmp = tmp_path_factory.mktemp("flip")
    path = tmp / "flipped.arrow"
    path.write_bytes(bytes(data))
    try:
        jobs(path, model, tmp)
    except ValueError:  # ContractError among them: one clear message
        pass
    try:
        flipped = ipc.open_file(pa.py_buffer(bytes(data))).read_all()
    except (OSError, pa.ArrowException):  # pyarrow cannot even open it
        return
    try:
        ceecore.Scorer(model).score(flipped)
    except ValueError:
        pass


def _file_bytes(table: pa.Table, kind: str) -> bytes:
    """``table`` as the bytes of one input format."""
    sink = pa.BufferOutputStream()
    if kind == "parquet":
        pq.write_table(table, sink, row_group_size=200)
    elif kind == "ipc-stream":
        with ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=150)
    elif kind == "feather-zstd":
        with ipc.new_file(sink, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
            writer.write_table(table, max_chunksize=150)
    else:
        pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


_SUFFIX = {"parquet": ".parquet", "ipc-stream": ".arrows", "feather-zstd": ".feather", "csv": ".csv"}


@pytest.fixture(scope="module")
def format_bytes(table) -> dict[str, bytes]:
    small = table.slice(0, 600).drop_columns(["scheme", "duty_lost"])
    return {kind: _file_bytes(small, kind) for kind in _SUFFIX}


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(sorted(_SUFFIX)), seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 8))
def test_bit_flipped_files_of_every_format_never_crash(tmp_path_factory, format_bytes, model, kind, seed, flips):
    """Parquet (its own checksums off by default: the decoder meets the flips), Arrow IPC
    streams, zstd-compressed IPC files and CSV: success or one clear error, rows kept."""
    rng = random.Random(seed)
    data = bytearray(format_bytes[kind])
    for _ in range(flips):
        k = rng.randrange(len(data))
        data[k] ^= 1 << rng.randrange(8)
    tmp = tmp_path_factory.mktemp("flip")
    path = tmp / f"flipped{_SUFFIX[kind]}"
    path.write_bytes(bytes(data))
    try:
        jobs(path, model, tmp)
    except ValueError:  # ContractError among them: one clear message
        pass


# ------------------------------------------------------------------ 2. dictionaries of every kind


def dictionary_columns(table: pa.Table, values: pa.DataType, index: pa.DataType) -> pa.Table:
    for name in ("entry_number", "importer_id", "port_code", "hts_code", "country_of_origin", "manufacturer_id"):
        encoded = table[name].combine_chunks().dictionary_encode()
        column = pa.DictionaryArray.from_arrays(encoded.indices.cast(index), encoded.dictionary.cast(values))
        table = with_column(table, name, column)
    return table


def with_rejects(table: pa.Table) -> pa.Table:
    """Every 7th row without an entered value, so that every job has rejects to write."""
    value = table["entered_value"].to_numpy().copy()
    return with_column(table, "entered_value", pa.array(value, mask=np.arange(len(value)) % 7 == 3))


DICTIONARIES = [(v, i) for v in (pa.string(), pa.large_string(), pa.string_view(), pa.binary(), pa.binary_view())
                for i in (pa.int8(), pa.uint8(), pa.int16(), pa.uint16(), pa.int32(), pa.uint32(), pa.int64(),
                          pa.uint64())]


@pytest.mark.parametrize("values,index", DICTIONARIES, ids=[f"{v}-{i}" for v, i in DICTIONARIES])
def test_dictionaries_of_any_index_and_value_type_read_as_plain_text(tmp_path, table, model, values, index):
    plain = with_rejects(table.slice(0, 120))  # fewer distinct values than int8 indices reach
    encoded = dictionary_columns(plain, values, index)
    assert ceecore.Scorer(model).score(encoded).equals(ceecore.Scorer(model).score(plain))
    want = ceecore.run_consolidation(plain, rejects=tmp_path / "want.parquet")
    got = ceecore.run_consolidation(encoded, rejects=tmp_path / "got.parquet")
    assert got.book.to_arrow().equals(want.book.to_arrow()) and got.accounts.equals(want.accounts)
    assert pq.read_table(tmp_path / "got.parquet").equals(pq.read_table(tmp_path / "want.parquet"))


def test_polars_categoricals_in_memory_and_in_files(tmp_path, table, model):
    plain = with_rejects(table)
    frame = pl.from_arrow(plain).with_columns(pl.col(c).cast(pl.Categorical) for c in (
        "entry_number", "importer_id", "port_code", "hts_code", "country_of_origin", "manufacturer_id"))
    assert pa.types.is_dictionary(frame.to_arrow().schema.field("importer_id").type)
    frame.write_ipc(tmp_path / "cat.arrow")
    frame.write_parquet(tmp_path / "cat.parquet")
    want = jobs(plain, model, tmp_path / "plain")
    want_rejects = pq.read_table(tmp_path / "plain" / "c-rejects.parquet").drop_columns(["source"])
    want_lines = pq.read_table(tmp_path / "plain" / "run" / "lines.parquet")
    for name, source in {"frame": frame, "ipc": tmp_path / "cat.arrow", "parquet": tmp_path / "cat.parquet",
                         "lazy": frame.lazy()}.items():
        out = tmp_path / name
        assert jobs(source, model, out) == want, name
        assert pq.read_table(out / "c-rejects.parquet").drop_columns(["source"]).equals(want_rejects), name
        assert pq.read_table(out / "run" / "lines.parquet").equals(want_lines), name
    assert ceecore.Scorer(model).score(frame).equals(ceecore.Scorer(model).score(plain))


# ------------------------------------------------------------------ 3. sums at the contract's limits


def test_a_hundred_thousand_lines_at_the_largest_value_fit_and_run(tmp_path):
    n = 100_000
    days = np.full(n, (dt.date(2024, 1, 1) - dt.date(1970, 1, 1)).days, np.int32)
    lines = pa.table({
        "entry_number": pa.array([f"E{i:07d}" for i in range(n)]), "line_number": np.ones(n, np.int64),
        "importer_id": pa.array(["IMP1"] * n), "port_code": pa.array(["2704"] * n),
        "entry_date": pa.array(days, pa.date32()), "hts_code": pa.array(["8511100000"] * n),
        "country_of_origin": pa.array(["CN"] * n), "entered_value": np.full(n, 1e12),
        "duty_paid": np.full(n, 1e12), "quantity": np.full(n, 1e-300),  # the largest unit value too
    })
    model = ceecore.fit(lines)
    assert model.meta["lines"] == n
    value, duty = model.baselines.tallies["duty"].items()[1][0]
    assert value == duty == 2**63 - 1  # 1e19 cents saturate; every count stays exact
    summary = ceecore.run(lines, tmp_path / "run")
    assert summary.stats.accepted == n and summary.stats.rejected == 0
    accounts = pq.read_table(tmp_path / "run" / "accounts.parquet")
    assert accounts["entered_value"].to_pylist() == [pytest.approx(1e17)]  # 128-bit cents: exact
    scored = pq.read_table(tmp_path / "run" / "lines.parquet")
    assert scored.num_rows == n and not np.isnan(scored["score"].to_numpy()).any()


def test_a_model_of_saturated_sums_over_several_products_saves_loads_and_scores(tmp_path):
    """Whatever the contract accepts, fit saves a model that score loads: here two
    products' cents each saturate, and their sum over keys would pass 64 bits."""
    n = 200_000
    days = np.full(n, (dt.date(2024, 1, 1) - dt.date(1970, 1, 1)).days, np.int32)
    lines = pa.table({
        "entry_number": pa.array([f"E{i:07d}" for i in range(n)]), "line_number": np.ones(n, np.int64),
        "importer_id": pa.array(["IMP1"] * n), "port_code": pa.array(["2704"] * n),
        "entry_date": pa.array(days, pa.date32()), "hts_code": pa.array(["8511100000", "8512100000"] * (n // 2)),
        "country_of_origin": pa.array(["CN"] * n), "entered_value": np.full(n, 1e12), "duty_paid": np.full(n, 1e12),
    })
    ceecore.fit(lines).save(tmp_path / "model.arrow")
    model = ceecore.Model.load(tmp_path / "model.arrow")
    assert (model.baselines.tallies["duty"].items()[1] == 2**63 - 1).all()
    assert ceecore.score(lines, model).lines.num_rows == n


# ------------------------------------------------------------------ 4. keys that are not UTF-8

NOT_UTF8 = [b"\xff\xfe", b"ACME\x80", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
            b"\xe2\x82", b"Z\xc3", b"\xf8\x88\x80\x80\x80"]


def binary_keys(table: pa.Table, column: str, bad: bytes, rows: np.ndarray) -> pa.Table:
    values = [v.encode() if v is not None else None for v in table[column].to_pylist()]
    for r in rows:
        values[r] = bad
    return with_column(table, column, pa.array(values, pa.binary()))


@pytest.mark.parametrize("column", KEYS)
@pytest.mark.parametrize("bad", NOT_UTF8, ids=[b.hex() for b in NOT_UTF8])
def test_keys_that_are_not_utf8_are_rejected(table, column, bad):
    rows = np.arange(3, table.num_rows, 50)
    codes = ceecore.AccountBook(threads=1).update(binary_keys(table, column, bad, rows))
    assert [REJECT_REASONS[c] for c in codes[rows]] == [f"bad_{column}"] * len(rows)
    assert (np.delete(codes, rows) == 0).all()


@settings(max_examples=200, deadline=None)
@given(key=st.one_of(st.binary(min_size=1, max_size=70), st.text(min_size=1, max_size=30).map(str.encode)))
def test_a_key_is_accepted_exactly_when_it_is_short_utf8_without_control_characters(table, key):
    one = binary_keys(table.slice(0, 1), "importer_id", key, np.array([0]))
    try:
        text = key.decode("utf-8")
        ok = len(key) <= 64 and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)
    except UnicodeDecodeError:
        ok = False
    code = ceecore.AccountBook(threads=1).update(one)[0]
    assert REJECT_REASONS[code] == ("ok" if ok else "bad_importer_id")


def test_outputs_of_binary_keys_are_utf8_and_join(tmp_path, table):
    rows = np.arange(5, table.num_rows, 40)
    bad = binary_keys(binary_keys(table, "importer_id", b"IMP\xff", rows), "entry_number", b"E\xc3", rows + 1)
    summary = ceecore.run(bad, tmp_path / "run")
    assert summary.stats.by_reason == {"bad_importer_id": len(rows), "bad_entry_number": len(rows)}
    for name in ("lines", "accounts", "worklist", "rejects"):
        pl.read_parquet(tmp_path / "run" / f"{name}.parquet")  # polars refuses text that is not UTF-8
    lines = pl.read_parquet(tmp_path / "run" / "lines.parquet")
    accounts = pl.read_parquet(tmp_path / "run" / "accounts.parquet")
    assert set(lines["importer_id"]) == set(accounts["importer_id"])
    rejects = pl.read_parquet(tmp_path / "run" / "rejects.parquet")
    assert (rejects.filter(pl.col("reason") == "bad_importer_id")["importer_id"] == "IMP\ufffd").all()


def test_bytes_that_are_not_utf8_in_a_number_column_are_a_bad_value(table):
    rows = np.arange(2, table.num_rows, 30)
    text = [str(v).encode() for v in table["entered_value"].to_pylist()]
    for r in rows:
        text[r] = b"12\xff"
    codes = ceecore.AccountBook(threads=1).update(with_column(table, "entered_value", pa.array(text, pa.binary())))
    assert set(np.flatnonzero(codes)) == set(rows) and {REJECT_REASONS[c] for c in codes[rows]} == {"bad_entered_value"}


def test_learning_reads_keys_in_every_layout(table):
    """The outcome histories hash text the kernel reads in any layout: views (which pyarrow
    cannot take from) and binary entry numbers that are not UTF-8 (the filer derived from them)."""
    entry = [v.encode() for v in table["entry_number"].to_pylist()]
    entry[5] = b"E\xff1"
    cases = {
        "views": with_column(with_column(table, "manufacturer_id", table["manufacturer_id"].cast(pa.string_view())),
                             "filer_code", table["filer_code"].cast(pa.string_view())),
        "binary entry, derived filer": with_column(table, "entry_number", pa.array(entry, pa.binary()))
        .drop_columns(["filer_code"]),
    }
    plain = {"views": table, "binary entry, derived filer": table.drop_columns(["filer_code"])}
    for name, data in cases.items():
        got = ceecore.Scorer(ceecore.fit(data, labels="violation")).score(data)
        want = ceecore.Scorer(ceecore.fit(plain[name], labels="violation")).score(plain[name])
        if name == "views":
            assert got.equals(want), name
        else:  # the bad entry number is rejected; the other lines score as before
            assert got.column("reject_reason")[5].as_py() == "bad_entry_number"
            assert got.num_rows == want.num_rows


# ------------------------------------------------------------------ raw values not computed


def test_raw_values_not_computed_are_null_not_nan(tmp_path, table, model):
    no_quantity = table.drop_columns(["quantity", "gross_weight_kg"])  # no unit values at all
    scored = ceecore.Scorer(model).score(with_rejects(no_quantity))
    raw = [name for name in scored.schema.names if name in ceecore.scoring.RAW_VALUES]
    assert raw
    for name in raw:
        values = scored.column(name)
        assert not pa.compute.any(pa.compute.is_nan(values)).as_py(), name
    assert scored.column("unit_value_z").null_count == scored.num_rows
    for name in model.config.enabled:  # strengths are always computed: 0 when an indicator cannot say
        assert scored.column(name).null_count == scored.column("score").null_count, name
        assert not pa.compute.any(pa.compute.is_nan(scored.column(name))).as_py(), name
    ceecore.run(table, tmp_path / "run")
    lines = pl.read_parquet(tmp_path / "run" / "lines.parquet")
    assert all(lines[name].is_nan().sum() == 0 for name in raw)


# ------------------------------------------------------------------ 5. files that are not files


def test_fifos_and_devices_are_refused_not_read(tmp_path, table, model):
    """A FIFO or a device named as an input, a model or an option file is refused with
    exit code 2: reading one would block (a FIFO nobody writes) or never end (/dev/zero)."""
    env = cli_env()
    lines = tmp_path / "lines.parquet"
    pq.write_table(table, lines)
    model.save(tmp_path / "m.arrow")
    os.mkfifo(tmp_path / "fifo.parquet")
    cases = [["fit", "fifo.parquet", "-o", "x.arrow"],
             ["score", "lines.parquet", "--model", "fifo.parquet", "-o", "x.parquet"],
             ["consolidate", "lines.parquet", "-o", "x.parquet", "--pseudonymise", "/dev/zero"],
             ["consolidate", "lines.parquet", "-o", "x.parquet", "--mapping", "/dev/zero"]]
    for args in cases:
        proc = subprocess.run([sys.executable, "-m", "ceecore", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == 2 and "not a regular file" in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    with pytest.raises(ContractError, match="not a regular file"):
        ceecore.run_consolidation(str(tmp_path / "fifo.parquet"))
    assert not list(tmp_path.glob("x*"))


def test_csv_with_lone_carriage_returns_reads_like_newlines(tmp_path, table):
    """Lines ended by a lone CR (old Mac files) read as the parser reads them; the header
    reader used to stop on them with a csv.Error traceback."""
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, tmp_path / "lf.csv")
    (tmp_path / "cr.csv").write_bytes((tmp_path / "lf.csv").read_bytes().replace(b"\n", b"\r"))
    (tmp_path / "crlf.csv").write_bytes((tmp_path / "lf.csv").read_bytes().replace(b"\n", b"\r\n"))
    want = ceecore.run_consolidation(str(tmp_path / "lf.csv")).stats
    for name in ("cr.csv", "crlf.csv"):
        got = ceecore.run_consolidation(str(tmp_path / name)).stats
        assert (got.rows_read, got.accepted, got.by_reason) == (want.rows_read, want.accepted, want.by_reason)
