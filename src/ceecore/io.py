"""Sources in, outputs out: files and Arrow producers as record batches; atomic writers.

pyarrow is the file layer: Parquet, Arrow IPC (file or stream) and CSV (optionally
compressed), single files or directories of them. Anything else that speaks the Arrow
PyCapsule protocol (pyarrow, polars, duckdb, nanoarrow) is read as it is, and a polars
LazyFrame is run a batch at a time, for the columns the job reads.
"""

from __future__ import annotations

import csv
import ctypes
import errno
import os
import re
import secrets
import shutil
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from ceecore.schema import ContractError

__all__ = ["Chunk", "Source", "check_batch", "open_sources", "atomic_path", "write_table", "output_format",
           "OutputSet", "output_set", "ParquetSink", "swap_directory", "check_outputs"]

BATCH_ROWS = 64 * 1024
CSV_BLOCK_BYTES = 16 << 20  # CSV is parsed a block at a time
_PARQUET = (".parquet", ".pq")
_IPC = (".arrow", ".ipc", ".feather", ".arrows")
_CSV = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".csv.bz2", ".csv.zst")


@dataclass(frozen=True)
class Chunk:
    """One record batch of one source, with the position of its first row there;
    ``malformed``: the rows of the batch that stand in, all null, for CSV lines that are
    not rows (they are rejected as ``malformed_csv_line``)."""

    source: str
    first_row: int
    batch: pa.RecordBatch
    malformed: np.ndarray | None = None
    unchecked: bool = False  # its check is left to the reader's caller (see open_sources)

    def check(self, columns: Collection[str] | None = None) -> None:
        """:func:`check_batch` of this chunk (of ``columns``, if given), if it is owed."""
        if self.unchecked:
            check_batch(self.batch, self.source, self.first_row, columns)


@dataclass(frozen=True)
class Source:
    """One input: a file, or an in-memory Arrow producer; ``rows`` is known up front if cheap."""

    name: str
    obj: Any
    rows: int | None


def open_sources(sources: Any, text_columns: Iterable[str] = (), batch_rows: int = BATCH_ROWS,
                 columns: Iterable[str] | None = None, checked: bool = True) -> tuple[list[Source], Iterator[Chunk]]:
    """Resolves ``sources`` (paths, directories, Arrow producers, or a list of them).

    Returns the resolved sources (for progress totals) and a lazy stream of chunks.
    ``text_columns`` are read as text from CSV, so that codes keep their leading zeros
    and unparseable numbers become reject rows rather than a failed read. With
    ``columns``, Parquet files are read for those of them they have, and no others.
    Each chunk is :func:`check_batch`-ed as it is read, unless ``checked`` is False: then
    the caller checks each chunk itself (:meth:`Chunk.check`, on its worker threads). A
    CSV file's chunks need no check: pyarrow's reader builds them, and the reading nulls
    and marks the rows whose text is not UTF-8.
    """
    resolved = list(_resolve(sources))
    text = set(text_columns)
    wanted = None if columns is None else set(columns)
    return resolved, (chunk for src in resolved for chunk in _read(src, text, batch_rows, wanted, checked))


def _resolve(sources: Any) -> Iterator[Source]:
    if isinstance(sources, (str, os.PathLike)):
        path = Path(sources)
        if path.is_dir():
            files = _walk(path)
            if not files:
                raise ContractError(str(path), "directory holds no Parquet, Arrow IPC or CSV files")
            for f in files:
                yield _file_source(f)
        elif path.is_file():
            yield _file_source(path)
        elif path.exists():
            raise ContractError(str(path), "not a regular file or directory (a FIFO, device or socket would block "
                                           "or never end)")
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


