"""ceecore.io: reading every supported source, and atomic writers.

Sources: Parquet, Arrow IPC (file and stream), CSV (plain, gzipped, TSV), directories,
lists, and in-memory Arrow producers; chunk positions; text columns. Writers:
``write_table`` / ``ParquetSink`` / ``atomic_path`` never leave a partial target or a
temporary file behind, and a killed ``ceecore consolidate`` leaves either nothing or
the previous complete file.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import ceecore.io as cio
from ceecore.io import ParquetSink, Source, atomic_path, open_sources, write_table
from ceecore.pipeline import REJECT_SCHEMA, run_consolidation
from ceecore.synth import generate_table
from ceecore.schema import ContractError

N = 3_000


@pytest.fixture(scope="module")
def lines() -> pa.Table:
    """Generated lines without nullable text (CSV cannot tell an empty string from null)."""
    return generate_table(lines=N, accounts=100, seed=1).select([
        "entry_number", "line_number", "importer_id", "port_code", "entry_date", "hts_code", "country_of_origin",
        "entered_value", "duty_paid", "duty_rate", "quantity", "gross_weight_kg", "manufacturer_id"])


@pytest.fixture(scope="module")
def text_names(lines) -> list[str]:
    return [f.name for f in lines.schema if pa.types.is_string(f.type)]


def read(sources, **kw) -> tuple[list[Source], list]:
    resolved, chunks = open_sources(sources, **kw)
    return resolved, list(chunks)


def table_of(chunks) -> pa.Table:
    return pa.Table.from_batches([c.batch for c in chunks])


def assert_positions(chunks) -> None:
    """first_row restarts at 0 for every source and advances by each batch's rows."""
    expected: dict[str, int] = {}
    for c in chunks:
        assert c.first_row == expected.get(c.source, 0), (c.source, c.first_row)
        expected[c.source] = c.first_row + c.batch.num_rows


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def tmp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*.tmp"))


# ------------------------------------------------------------------------ file formats


def test_parquet(tmp_path, lines):
    path = tmp_path / "lines.parquet"
    pq.write_table(lines, path, row_group_size=1000)
    sources, chunks = read(path, batch_rows=700)
    assert sources == [Source(str(path), path, N)]  # row count known up front from metadata
    assert [c.batch.num_rows for c in chunks] == [700, 700, 700, 700, 200]
    assert [c.first_row for c in chunks] == [0, 700, 1400, 2100, 2800]
    assert {c.source for c in chunks} == {str(path)}
    assert table_of(chunks).equals(lines)


@pytest.mark.parametrize("suffix", [".pq", ".PARQUET"])
def test_parquet_other_suffixes(tmp_path, lines, suffix):
    path = tmp_path / f"lines{suffix}"
    pq.write_table(lines, path)
    assert table_of(read(path)[1]).equals(lines)


def test_polars_lazy_frame_runs_a_batch_at_a_time_for_the_wanted_columns(tmp_path, lines):
    pl = pytest.importorskip("polars")
    path = tmp_path / "lines.parquet"
    pq.write_table(lines, path)
    sources, chunks = read(pl.scan_parquet(path), batch_rows=700, columns=["entry_number", "importer_id"])
    assert sources[0].name == "<LazyFrame>" and sources[0].rows is None
    assert all(c.batch.num_rows <= 700 for c in chunks) and sum(c.batch.num_rows for c in chunks) == N
    got = table_of(chunks)
    assert got.column_names == ["entry_number", "importer_id"]  # projection pushed down
    assert got.cast(lines.select(got.column_names).schema).equals(lines.select(got.column_names))
    assert run_consolidation(pl.scan_parquet(path)).accounts.equals(run_consolidation(path).accounts)


@pytest.mark.parametrize("suffix", [".arrow", ".ipc", ".feather"])
def test_arrow_ipc_file(tmp_path, lines, suffix):
    path = tmp_path / f"lines{suffix}"
    with ipc.new_file(path, lines.schema) as w:
        w.write_table(lines, max_chunksize=800)
    sources, chunks = read(str(path))
    assert [s.name for s in sources] == [str(path)]
    assert sources[0].rows is None
    assert [c.batch.num_rows for c in chunks] == [800, 800, 800, 600]
    assert [c.first_row for c in chunks] == [0, 800, 1600, 2400]
    assert table_of(chunks).equals(lines)


