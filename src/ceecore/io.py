"""Sources in, outputs out: files and Arrow producers as record batches; atomic writers.

pyarrow is the file layer: Parquet, Arrow IPC (file or stream) and CSV (optionally
compressed), single files or directories of them. Anything else that speaks the Arrow
PyCapsule protocol (pyarrow, polars, duckdb, nanoarrow) is read as it is, and a polars
LazyFrame is run a batch at a time, for the columns the job reads.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from ceecore.schema import ContractError

__all__ = ["Chunk", "Source", "check_batch", "open_sources", "atomic_path", "write_table", "ParquetSink"]

BATCH_ROWS = 64 * 1024
_PARQUET = (".parquet", ".pq")
_IPC = (".arrow", ".ipc", ".feather", ".arrows")
_CSV = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".csv.bz2", ".csv.zst")


@dataclass(frozen=True)
class Chunk:
    """One record batch of one source, with the position of its first row there."""

    source: str
    first_row: int
    batch: pa.RecordBatch


@dataclass(frozen=True)
class Source:
    """One input: a file, or an in-memory Arrow producer; ``rows`` is known up front if cheap."""

    name: str
    obj: Any
    rows: int | None


def open_sources(sources: Any, text_columns: Iterable[str] = (), batch_rows: int = BATCH_ROWS,
                 columns: Iterable[str] | None = None) -> tuple[list[Source], Iterator[Chunk]]:
    """Resolves ``sources`` (paths, directories, Arrow producers, or a list of them).

    Returns the resolved sources (for progress totals) and a lazy stream of chunks.
    ``text_columns`` are read as text from CSV, so that codes keep their leading zeros
    and unparseable numbers become reject rows rather than a failed read. With
    ``columns``, Parquet files are read for those of them they have, and no others.
    """
    resolved = list(_resolve(sources))
    text = set(text_columns)
    wanted = None if columns is None else set(columns)
    return resolved, (chunk for src in resolved for chunk in _read(src, text, batch_rows, wanted))


def _resolve(sources: Any) -> Iterator[Source]:
    if isinstance(sources, (str, os.PathLike)):
        path = Path(sources)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p))
            if not files:
                raise ContractError(str(path), "directory holds no Parquet, Arrow IPC or CSV files")
            for f in files:
                yield _file_source(f)
        elif path.exists():
            yield _file_source(path)
        else:
            raise ContractError(str(path), "no such file or directory")
    elif isinstance(sources, (list, tuple)):
        for s in sources:
            yield from _resolve(s)
    elif isinstance(sources, pa.Table):
        yield Source("<table>", sources, sources.num_rows)
    elif isinstance(sources, pa.RecordBatch):
        yield Source("<batch>", sources, sources.num_rows)
    elif hasattr(sources, "__arrow_c_stream__") or hasattr(sources, "__arrow_c_array__") or _is_lazy(sources):
        yield Source(f"<{type(sources).__name__}>", sources, None)
    else:
        raise TypeError(f"cannot read {type(sources).__name__}: give paths or Arrow data")


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(_PARQUET):
        return "parquet"
    if name.endswith(_IPC):
        return "ipc"
    if name.endswith(_CSV):
        return "csv"
    return None


def _file_source(path: Path) -> Source:
    kind = _kind(path)
    if kind is None:
        raise ContractError(str(path), "unknown file type (expected .parquet, .arrow/.ipc/.feather or .csv)")
    rows = None
    if kind == "parquet":
        try:
            rows = pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException) as exc:
            raise ContractError(str(path), f"cannot read Parquet metadata: {exc}") from exc
    return Source(str(path), path, rows)


def _read(src: Source, text: set[str], batch_rows: int, wanted: set[str] | None) -> Iterator[Chunk]:
    row = 0
    own = isinstance(src.obj, Path) and _kind(src.obj) == "csv"  # pyarrow's CSV reader builds valid arrays
    try:
        for batch in _batches(src, text, batch_rows, wanted):
            if not own:
                check_batch(batch, src.name, row, wanted)
            for start in range(0, max(batch.num_rows, 1), batch_rows):  # the caller's batches may be larger
                part = batch.slice(start, batch_rows)
                yield Chunk(src.name, row, part)
                row += part.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise ContractError(src.name, f"cannot read (after row {row}): {exc}") from exc


def check_batch(batch: pa.RecordBatch | pa.Table, source: str, first_row: int = 0,
                columns: Collection[str] | None = None) -> None:
    """Refuses a batch whose buffers contradict each other (string offsets past the data,
    dictionary indices out of range, view buffers that do not exist, text that is not
    UTF-8): the kernels read the buffers directly, and only pyarrow, which knows their
    sizes (the C Data Interface does not carry them), can check them. A corrupt batch's
    rows cannot be trusted one by one, so it is an error naming the source and rows.
    Only ``columns`` are checked, if given (those a job reads).
    """
    if columns is not None:
        batch = batch.select([k for k, name in enumerate(batch.schema.names) if name in columns])
    try:
        batch.validate(full=True)
    except pa.ArrowException as exc:
        last = first_row + max(batch.num_rows, 1) - 1
        raise ContractError(source, f"rows {first_row} to {last} are not valid Arrow data ({exc})") from exc


def _batches(src: Source, text: set[str], batch_rows: int, wanted: set[str] | None) -> Iterator[pa.RecordBatch]:
    obj = src.obj
    if isinstance(obj, Path):
        kind = _kind(obj)
        if kind == "parquet":
            # No pre-buffering: it would hold every row group's raw bytes at once (2x the peak).
            file = pq.ParquetFile(obj, pre_buffer=False)
            names = file.schema_arrow.names
            yield from file.iter_batches(batch_size=batch_rows,
                                         columns=None if wanted is None else [c for c in names if c in wanted])
        elif kind == "ipc":
            yield from _ipc_batches(obj)
        else:
            yield from _csv_batches(obj, text)
    elif isinstance(obj, pa.Table):
        yield from obj.to_batches(max_chunksize=batch_rows)
    elif isinstance(obj, pa.RecordBatch):
        yield obj
    elif hasattr(obj, "__arrow_c_stream__"):
        yield from pa.RecordBatchReader.from_stream(obj)
    elif _is_lazy(obj):
        # A polars LazyFrame: only the wanted columns are asked for (pushed down to its
        # scans), and it is run a batch at a time.
        names = obj.collect_schema().names()
        lazy = obj if wanted is None else obj.select([c for c in names if c in wanted])
        for frame in lazy.collect_batches(chunk_size=batch_rows):
            yield from frame.to_arrow().to_batches()
    else:
        yield pa.record_batch(obj)


def _is_lazy(obj: Any) -> bool:
    """A polars LazyFrame (known by what it does: polars is not a dependency)."""
    return hasattr(obj, "collect_batches") and hasattr(obj, "collect_schema")


def _ipc_batches(path: Path) -> Iterator[pa.RecordBatch]:
    with pa.memory_map(str(path)) as f:
        try:
            reader = ipc.open_file(f)
        except pa.ArrowInvalid:
            f.seek(0)
            yield from ipc.open_stream(f)
            return
        for k in range(reader.num_record_batches):
            yield reader.get_batch(k)


def _csv_batches(path: Path, text: set[str]) -> Iterator[pa.RecordBatch]:
    delimiter = "\t" if ".tsv" in path.name.lower() else ","
    with pa.input_stream(str(path), compression="detect") as stream:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=16 << 20),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in text}),
        )
        yield from reader


def _temp_beside(target: Path) -> Path:
    """A fresh hidden name beside ``target`` (created by the writer, so the umask applies)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only if the block succeeds."""
    tmp = _temp_beside(Path(path))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(table: pa.Table, path: str | os.PathLike[str], format: str | None = None) -> None:
    """Writes a table atomically: ``format`` "parquet" or "ipc" (default: by the file name)."""
    fmt = format or ("ipc" if _kind(Path(path)) == "ipc" else "parquet")
    with atomic_path(path) as tmp:
        if fmt == "ipc":
            with ipc.new_file(tmp, table.schema) as writer:
                writer.write_table(table)
        else:
            pq.write_table(table, tmp)


class ParquetSink:
    """Streams batches into a Parquet file that appears only on :meth:`commit`.

    Without a commit (an error, a kill) the target is left untouched. ``options`` go to
    :class:`pyarrow.parquet.ParquetWriter` (encodings, statistics, compression).
    """

    def __init__(self, path: str | os.PathLike[str], schema: pa.Schema, **options: Any) -> None:
        self._target = Path(path)
        self._tmp = _temp_beside(self._target)
        try:
            self._writer = pq.ParquetWriter(self._tmp, schema, **options)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        self.rows = 0

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Writes one row group: a record batch, or a table's chunks without joining them."""
        self._writer.write(batch, row_group_size=max(batch.num_rows, 1))
        self.rows += batch.num_rows

    def commit(self) -> None:
        self._writer.close()
        os.replace(self._tmp, self._target)

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