def _walk(root: Path) -> list[Path]:
    """The data files under ``root``, sorted; names starting with ``.`` or ``_`` at any
    depth (staging, temporaries, ``_SUCCESS``, hidden folders) are never inputs."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        found += [Path(folder, n) for n in names if not n.startswith((".", "_")) and _kind(Path(n))]
    return sorted(p for p in found if p.is_file())


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


def _read(src: Source, text: set[str], batch_rows: int, wanted: set[str] | None, checked: bool = True
          ) -> Iterator[Chunk]:
    row = 0
    csv = isinstance(src.obj, Path) and _kind(src.obj) == "csv"  # pyarrow's CSV reader builds valid arrays
    marked = _csv_batches(src.obj, text, wanted) if csv else ((b, None) for b in _batches(src, text, batch_rows, wanted))
    try:
        for batch, malformed in marked:
            if checked and not csv:
                check_batch(batch, src.name, row, wanted)
            for start in range(0, max(batch.num_rows, 1), batch_rows):  # the caller's batches may be larger
                part = batch.slice(start, batch_rows)
                within = None if malformed is None else malformed[(malformed >= start) & (malformed < start + batch_rows)]
                yield Chunk(src.name, row, part, None if within is None or not len(within) else within - start,
                            unchecked=not (checked or csv))
                row += part.num_rows
    except (OSError, pa.ArrowException) as exc:
        ragged = _RAGGED.search(str(exc))
        if ragged:  # (pyarrow cannot hand over a line that is not UTF-8: it quotes it, so we do not)
            line, expected, got = ragged.groups()
            raise ContractError(src.name, f"line {line} has {got} fields where {expected} were expected and is not "
                                          "UTF-8 text: fix or remove that line") from None
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
            yield from (batch for batch, _ in _csv_batches(obj, text, wanted))
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


def _csv_batches(path: Path, text: set[str], wanted: set[str] | None
                 ) -> Iterator[tuple[pa.RecordBatch, np.ndarray | None]]:
    """A CSV file's batches (of the ``wanted`` columns it has: the others are neither
    parsed nor typed), each with the rows that stand for malformed lines.

    A line with too few or too many fields, or with text that is not UTF-8, must not stop
    the read nor vanish: it becomes an all-null row in its place (so row ``r`` is still
    line ``r + 2``; the content is never echoed), marked for rejection. Empty lines are
    rows too (of nulls, rejected by the contract), for the same numbering; a quoted
    field cannot span lines.
    """
    delimiter = "\t" if ".tsv" in path.name.lower() else ","
    include = [] if wanted is None else [c for c in _csv_header(path, delimiter) if c in wanted]
    skipped: list[int] = []  # line numbers of lines that were not rows (the parser's, 1 = the header)

    def skip(row: pacsv.InvalidRow) -> str:
        if row.number is None:  # (never, single-threaded: the parser counts lines)
            return "error"
        skipped.append(row.number)
        return "skip"
    skip.quiet = True  # type: ignore[attr-defined]  # (see _quiet_csv_lines)

    # The reader is closed as the read ends, however it ends: a reader left to the garbage
    # collector (held by an error's traceback) can outlive the interpreter's shutdown with
    # its read-ahead still running, and abort the process on exit.
    with pa.input_stream(str(path), compression="detect") as stream, pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=skip, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in text}, check_utf8=False,
                                                 include_columns=include),
    ) as reader:
        first = 0  # the row (line - 2) the next batch starts at
        for batch in reader:
            batch, malformed = _put_back(batch, first, skipped)
            yield batch, malformed
            first += batch.num_rows
        if skipped:  # the file ends with lines that are not rows
            yield _put_back(pa.RecordBatch.from_pylist([], reader.schema), first, skipped, to_end=True)


def _csv_header(path: Path, delimiter: str) -> list[str]:
    """The column names on a CSV file's first line (ended, as the parser ends it, by
    ``\\n``, ``\\r\\n`` or a lone ``\\r``)."""
    head = b""
    with pa.input_stream(str(path), compression="detect") as stream:
        while b"\n" not in head and b"\r" not in head and len(head) < CSV_BLOCK_BYTES:
            more = stream.read(1 << 16)
            if not more:
                break
            head += more
    try:
        line = re.split(rb"\r|\n", head, maxsplit=1)[0].decode("utf-8-sig")
        return next(csv.reader([line], delimiter=delimiter), [])
    except UnicodeDecodeError:
        raise ContractError(str(path), "the header (line 1) is not UTF-8 text") from None
    except csv.Error as exc:  # (a NUL byte, say)
        raise ContractError(str(path), f"the header (line 1) is not a CSV line: {exc}") from None


def _put_back(batch: pa.RecordBatch, first: int, skipped: list[int], to_end: bool = False
              ) -> tuple[pa.RecordBatch, np.ndarray | None]:
    """``batch`` (rows from ``first`` on) with an all-null row in the place of each
    ``skipped`` line within it (taken from the list; every one, ``to_end``) and its rows
    with text that is not UTF-8 nulled; and those rows."""
    skipped.sort()
    n = batch.num_rows
    places: list[int] = list(range(len(skipped))) if to_end else []
    if to_end:
        skipped.clear()
    while skipped and skipped[0] - 2 < first + n + len(places):  # (line l is row l - 2)
        places.append(skipped.pop(0) - 2 - first)
    bad = _not_utf8(batch)
    if not places and not len(bad):
        return batch, None
    marks = np.zeros(n + len(places), bool)
    marks[places] = True
    kept = np.flatnonzero(~marks)
    marks[kept[bad]] = True
    take = np.zeros(len(marks), np.int64)
    take[kept] = np.arange(n)
    return batch.take(pa.array(take, mask=marks)), np.flatnonzero(marks)


def _not_utf8(batch: pa.RecordBatch) -> np.ndarray:
    """The rows of ``batch`` with a text value that is not UTF-8 (CSV text is read unchecked)."""
    bad: list[int] = []
    for column in batch.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                raw = column.cast(pa.large_binary()).to_pylist()
                bad += [i for i, value in enumerate(raw) if value is not None and not _utf8(value)]
    return np.unique(np.array(bad, np.int64))


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_RAGGED = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+)")


def _quiet_csv_lines(unraisable: Any, previous: Any = sys.unraisablehook) -> None:
    """Keeps pyarrow from printing a line that is not UTF-8 when it fails to hand it to
    our handler (the read then stops with our message instead, see :func:`_read`)."""
    if not getattr(unraisable.object, "quiet", False):
        previous(unraisable)


sys.unraisablehook = _quiet_csv_lines


def _temp_beside(target: Path) -> Path:
    """A fresh hidden name beside ``target`` (created by the writer, so the umask applies).

    Staging that a killed run of the same output left behind is removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _remove_stale(target: Path) -> None:
    """Removes the staging of ``target`` (see :func:`_temp_beside`) whose process is gone:
    what a kill -9 or a power cut left. Readers never see it (hidden names are not
    inputs); this only frees the space."""
    stale = re.compile(rf"\.+{re.escape(target.name)}\.(\d+)\.[0-9a-f]{{8}}\.tmp")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        match = stale.match(name)
        if match and not _alive(int(match.group(1))):
            path = target.parent / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # (another user's process, or not a pid: leave it)
    return True