@pytest.mark.parametrize("suffix", [".arrows", ".arrow", ".ipc"])
def test_arrow_ipc_stream(tmp_path, lines, suffix):
    # The stream format is recognised by content, also under a "file" suffix.
    path = tmp_path / f"lines{suffix}"
    with ipc.new_stream(path, lines.schema) as w:
        w.write_table(lines, max_chunksize=1000)
    _, chunks = read(path)
    assert [c.first_row for c in chunks] == [0, 1000, 2000]
    assert table_of(chunks).equals(lines)


def test_feather_v2_compressed(tmp_path, lines):
    import pyarrow.feather as feather

    path = tmp_path / "lines.feather"
    feather.write_feather(lines, path, compression="zstd", chunksize=1234)
    _, chunks = read(path)
    assert_positions(chunks)
    assert table_of(chunks).equals(lines)


def test_csv(tmp_path, lines, text_names):
    path = tmp_path / "lines.csv"
    pacsv.write_csv(lines, path)
    sources, chunks = read(path, text_columns=text_names)
    assert sources[0].rows is None
    assert_positions(chunks)
    got = table_of(chunks)
    assert all(pa.types.is_string(got.schema.field(n).type) for n in text_names)
    assert got.cast(lines.schema).equals(lines)


def test_gzipped_csv(tmp_path, lines, text_names):
    plain = tmp_path / "plain.csv"
    pacsv.write_csv(lines, plain)
    path = tmp_path / "lines.csv.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    _, chunks = read(path, text_columns=text_names)
    assert table_of(chunks).cast(lines.schema).equals(lines)


@pytest.mark.parametrize("name", ["lines.tsv", "lines.tsv.gz"])
def test_tsv(tmp_path, lines, text_names, name):
    path = tmp_path / name
    opts = pacsv.WriteOptions(delimiter="\t")
    if name.endswith(".gz"):
        with pa.output_stream(str(path), compression="gzip") as out:
            pacsv.write_csv(lines, out, write_options=opts)
    else:
        pacsv.write_csv(lines, path, write_options=opts)
    _, chunks = read(path, text_columns=text_names)
    got = table_of(chunks)
    assert got.column_names == lines.column_names  # split on tabs, not commas
    assert got.cast(lines.schema).equals(lines)


def test_csv_first_row_across_blocks(tmp_path):
    # More than one 16 MiB CSV block: positions must keep counting across blocks.
    n = 400_000
    ids = np.arange(n)
    table = pa.table({"k": pa.array(ids), "pad": pa.array(np.full(n, "x" * 40, dtype=object), pa.string())})
    path = tmp_path / "wide.csv"
    pacsv.write_csv(table, path)
    assert path.stat().st_size > 16 << 20
    _, chunks = read(path)
    assert len(chunks) > 1
    assert_positions(chunks)
    for c in chunks:  # the first row of each chunk is row first_row of the file
        assert c.batch.column(0)[0].as_py() == c.first_row
    assert sum(c.batch.num_rows for c in chunks) == n


# ------------------------------------------------------------------------ text columns


def test_text_columns_keep_leading_zeros(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("hts_code,port_code,importer_id,n\n0101,0010,00-0000001AB,5\n8511,3001,12-3456789CD,6\n")
    _, chunks = read(path, text_columns=["hts_code", "port_code", "not_in_file"])
    batch = chunks[0].batch
    assert batch.schema.field("hts_code").type == pa.string()
    assert batch.column("hts_code").to_pylist() == ["0101", "8511"]
    assert batch.column("port_code").to_pylist() == ["0010", "3001"]
    assert batch.schema.field("n").type == pa.int64()  # others still inferred
    # Without text_columns the codes would be numbers and lose their zeros.
    _, inferred = read(path)
    assert inferred[0].batch.column("hts_code").to_pylist() == [101, 8511]


def test_text_columns_gzipped_and_unparseable_numbers(tmp_path):
    path = tmp_path / "codes.csv.gz"
    path.write_bytes(gzip.compress(b"hts_code,entered_value\n0101,12.5\n0202,\"12,x\"\n"))
    _, chunks = read(path, text_columns=["hts_code", "entered_value"])
    batch = chunks[0].batch
    assert batch.column("hts_code").to_pylist() == ["0101", "0202"]
    assert batch.column("entered_value").to_pylist() == ["12.5", "12,x"]  # a reject later, not a failed read


def test_text_columns_do_not_touch_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"n": [1, 2]}), path)
    _, chunks = read(path, text_columns=["n"])
    assert chunks[0].batch.schema.field("n").type == pa.int64()


