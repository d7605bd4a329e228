"""The batch jobs, readable top to bottom: sources -> canonical batches -> state -> outputs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from ceecore.accounts import CONSOLIDATION_COLUMNS, AccountBook
from ceecore.centers import CenterMap, Override
from ceecore.io import Chunk, ParquetSink, open_sources
from ceecore.schema import REJECT_REASONS, ColumnMapping

__all__ = ["IntakeStats", "Consolidation", "consolidate", "run_consolidation", "REJECT_SCHEMA"]

# Rejected rows: where they came from, why, and their canonical fields as text.
REJECT_SCHEMA = pa.schema(
    [("source", pa.string()), ("row", pa.int64()), ("reason", pa.string())]
    + [(c, pa.large_string()) for c in CONSOLIDATION_COLUMNS]
)


@dataclass
class IntakeStats:
    """Row counts of a run; ``accepted + rejected == rows_read`` always."""

    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, codes: np.ndarray) -> None:
        counts = np.bincount(codes, minlength=len(REJECT_REASONS))
        self.rows_read += len(codes)
        self.accepted += int(counts[0])
        self.rejected += len(codes) - int(counts[0])
        for code in np.flatnonzero(counts[1:]) + 1:
            reason = REJECT_REASONS[code]
            self.by_reason[reason] = self.by_reason.get(reason, 0) + int(counts[code])


@dataclass
class Consolidation:
    """What :func:`run_consolidation` produced."""

    accounts: pa.Table
    stats: IntakeStats
    book: AccountBook


def run_consolidation(
    source: Any,
    *,
    mapping: ColumnMapping | None = None,
    centers: CenterMap | None = None,
    overrides: Mapping[str, Override] | None = None,
    assign_by: Literal["lines", "value"] = "lines",
    threads: int | None = None,
    rejects: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
) -> Consolidation:
    """Consolidates every entry line of ``source`` per importer, nationwide.

    ``source``: paths (files or directories of Parquet, Arrow IPC, CSV) or Arrow data.
    Rows that break the data contract go to ``rejects`` (Parquet, written atomically)
    with a reason; ``progress`` is called with the rows of each batch done, and
    ``on_start`` once with the total row count when it is known up front.
    """
    mapping = mapping or ColumnMapping()
    book = AccountBook(centers, threads)
    stats = IntakeStats()
    started = time.perf_counter()
    sources, chunks = open_sources(source, text_columns=[mapping.source_of(c) for c in CONSOLIDATION_COLUMNS])
    if on_start is not None:
        rows = [s.rows for s in sources]
        on_start(None if None in rows else sum(rows))
    sink = ParquetSink(rejects, REJECT_SCHEMA) if rejects is not None else None
    try:
        for chunk in chunks:
            codes = book.update(chunk.batch, mapping, chunk.source)
            stats.add(codes)
            if sink is not None and codes.any():
                sink.write(reject_rows(chunk, codes, mapping))
            if progress is not None:
                progress(chunk.batch.num_rows)
        accounts = book.result(assign_by, overrides)
        if sink is not None:
            sink.commit()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    stats.seconds = time.perf_counter() - started
    return Consolidation(accounts, stats, book)


def consolidate(source: Any, **options: Any) -> pa.Table:
    """The consolidated accounts of ``source``; options as for :func:`run_consolidation`."""
    return run_consolidation(source, **options).accounts


def reject_rows(chunk: Chunk, codes: np.ndarray, mapping: ColumnMapping) -> pa.RecordBatch:
    """The rejected rows of a chunk, in :data:`REJECT_SCHEMA`."""
    rows = np.flatnonzero(codes)
    names = chunk.batch.schema.names
    take = pa.array(rows)
    columns = [
        pa.array([chunk.source] * len(rows), pa.string()),
        pa.array(rows + chunk.first_row, pa.int64()),
        pa.array(np.array(REJECT_REASONS, dtype=object)[codes[rows]], pa.string()),
    ]
    for canonical in CONSOLIDATION_COLUMNS:
        src = mapping.source_of(canonical)
        if src in names:
            col = chunk.batch.column(names.index(src))
            if pa.types.is_string_view(col.type) or pa.types.is_binary_view(col.type):
                col = col.cast(pa.large_string())  # pyarrow cannot take() from view layouts
            col = col.take(take)
            if pa.types.is_dictionary(col.type):
                col = col.dictionary_decode()
            columns.append(col.cast(pa.large_string()))
        else:
            columns.append(pa.nulls(len(rows), pa.large_string()))
    return pa.RecordBatch.from_arrays(columns, schema=REJECT_SCHEMA)