class _Committed:
    """A ``with`` block commits on success and aborts on any error (Ctrl-C included)."""

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@contextmanager
def atomic_path(path: str | os.PathLike[str], into: OutputSet | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only if the block succeeds
    (with ``into``, only when that set commits)."""
    if into is not None:
        yield into.file(path)
        return
    tmp = _temp_beside(Path(path))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(table: pa.Table, path: str | os.PathLike[str], format: str | None = None,
                into: OutputSet | None = None) -> None:
    """Writes a table atomically: ``format`` "parquet" or "ipc" (default: by the file
    name, see :func:`output_format`); with ``into``, as part of that set."""
    fmt = format or output_format(path)
    with atomic_path(path, into) as tmp:
        if fmt == "ipc":
            with ipc.new_file(tmp, table.schema) as writer:
                writer.write_table(table)
        else:
            pq.write_table(table, tmp)


def output_format(path: str | os.PathLike[str], fixed: str | None = None) -> str:
    """The format of an output, so that its name never lies (``-o x.csv`` never quietly
    writes Parquet): the one its name asks for, "parquet" (``.parquet``, ``.pq``) or
    "ipc" (``.arrow``, ``.ipc``, ``.feather``), any other name refused; or, for an
    output of one ``fixed`` format, that format, refusing a name of another."""
    kind = _kind(Path(path))
    if fixed is not None:
        if kind is not None and kind != fixed:
            raise ValueError(f"{os.fspath(path)}: this output is {_NAMES[fixed]}, not {_NAMES[kind]}: rename it")
        return fixed
    if kind not in ("parquet", "ipc"):
        raise ValueError(f"{os.fspath(path)}: unknown output type: name it .parquet (Parquet) or .arrow (Arrow IPC)")
    return kind


_NAMES = {"parquet": "Parquet", "ipc": "Arrow IPC", "csv": "CSV", "json": "JSON"}


class OutputSet(_Committed):
    """A job's outputs, each written to a hidden temporary beside its target, moved into
    place together when every one is complete, in the order they were begun (so begin the
    main output last). Without a commit (an error, an interrupt) none appears.

    Renaming several files is not one atomic step: a kill between two renames leaves the
    first ones new; the window is a few renames long. Outputs that must change as one go
    in one directory (:meth:`directory`), swapped in with a single rename.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def file(self, target: str | os.PathLike[str]) -> Path:
        """Where to write the complete file for ``target``."""
        tmp = _temp_beside(Path(target))
        self._staged.append((tmp, Path(target)))
        return tmp

    def directory(self, target: str | os.PathLike[str]) -> Path:
        """An empty staging directory whose contents become ``target`` (swapped in whole)."""
        target = Path(target)
        if target.is_symlink():  # (the directory it names is replaced; the link stays)
            target = target.resolve()
        if target.exists() and not target.is_dir():
            raise ValueError(f"{target} exists and is not a directory")
        staging = self.file(target)
        staging.mkdir()
        return staging

    def commit(self) -> None:
        try:
            while self._staged:
                tmp, target = self._staged[0]
                if tmp.is_dir():
                    swap_directory(tmp, target)
                else:
                    os.replace(tmp, target)
                self._staged.pop(0)
        finally:
            self.abort()  # (what a failed rename left)

    def abort(self) -> None:
        for tmp, _ in self._staged:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        self._staged.clear()



@contextmanager
def output_set(given: OutputSet | None) -> Iterator[OutputSet]:
    """``given`` (its owner commits it), or a set of one's own, committed when the block ends."""
    if given is not None:
        yield given
    else:
        with OutputSet() as own:
            yield own


_RENAME_EXCHANGE = 2
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (AttributeError, OSError):  # not Linux, or a C library before glibc 2.28
    _renameat2 = None


def swap_directory(staging: Path, target: Path) -> None:
    """Puts the directory ``staging`` in place of ``target`` so that a reader of
    ``target`` sees the whole old or the whole new contents, never a mix.

    On Linux both names are exchanged in one step (``renameat2(RENAME_EXCHANGE)``), then
    the old contents, now at ``staging``, are removed. Elsewhere (or on a file system
    without the exchange) the old directory is renamed away first: for that moment the
    target is missing, never mixed.
    """
    if not target.exists():
        os.rename(staging, target)
        return
    if _renameat2 is not None:
        at_cwd = -100
        if _renameat2(at_cwd, os.fsencode(staging), at_cwd, os.fsencode(target), _RENAME_EXCHANGE) == 0:
            shutil.rmtree(staging, ignore_errors=True)
            return
        error = ctypes.get_errno()
        if error not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(error, os.strerror(error), str(target))
    old = _temp_beside(target)
    os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def check_outputs(outputs: Mapping[str, str | os.PathLike[str] | None], inputs: Iterable[Any] = ()) -> None:
    """Refuses, before any work, outputs that would destroy a file: two outputs at the
    same place, an output that is an input, an output inside an input directory, or an
    input inside an output directory. ``outputs`` maps each output's name (as the user
    knows it, e.g. ``--rejects``) to its path; ``None`` paths are skipped."""
    given = {name: Path(path) for name, path in outputs.items() if path is not None}
    files = [Path(s) for s in inputs if isinstance(s, (str, os.PathLike))]
    named = list(given.items())
    for i, (name, path) in enumerate(named):
        if path.exists() and not (path.is_file() or path.is_dir()):
            raise ValueError(f"{name} {path} is not a regular file (a FIFO, device or socket): "
                             "it would be replaced; choose another path")
        for other, there in named[:i]:
            if _same(path, there):
                raise ValueError(f"{other} and {name} are the same file ({path}): give each output its own path")
            if _inside(path, there) or _inside(there, path):
                raise ValueError(f"{other} {there} and {name} {path}: one is inside the other; "
                                 "give each output its own place")
        for src in files:
            if _same(path, src):
                raise ValueError(f"{name} {path} is an input: it would be overwritten; choose another path")
            if src.is_dir() and _inside(path, src):
                raise ValueError(f"{name} {path} is inside the input directory {src}; choose a path outside it")
            if _inside(src, path):
                raise ValueError(f"the input {src} is inside the output directory {path} ({name}); "
                                 "choose an output directory that holds no input")


def _same(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    """``path`` lies strictly under ``folder`` (by their real paths)."""
    inner, outer = path.resolve(), folder.resolve()
    return inner != outer and inner.is_relative_to(outer)


class ParquetSink(_Committed):
    """Streams batches into a Parquet file that appears only on :meth:`commit`.

    Without a commit (an error, a kill) the target is left untouched. With ``into``, the
    file is part of that set and appears when the set commits. ``options`` go to
    :class:`pyarrow.parquet.ParquetWriter` (encodings, statistics, compression).
    """

    def __init__(self, path: str | os.PathLike[str], schema: pa.Schema, into: OutputSet | None = None,
                 **options: Any) -> None:
        self._target = Path(path)
        self._tmp = into.file(path) if into is not None else _temp_beside(self._target)
        self._own = into is None
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
        if self._own:
            os.replace(self._tmp, self._target)

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)