# ------------------------------------------------------------------------ directories, lists


def test_directory_recursive_sorted_and_filtered(tmp_path, lines):
    root = tmp_path / "in"
    parts = {
        "b.parquet": lines.slice(0, 500),
        "a/z.arrow": lines.slice(500, 500),
        "a/c/y.csv": lines.slice(1000, 500),
        "a.csv": lines.slice(1500, 500),
        "d/e/f.feather": lines.slice(2000, 1000),
    }
    for rel, part in parts.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".parquet":
            pq.write_table(part, p)
        elif p.suffix in (".arrow", ".feather"):
            with ipc.new_file(p, part.schema) as w:
                w.write_table(part)
        else:
            pacsv.write_csv(part, p)
    # Unrelated files, including a writer's leftover temporary file, are ignored.
    (root / "notes.txt").write_text("hello")
    (root / "a" / "data.json").write_text("{}")
    (root / "README").write_text("x")
    (root / "a" / ".out.parquet.k2j3.tmp").write_bytes(b"PAR1 partial")
    (root / "empty_dir").mkdir()

    sources, chunks = read(root, text_columns=[f.name for f in lines.schema if pa.types.is_string(f.type)])
    expected = sorted(root / rel for rel in parts)
    assert [s.name for s in sources] == [str(p) for p in expected]
    assert [s.obj for s in sources] == expected
    # Chunks come source by source, in that order, each starting at row 0.
    order = list(dict.fromkeys(c.source for c in chunks))
    assert order == [str(p) for p in expected]
    assert_positions(chunks)
    assert sum(c.batch.num_rows for c in chunks) == N
    by_source = {s: pa.Table.from_batches([c.batch for c in chunks if c.source == s]) for s in order}
    for rel, part in parts.items():
        assert by_source[str(root / rel)].cast(lines.schema).equals(part)


def test_directory_without_data_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("x")
    with pytest.raises(ContractError, match="directory holds no"):
        open_sources(tmp_path)


def test_list_of_paths_keeps_given_order(tmp_path, lines):
    a, b = tmp_path / "b.parquet", tmp_path / "a.parquet"
    pq.write_table(lines.slice(0, 1000), a)
    pq.write_table(lines.slice(1000), b)
    sources, chunks = read([str(a), b])
    assert [s.name for s in sources] == [str(a), str(b)]
    assert [s.rows for s in sources] == [1000, N - 1000]
    assert_positions(chunks)
    assert table_of(chunks).equals(lines)


def test_list_mixing_paths_directories_and_arrow(tmp_path, lines):
    d = tmp_path / "dir"
    d.mkdir()
    pq.write_table(lines.slice(0, 1000), d / "x.parquet")
    f = tmp_path / "f.parquet"
    pq.write_table(lines.slice(1000, 1000), f)
    sources, chunks = read((d, [f], lines.slice(2000)), batch_rows=400)
    assert [s.name for s in sources] == [str(d / "x.parquet"), str(f), "<table>"]
    assert_positions(chunks)
    assert table_of(chunks).equals(lines)


def test_missing_and_unknown_paths(tmp_path):
    with pytest.raises(ContractError, match="no such file") as e:
        open_sources(tmp_path / "nope.parquet")
    assert str(tmp_path / "nope.parquet") in str(e.value)
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(ContractError, match="unknown file type"):
        open_sources(odd)


def test_corrupt_parquet_names_the_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ContractError, match="bad.parquet"):
        open_sources(bad)


def test_malformed_csv_line_is_a_null_row_in_its_place(tmp_path):
    """(Issue 11) a ragged line does not stop the read: an all-null row marked malformed
    stands in its place (see tests/test_output_sets.py for the reject rows)."""
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4,5\n6,7\n")
    _, chunks = open_sources(path)
    (chunk,) = list(chunks)
    assert chunk.batch.to_pydict() == {"a": [1, None, 6], "b": [2, None, 7]}
    assert chunk.malformed.tolist() == [1]


def test_not_arrow_data():
    with pytest.raises(TypeError, match="cannot read int"):
        open_sources(42)


def test_sources_are_lazy(tmp_path, lines):
    path = tmp_path / "x.arrow"
    with ipc.new_file(path, lines.schema) as w:
        w.write_table(lines)
    sources, chunks = open_sources(path)
    path.unlink()  # nothing has been read yet
    with pytest.raises(ContractError, match="x.arrow"):
        next(chunks)


# ------------------------------------------------------------------------ in-memory Arrow


def test_table(lines):
    sources, chunks = read(lines, batch_rows=1000)
    assert [(s.name, s.rows) for s in sources] == [("<table>", N)]
    assert [c.first_row for c in chunks] == [0, 1000, 2000]
    assert {c.source for c in chunks} == {"<table>"}
    assert table_of(chunks).equals(lines)


def test_chunked_table_is_rebatched(lines):
    chunked = pa.concat_tables([lines.slice(0, 100), lines.slice(100, 2000), lines.slice(2100)])
    _, chunks = read(chunked, batch_rows=1500)
    assert max(c.batch.num_rows for c in chunks) <= 1500
    assert_positions(chunks)
    assert table_of(chunks).equals(lines)


def test_record_batch_is_cut_to_batch_rows(lines):
    batch = lines.combine_chunks().to_batches()[0]
    sources, chunks = read(batch, batch_rows=1000)
    assert [(s.name, s.rows) for s in sources] == [("<batch>", N)]
    assert max(c.batch.num_rows for c in chunks) <= 1000
    assert_positions(chunks)
    assert table_of(chunks).equals(lines)


def test_record_batch_reader(lines):
    batches = lines.to_batches(max_chunksize=900)
    reader = pa.RecordBatchReader.from_batches(lines.schema, iter(batches))
    sources, chunks = read(reader)
    assert sources[0].rows is None
    assert [c.first_row for c in chunks] == [0, 900, 1800, 2700]
    assert table_of(chunks).equals(lines)


class StreamOnly:
    """Speaks only the Arrow PyCapsule stream protocol."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._table.__arrow_c_stream__(requested_schema)


class ArrayOnly:
    def __init__(self, batch: pa.RecordBatch) -> None:
        self._batch = batch

    def __arrow_c_array__(self, requested_schema=None):
        return self._batch.__arrow_c_array__(requested_schema)


def test_object_with_only_arrow_c_stream(lines):
    chunked = pa.Table.from_batches(lines.to_batches(max_chunksize=1100))
    obj = StreamOnly(chunked)
    assert not isinstance(obj, (pa.Table, pa.RecordBatch, pa.RecordBatchReader))
    sources, chunks = read(obj)
    assert [(s.name, s.rows) for s in sources] == [("<StreamOnly>", None)]
    assert [c.first_row for c in chunks] == [0, 1100, 2200]
    assert table_of(chunks).equals(lines)


def test_object_with_only_arrow_c_array(lines):
    batch = lines.combine_chunks().to_batches()[0]
    _, chunks = read(ArrayOnly(batch))
    assert len(chunks) == 1 and chunks[0].batch.equals(batch)


def test_polars_frame(lines):
    pl = pytest.importorskip("polars")
    frame = pl.from_arrow(lines)
    _, chunks = read(frame)
    assert_positions(chunks)
    got = table_of(chunks)
    assert got.num_rows == N
    assert got.column("importer_id").to_pylist() == lines.column("importer_id").to_pylist()


def test_first_row_is_the_reject_row_number(tmp_path, lines):
    """Rejects report each bad row's position in its source, across batches and files."""
    values = lines["entered_value"].to_numpy().copy()
    bad = np.array([0, 899, 900, 1801, 2999])
    values[bad] = -1.0
    dirty = lines.set_column(lines.schema.get_field_index("entered_value"), "entered_value", pa.array(values))
    one = tmp_path / "one.arrow"
    with ipc.new_file(one, dirty.schema) as w:
        w.write_table(dirty, max_chunksize=900)
    two = tmp_path / "two.parquet"
    pq.write_table(dirty.slice(1000), two, row_group_size=700)
    rejects = tmp_path / "rejects.parquet"
    run_consolidation([one, two], rejects=rejects)
    got = pq.read_table(rejects)
    assert got.schema.equals(REJECT_SCHEMA)
    rows = list(zip(got["source"].to_pylist(), got["row"].to_pylist()))
    assert rows == [(str(one), int(r)) for r in bad] + [(str(two), int(r) - 1000) for r in bad if r >= 1000]
    assert set(got["reason"].to_pylist()) == {"bad_entered_value"}


# ------------------------------------------------------------------------ atomic writers


def test_write_table_parquet_and_ipc(tmp_path, lines):
    pq_path, ipc_path, feather = tmp_path / "a.parquet", tmp_path / "b.arrow", tmp_path / "c.feather"
    write_table(lines, pq_path)
    write_table(lines, ipc_path)
    write_table(lines, str(feather))
    assert pq.read_table(pq_path).equals(lines)
    assert pq.ParquetFile(pq_path).metadata.num_rows == N
    for p in (ipc_path, feather):
        assert ipc.open_file(p).read_all().equals(lines)  # IPC *file* format
    assert listing(tmp_path) == ["a.parquet", "b.arrow", "c.feather"]  # no temporary files left


def test_write_table_creates_parent_directories(tmp_path, lines):
    target = tmp_path / "x" / "y" / "out.parquet"
    write_table(lines, target)
    assert pq.read_table(target).equals(lines)
    assert listing(target.parent) == ["out.parquet"]


def test_write_table_replaces_existing_on_success(tmp_path, lines):
    target = tmp_path / "out.parquet"
    write_table(lines.slice(0, 10), target)
    write_table(lines, target)
    assert pq.read_table(target).equals(lines)
    assert listing(tmp_path) == ["out.parquet"]


def test_write_table_unwritable_type_leaves_nothing(tmp_path):
    table = pa.table({"i": pa.array([(1, 2, 3)], pa.month_day_nano_interval())})
    target = tmp_path / "out.parquet"
    with pytest.raises(pa.ArrowException):
        write_table(table, target)
    assert listing(tmp_path) == []


class _Boom(RuntimeError):
    pass


def _failing_pq():
    """pq.write_table that writes part of the file, then fails."""
    def write(table, where, **kw):
        with pq.ParquetWriter(where, table.schema) as w:
            w.write_table(table.slice(0, table.num_rows // 2))
            raise _Boom("disk on fire")
    return SimpleNamespace(write_table=write)


class _FailingIpcWriter:
    def __init__(self, sink, schema):
        self._w = ipc.new_file(sink, schema)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._w.close()
        return False

    def write_table(self, table):
        self._w.write_table(table.slice(0, table.num_rows // 2))
        raise _Boom("disk on fire")


@pytest.mark.parametrize("name", ["out.parquet", "out.arrow"])
@pytest.mark.parametrize("existing", [False, True])
def test_write_table_failure_mid_write(tmp_path, lines, monkeypatch, name, existing):
    target = tmp_path / name
    old = b""
    if existing:
        write_table(lines.slice(0, 7), target)
        old = target.read_bytes()
    seen: list[list[str]] = []

    def new_file(sink, schema):
        seen.append(Path(sink))
        return _FailingIpcWriter(sink, schema)

    monkeypatch.setattr(cio, "pq", _failing_pq())
    monkeypatch.setattr(cio, "ipc", SimpleNamespace(new_file=new_file))
    with pytest.raises(_Boom):
        write_table(lines, target)
    if name.endswith(".arrow"):
        assert seen and seen[0].parent == tmp_path and seen[0].name.endswith(".tmp")  # beside the target
    if existing:
        assert target.read_bytes() == old
        assert listing(tmp_path) == [name]
    else:
        assert listing(tmp_path) == []


def test_atomic_path(tmp_path):
    target = tmp_path / "t.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".tmp") and tmp != target
        tmp.write_bytes(b"new")
        assert not target.exists()  # not before the block ends
    assert target.read_bytes() == b"new"
    with pytest.raises(_Boom):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise _Boom
    assert target.read_bytes() == b"new"
    assert listing(tmp_path) == ["t.bin"]


SMALL_SCHEMA = pa.schema([("a", pa.int64()), ("s", pa.string())])


def _batch(n: int, start: int = 0) -> pa.RecordBatch:
    return pa.record_batch([pa.array(range(start, start + n), pa.int64()),
                            pa.array([str(i) for i in range(start, start + n)])], schema=SMALL_SCHEMA)


def test_parquet_sink_commit(tmp_path):
    target = tmp_path / "sink.parquet"
    sink = ParquetSink(target, SMALL_SCHEMA)
    for k in range(3):
        sink.write(_batch(100, 100 * k))
    assert sink.rows == 300
    assert not target.exists()  # appears only on commit
    assert len(tmp_files(tmp_path)) == 1
    sink.commit()
    assert pq.read_table(target)["a"].to_pylist() == list(range(300))
    assert listing(tmp_path) == ["sink.parquet"]


def test_parquet_sink_commit_replaces_existing(tmp_path):
    target = tmp_path / "sink.parquet"
    target.write_bytes(b"old")
    sink = ParquetSink(str(target), SMALL_SCHEMA)
    sink.write(_batch(5))
    assert target.read_bytes() == b"old"  # untouched while writing
    sink.commit()
    assert pq.read_table(target).num_rows == 5
    assert listing(tmp_path) == ["sink.parquet"]


def test_parquet_sink_empty_commit(tmp_path):
    target = tmp_path / "empty.parquet"
    sink = ParquetSink(target, SMALL_SCHEMA)
    sink.commit()
    got = pq.read_table(target)
    assert got.num_rows == 0 and got.schema.equals(SMALL_SCHEMA)
    assert listing(tmp_path) == ["empty.parquet"]


@pytest.mark.parametrize("existing", [False, True])
def test_parquet_sink_failure_mid_write(tmp_path, existing):
    target = tmp_path / "sink.parquet"
    if existing:
        write_table(pa.Table.from_batches([_batch(3)]), target)
    old = target.read_bytes() if existing else None
    sink = ParquetSink(target, SMALL_SCHEMA)
    sink.write(_batch(1000))
    with pytest.raises(ValueError):
        sink.write(pa.record_batch({"other": [1]}))  # wrong schema: the writer refuses it
    sink.abort()
    if existing:
        assert target.read_bytes() == old
        assert listing(tmp_path) == ["sink.parquet"]
    else:
        assert listing(tmp_path) == []


def test_parquet_sink_constructor_failure_leaves_no_temp_file(tmp_path):
    bad_schema = pa.schema([("i", pa.month_day_nano_interval())])  # Parquet cannot store it
    with pytest.raises(pa.ArrowNotImplementedError):
        ParquetSink(tmp_path / "sink.parquet", bad_schema)
    assert listing(tmp_path) == []


def _failing_reader(table: pa.Table, after: int) -> pa.RecordBatchReader:
    def gen():
        for k, b in enumerate(table.to_batches(max_chunksize=500)):
            if k == after:
                raise _Boom("source died")
            yield b
    return pa.RecordBatchReader.from_batches(table.schema, gen())


@pytest.mark.parametrize("existing", [False, True])
def test_run_consolidation_failure_keeps_rejects_atomic(tmp_path, lines, existing):
    values = lines["entered_value"].to_numpy().copy()
    values[::3] = -1.0  # rejects in every batch, so the sink has written before the failure
    dirty = lines.set_column(lines.schema.get_field_index("entered_value"), "entered_value", pa.array(values))
    target = tmp_path / "rejects.parquet"
    if existing:
        run_consolidation(lines.slice(0, 10), rejects=target)
    old = target.read_bytes() if existing else None
    with pytest.raises(ContractError, match="source died"):  # the producer's error, reported with its source
        run_consolidation(_failing_reader(dirty, after=3), rejects=target)
    if existing:
        assert target.read_bytes() == old
        assert listing(tmp_path) == ["rejects.parquet"]
    else:
        assert listing(tmp_path) == []
    # A structural error in a later file aborts too.
    good, broken = tmp_path / "in" / "a.parquet", tmp_path / "in" / "b.parquet"
    good.parent.mkdir()
    pq.write_table(dirty, good)
    pq.write_table(dirty.drop_columns(["hts_code"]), broken)
    with pytest.raises(ContractError, match="hts_code"):
        run_consolidation(good.parent, rejects=target)
    assert tmp_files(tmp_path) == []
    assert (target.read_bytes() == old) if existing else not target.exists()


def test_run_consolidation_success_leaves_no_temp_files(tmp_path, lines):
    values = lines["entered_value"].to_numpy().copy()
    values[::7] = -1.0
    dirty = lines.set_column(lines.schema.get_field_index("entered_value"), "entered_value", pa.array(values))
    target = tmp_path / "rejects.parquet"
    target.write_bytes(b"previous run")
    run = run_consolidation(dirty, rejects=target)
    assert pq.read_table(target).num_rows == run.stats.rejected == len(values[::7])
    assert listing(tmp_path) == ["rejects.parquet"]


# ------------------------------------------------------------------------ killed mid-write

KILL_LINES = 3_000_000


def _ceecore_cmd() -> list[str]:
    exe = shutil.which("ceecore")
    return [exe] if exe else [sys.executable, "-m", "ceecore"]


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    """Multi-million lines, half of them rejects, so the rejects file gets large."""
    part = generate_table(lines=500_000, accounts=5_000, seed=7)
    values = part["entered_value"].to_numpy()
    values = np.where(np.arange(len(values)) % 2 == 0, -values, values)
    part = part.set_column(part.schema.get_field_index("entered_value"), "entered_value", pa.array(values))
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    big = pa.concat_tables([part] * (KILL_LINES // part.num_rows))
    pq.write_table(big, path, row_group_size=128 * 1024, compression="none")
    return path


def test_sigkill_mid_write_leaves_previous_or_nothing(tmp_path, big_input):
    """SIGKILL while the rejects file is being written: targets are old-and-complete or absent."""
    out = tmp_path / "out"
    out.mkdir()
    accounts, rejects = out / "accounts.parquet", out / "accounts.rejects.parquet"
    # A previous complete rejects file (from a small run) and no accounts file yet.
    previous = generate_table(lines=1_000, accounts=20, seed=1)
    values = previous["entered_value"].to_numpy().copy()
    values[:10] = -1.0
    previous = previous.set_column(previous.schema.get_field_index("entered_value"), "entered_value",
                                   pa.array(values))
    run_consolidation(previous, rejects=rejects)
    old_rejects = rejects.read_bytes()

    cmd = _ceecore_cmd() + ["consolidate", str(big_input), "-o", str(accounts), "--threads", "2", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_mid_write = False
    deadline = time.monotonic() + 12
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [p for p in out.iterdir() if p.name.endswith(".tmp")]
            if any(p.stat().st_size > (1 << 20) for p in partial if p.exists()):
                killed_mid_write = True
                break
            time.sleep(0.01)
        else:
            time.sleep(0.3)  # fall back to a short sleep if no progress was seen
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)

    if proc.returncode == -signal.SIGKILL:
        # Killed: previous rejects intact, and no half-written accounts.
        assert rejects.read_bytes() == old_rejects
        assert pq.read_table(rejects).num_rows == 10
        assert not accounts.exists()
    else:
        # The run won the race: then both files are complete.
        assert proc.returncode == 0, proc.stderr
        assert pq.read_metadata(rejects).num_rows == KILL_LINES // 2
        assert pq.read_metadata(accounts).num_rows > 0
    # Whatever happened, any leftover is a hidden temporary file, never a target-named one.
    for p in out.iterdir():
        assert p.name in ("accounts.parquet", "accounts.rejects.parquet") or (
            p.name.startswith(".") and p.name.endswith(".tmp")), p.name
    # And a leftover temporary file is not picked up when the directory is read back.
    srcs, _ = open_sources(out)
    assert {Path(s.name).name for s in srcs} <= {"accounts.parquet", "accounts.rejects.parquet"}
    if not killed_mid_write:
        print(f"note: the kill did not land mid-write (returncode {proc.returncode})")


def test_written_files_respect_the_umask(tmp_path, lines):
    old = os.umask(0o022)
    try:
        write_table(lines, tmp_path / "out.parquet")
        with ParquetSink(tmp_path / "sink.parquet", lines.schema) as sink:
            sink.write(lines.to_batches()[0])
    finally:
        os.umask(old)
    assert (tmp_path / "out.parquet").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "sink.parquet").stat().st_mode & 0o777 == 0o644
