"""The batch jobs, readable top to bottom: sources -> canonical batches -> state -> outputs."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceecore import __version__
from ceecore._threads import in_order, resolve_threads
from ceecore.accounts import CONSOLIDATION_COLUMNS, AccountBook, Intake
from ceecore.baselines import Baselines
from ceecore.centers import CenterMap, Override
from ceecore.fields import OUTCOME_COLUMNS, SCORING_COLUMNS, LineFields, line_fields
from ceecore.history import History, outcomes
from ceecore.io import Chunk, OutputSet, ParquetSink, atomic_path, check_outputs, open_sources, output_set, write_table
from ceecore.learn import TRAINING, Learned, train
from ceecore.privacy import PRIVATE_COLUMNS, PSEUDONYM_KEY, Pseudonymiser, check_pseudonyms
from ceecore.schema import CANONICAL, REJECT_REASONS, ColumnMapping, plain_rows, reason_code
from ceecore.scoring import LINES_PARQUET_OPTIONS, Model, ScoringConfig, score_intake, scoring_input_types
from ceecore.spill import LineSpill
from ceecore.trends import PIECE_TALLIES, WHOLE_TALLIES, PieceRows, Trends, TrendsView, history_accounts
from ceecore.uniformity import Uniformity, comparison_table
from ceecore.worklist import AccountEvidence, BestLinesPerAccount, BestLinesPerCenter, account_scores, worklist

__all__ = ["IntakeStats", "Consolidation", "Labels", "RunSummary", "ScoreRun", "TooManyRejects", "consolidate", "fit",
           "fold_lines", "merge_models", "run", "run_consolidation", "score", "score_period", "write_set", "REJECT_SCHEMA"]

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

    def check_share(self, limit: float | None) -> None:
        """Refuses a read that rejected more than ``limit`` (a share) of its rows: its
        outputs would describe a sliver of the input, or nothing (None: no limit)."""
        if limit is not None and self.rejected > limit * self.rows_read:
            reasons = ", ".join(f"{reason} {count:,}" for reason, count in
                                sorted(self.by_reason.items(), key=lambda kv: -kv[1])[:3])
            raise TooManyRejects(f"{self.rejected:,} of {self.rows_read:,} rows rejected "
                                 f"({self.rejected / self.rows_read:.1%}, more than the maximum reject share "
                                 f"{limit * 100:g}%): {reasons}; no output written")


class TooManyRejects(ValueError):
    """A read rejected more of its rows than allowed (see :meth:`IntakeStats.check_share`)."""


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
    max_reject_share: float | None = None,
    outputs: OutputSet | None = None,
    pseudonyms: Pseudonymiser | None = None,
    client: Any = None,
) -> Consolidation:
    """Consolidates every entry line of ``source`` per importer, nationwide.

    ``source``: paths (files or directories of Parquet, Arrow IPC, CSV) or Arrow data.
    Rows that break the data contract go to ``rejects`` (Parquet, written atomically;
    with ``outputs``, as part of that set, appearing when the caller commits it) with a
    reason; past ``max_reject_share`` of the rows rejected, :class:`TooManyRejects` is
    raised and nothing written. ``progress`` is called with the rows of each batch done,
    and ``on_start`` once with the total row count when it is known up front.
    """
    if client is not None:  # the same job on a Dask cluster (ceecore.cluster; Dask is imported only then)
        from ceecore import cluster
        return cluster.run_consolidation(source, client=client, mapping=mapping, centers=centers, overrides=overrides,
                                         assign_by=assign_by, rejects=rejects, progress=progress, on_start=on_start,
                                         max_reject_share=max_reject_share, outputs=outputs, pseudonyms=pseudonyms)
    check_outputs({"the rejects file": rejects}, _listed(source))
    book = AccountBook(centers, threads)
    stats = IntakeStats()
    started = time.perf_counter()

    def fold(batch: pa.RecordBatch, mapping: ColumnMapping, where: str, columns: tuple[str, ...]) -> Intake:
        return Intake(batch, book.update(batch, mapping, where, checked=True), {})

    # One worker thread feeds the kernel, whose own threads check and fold each batch.
    reading = Reading(source, mapping or ColumnMapping(), 1, progress, on_start, max_reject_share, pseudonyms)
    with output_set(outputs) as into, _RejectSink(rejects, into) as sink:
        for _ in reading.each((), fold, lambda intake: None, stats, sink):
            pass
    accounts = book.result(assign_by, overrides)
    stats.seconds = time.perf_counter() - started
    return Consolidation(accounts, stats, book)


class _RejectSink:
    """Rejected rows to a Parquet file that appears only if the run completes (or nowhere)."""

    def __init__(self, path: str | os.PathLike[str] | None, into: OutputSet | None = None) -> None:
        self._sink = ParquetSink(path, REJECT_SCHEMA, into) if path is not None else None

    def write(self, chunk: Chunk, codes: np.ndarray, mapping: ColumnMapping) -> None:
        if self._sink is not None and codes.any():
            self._sink.write(reject_rows(chunk, codes, mapping))

    def __enter__(self) -> _RejectSink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._sink is not None:
            self._sink.__exit__(exc_type, exc, tb)


Ingest = Callable[[pa.RecordBatch, ColumnMapping, str, tuple[str, ...]], Intake]
_MALFORMED = reason_code("malformed_csv_line")
T = TypeVar("T")


@dataclass(frozen=True)
class Reading:
    """What a job reads and how: ``source`` (paths or Arrow data) under ``mapping``, on
    ``threads`` worker threads; ``on_start`` hears the total rows once (when known up
    front), ``progress`` the rows of each batch done."""

    source: Any
    mapping: ColumnMapping = field(default_factory=ColumnMapping)
    threads: int = 1
    progress: Callable[[int], None] | None = None
    on_start: Callable[[int | None], None] | None = None
    max_reject_share: float | None = None
    pseudonyms: Pseudonymiser | None = None

    def each(self, columns: tuple[str, ...], ingest: Ingest, work: Callable[[Intake], T], stats: IntakeStats,
             rejects: _RejectSink) -> Iterator[T]:
        """``work(ingest(batch))`` for every batch, on the worker threads, the results in
        input order; each batch's rejects are written and its rows counted as its result
        comes back. Only the columns consolidation and ``columns`` need are read; past
        ``max_reject_share`` of the rows rejected, :class:`TooManyRejects` ends the read.
        With ``pseudonyms``, private ids are tokens from the start: no job, output or
        reject row sees them in clear."""
        mapping = self.mapping
        wanted = [mapping.source_of(c) for c in dict.fromkeys(CONSOLIDATION_COLUMNS + columns)]
        private = tuple(mapping.source_of(c) for c in PRIVATE_COLUMNS)
        sources, chunks = open_sources(self.source, text_columns=wanted, columns=wanted, checked=False)
        if self.on_start is not None:
            rows = [s.rows for s in sources]
            self.on_start(None if None in rows else sum(rows))

        def job(chunk: Chunk) -> tuple[Chunk, np.ndarray, T]:
            chunk.check(wanted)  # (here, on the worker threads: not in the read's one thread)
            if self.pseudonyms is not None:
                chunk = replace(chunk, batch=self.pseudonyms.batch(chunk.batch, private))
            intake = ingest(chunk.batch, mapping, chunk.source, columns)
            if chunk.malformed is not None:  # (all null: the contract rejected them already; say why)
                intake.codes[chunk.malformed] = _MALFORMED
            return chunk, intake.codes, work(intake)

        for chunk, codes, result in in_order(chunks, job, self.threads):
            stats.add(codes)
            rejects.write(chunk, codes, mapping)
            if self.progress is not None:
                self.progress(chunk.batch.num_rows)
            yield result
        stats.check_share(self.max_reject_share)


def _parse_only(centers: CenterMap | None) -> Ingest:
    """Checks and parses each batch with a book of its own (safe on any thread), folding
    nothing: memory does not grow with the input."""
    def parse(batch: pa.RecordBatch, mapping: ColumnMapping, source: str, columns: tuple[str, ...]) -> Intake:
        return AccountBook(centers, threads=1).parse(batch, mapping, source, columns, checked=True)
    return parse


def fold_lines(source: Any, update: Callable[[Intake], Any], columns: tuple[str, ...], *,
               mapping: ColumnMapping | None = None, centers: CenterMap | None = None, threads: int | None = None,
               rejects: str | os.PathLike[str] | None = None, stats: IntakeStats | None = None,
               progress: Callable[[int], None] | None = None, on_start: Callable[[int | None], None] | None = None,
               max_reject_share: float | None = None, outputs: OutputSet | None = None,
               pseudonyms: Pseudonymiser | None = None, inputs: Iterable[Any] = ()) -> IntakeStats:
    """Reads ``source`` once, every batch checked and parsed on ``threads`` threads, and
    hands each parsed batch (``columns`` read beyond consolidation's) to ``update``: the
    read of the jobs that fold the lines into a state of their own (``ceecore trends``,
    ``ceecore uniformity``). Rejected rows go to ``rejects`` (with ``outputs``, as part of
    that set), which must not be an input (nor one of ``inputs``); returns the counts."""
    check_outputs({"the rejects file": rejects}, _listed(source) + list(inputs))
    stats = stats if stats is not None else IntakeStats()
    reading = Reading(source, mapping or ColumnMapping(), resolve_threads(threads), progress, on_start,
                      max_reject_share, pseudonyms)
    with output_set(outputs) as into, _RejectSink(rejects, into) as rejected:
        for _ in reading.each(columns, _parse_only(centers or CenterMap.default()), update, stats, rejected):
            pass
    return stats


# ---------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Labels:
    """What to learn from: the outcome column (true = a violation; null = not inspected),
    optionally the revenue recovered, extra categorical input columns to keep outcome
    histories of (beside importer, manufacturer, filer, port, HTS, origin and their
    pairs), and combinations of keys to keep histories of (``history_combined``; see
    :class:`History`)."""

    label: str = "violation"
    revenue: str | None = None
    history_keys: tuple[str, ...] = ()
    history_combined: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        # The outcomes are contract columns (parsed and checked like the others); a file
        # that names them otherwise maps its columns to them (--map fraud=violation).
        if self.label != "violation":
            raise ValueError(f"labels must be the canonical outcome column 'violation', not {self.label!r}: "
                             f"map yours to it (--map {self.label}=violation)")
        if self.revenue not in (None, "revenue_recovered"):
            raise ValueError(f"the revenue must be the canonical column 'revenue_recovered', not {self.revenue!r}: "
                             f"map yours to it (--map {self.revenue}=revenue_recovered)")
        self.check(ColumnMapping())

    def check(self, mapping: ColumnMapping) -> None:
        """Refuses history keys that are (or ``mapping`` makes) a key history already
        keeps, or anything but text: above all an outcome, whose history would leak it."""
        own = ("importer_id", "manufacturer_id", "filer_code", "port_code", "hts_code", "country_of_origin")
        targets = {key: mapping.columns.get(key, key) for key in self.history_keys}
        clash = [key for key, target in targets.items() if target in own or CANONICAL.get(target, "text") != "text"]
        if clash:
            raise ValueError(f"history keys are extra categorical columns (the importer, manufacturer, filer, "
                             f"port, HTS and origin histories are kept already; outcomes cannot be keys): not {clash}")
        self.history()  # the combinations checked

    def history(self) -> History:
        """An empty outcome history of these keys."""
        return History(self.history_keys, combined=self.history_combined)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(["filer_code", self.label, *([self.revenue] if self.revenue else []),
                                    *self.history_keys]))


def fit(
    source: Any,
    *,
    mapping: ColumnMapping | None = None,
    centers: CenterMap | None = None,
    config: ScoringConfig | None = None,
    labels: Labels | str | None = None,
    threads: int | None = None,
    rejects: str | os.PathLike[str] | None = None,
    stats: IntakeStats | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    max_reject_share: float | None = None,
    outputs: OutputSet | None = None,
    pseudonyms: Pseudonymiser | None = None,
    client: Any = None,
) -> Model:
    """Industry baselines from the history in ``source``, as a scoring model.

    With ``labels`` (a :class:`Labels`, or the outcome column's name), the model also
    keeps the outcome history and learns, with gradient-boosted trees, how to combine
    the indicators, the history rates and the line's numbers (``ceecore[learn]``).
    Rejected rows go to ``rejects`` (with ``outputs``, as part of that set); the read's
    counts are added to ``stats``; past ``max_reject_share`` of the rows rejected,
    :class:`TooManyRejects` is raised.
    """
    if client is not None:  # the same job on a Dask cluster (ceecore.cluster; Dask is imported only then)
        from ceecore import cluster
        return cluster.fit(source, client=client, mapping=mapping, centers=centers, config=config, labels=labels,
                           threads=threads, rejects=rejects, stats=stats, progress=progress, on_start=on_start,
                           max_reject_share=max_reject_share, outputs=outputs, pseudonyms=pseudonyms)
    check_outputs({"the rejects file": rejects}, _listed(source))
    book = AccountBook(centers, threads)
    reading = Reading(source, mapping or ColumnMapping(), book.threads, progress, on_start, max_reject_share,
                          pseudonyms)
    with output_set(outputs) as into:
        return _fit(reading, book, config, Labels(labels) if isinstance(labels, str) else labels,
                    stats if stats is not None else IntakeStats(), rejects, into)[0]


def _fit(reading: Reading, book: AccountBook, config: ScoringConfig | None, labels: Labels | None,
         stats: IntakeStats, rejects: str | os.PathLike[str] | None, into: OutputSet | None,
         spill: str | os.PathLike[str] | None = None, on_read: Callable[[], None] | None = None
         ) -> tuple[Model, LineSpill | None]:
    """The model of :func:`fit`; with ``spill`` (a file path), also the accepted lines,
    parsed, kept there for a scoring pass that does not read the input again. ``on_read``
    is called once every line is read, before the model's lookups are built (the fit's
    peak): :func:`run` takes the accounts then, letting the book's state go first."""
    config = config or ScoringConfig.default()
    if labels is not None:
        labels.check(reading.mapping)
    columns = SCORING_COLUMNS + (labels.columns if labels else ())
    baselines = Baselines(config.tallies)
    kept = LineSpill(spill, scoring_input_types(labels.history_keys if labels else None)) if spill else None
    histories = _read(reading, book, baselines, columns, stats, rejects, into, kept, labels)
    if on_read is not None:
        on_read()
    _release_memory()  # the read's batches (and what on_read let go), before the model's lookups are built
    history = labels.history() if labels else None
    for part in histories:
        history.merge(part)
    model = Model(baselines, config, model_meta(baselines, reading.pseudonyms), history)
    return (_learn(reading, book, model, labels) if labels else model), kept


def _read(reading: Reading, book: AccountBook, baselines: Baselines, columns: tuple[str, ...], stats: IntakeStats,
          rejects: str | os.PathLike[str] | None, into: OutputSet | None, kept: LineSpill | None,
          labels: Labels | None = None, after: int | None = None) -> list[History]:
    """One pass over the input: every batch checked, parsed and consolidated into
    ``book``, its lines (only those dated after day ``after``, if given) folded into
    ``baselines``, kept in ``kept`` (a spill) and, with ``labels``, their outcomes in
    per-thread histories (returned, to be merged)."""
    # Worker threads check and parse batches side by side; the baselines are one state,
    # folded one batch at a time, each batch's tallies spread over the threads (so the
    # state is never duplicated and nothing is merged). Outcome histories are kept per
    # thread and merged exactly, so neither depends on which thread took which batch.
    fitting = threading.Lock()
    histories: list[History] = []
    local = threading.local()

    def fold(intake: Intake) -> pa.RecordBatch | None:
        f = line_fields(intake)
        with fitting:
            baselines.update(f if after is None else _dated_after(f, after), book.threads)
        if labels is not None:
            if not hasattr(local, "history"):
                local.history = labels.history()
                histories.append(local.history)
            local.history.update(local.history.keys(intake, f), outcomes(intake, f, labels.label, labels.revenue))
        return kept.batch(intake) if kept is not None else None

    with _RejectSink(rejects, into) as sink:
        for lines in reading.each(columns, partial(book.ingest, checked=True), fold, stats, sink):
            if kept is not None:
                kept.write(lines)
    if kept is not None:
        kept.close()
    return histories


def _dated_after(f: LineFields, day: int) -> LineFields:
    """The lines of ``f`` dated after ``day``."""
    keep = f.day > day
    return f if keep.all() else LineFields(**{name.name: getattr(f, name.name)[keep] for name in fields(LineFields)})


def _learn(reading: Reading, book: AccountBook, model: Model, labels: Labels) -> Model:
    """The model with trees trained on the inspected lines of ``source``, each line's
    history taken out of its own fold (so no line learns from its own outcome)."""
    columns = SCORING_COLUMNS + labels.columns

    def rows(intake: Intake) -> tuple[np.ndarray, np.ndarray]:
        f = line_fields(intake)
        outcome = outcomes(intake, f, labels.label, labels.revenue)
        X = model.features(intake, f, outcome.fold)[0]
        return X[outcome.inspected], outcome.violation[outcome.inspected]

    again = IntakeStats()
    quiet = replace(reading, progress=None, on_start=None, max_reject_share=None)  # the second reading reports nothing
    parts = list(quiet.each(columns, _parse_only(book.centers), rows, again, _RejectSink(None)))
    _check_replayed(model.baselines.lines, again)
    X = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, len(model.feature_names())))
    y = np.concatenate([p[1] for p in parts]).astype(np.int64) if parts else np.zeros(0, np.int64)
    trees = train(X, y, model.feature_names(), threads=book.threads)
    training = {"lines": int(len(y)), "violations": int(y.sum()), "params": TRAINING, "prior": model.history.prior}
    learned = Learned(labels.label, labels.revenue, trees, training)
    return model.with_learned(learned)


def _check_replayed(lines: int, second: IntakeStats) -> None:
    """Refuses a source that gave other lines the second time it was read (a stream, say)."""
    if second.accepted != lines:
        raise ValueError(f"the input gave {second.accepted:,} lines on its second reading, {lines:,} on its first: "
                         "this job reads it twice, so give files or a table, not a one-time stream")


def merge_models(models: Iterable[Model | str | os.PathLike[str]]) -> Model:
    """One model from models fitted on parts of the history (in other processes, say):
    the same model, to the byte, as one fit on all their lines.

    The models must have the same scoring config.
    """
    loaded = [m if isinstance(m, Model) else Model.load(m) for m in models]
    if not loaded:
        raise ValueError("merge_models needs at least one model")
    config = loaded[0].config
    for model in loaded[1:]:
        if model.config != config:
            raise ValueError("cannot merge models fitted with different scoring configs")
    if any(model.learned is not None for model in loaded):
        raise ValueError("models that learned from outcomes cannot be merged (trees do not add up): merge "
                         "unlabelled fits, or fit with labels on the whole history")
    keys = {model.meta.get(PSEUDONYM_KEY) for model in loaded}
    if len(keys) > 1:
        raise ValueError("cannot merge models whose ids were pseudonymised under different keys (or some not at all)")
    baselines = Baselines(config.tallies)
    for model in loaded:
        baselines.merge(model.baselines)
    meta = model_meta(baselines)
    if None not in keys:
        meta[PSEUDONYM_KEY] = keys.pop()
    return Model(baselines, config, meta)


def model_meta(baselines: Baselines, pseudonyms: Pseudonymiser | None = None) -> dict[str, Any]:
    """What a model records of its data: lines and date range (nothing that varies by run),
    and the fingerprint of the key its ids were pseudonymised with, if they were."""
    span = baselines.day_range()
    dates = [str(np.datetime64(d, "D")) for d in span] if span else [None, None]
    meta = {"lines": baselines.lines, "first_date": dates[0], "last_date": dates[1]}
    if pseudonyms is not None:
        meta[PSEUDONYM_KEY] = pseudonyms.fingerprint
    return meta


@dataclass
class ScoreRun:
    """What :func:`score` produced: the scored lines (or the file they went to), counts,
    and what the set's accounts and worklist are made of (each Center's and each account's
    best lines, each account's evidence)."""

    lines: pa.Table | None
    stats: IntakeStats
    top: BestLinesPerCenter
    accounts_top: BestLinesPerAccount
    evidence: AccountEvidence
    views: PeriodViews | None = None


@dataclass
class PeriodViews:
    """What a scored set shows of its period beside the scores: the monthly trends per
    Center with their shifts (:class:`~ceecore.trends.Trends`) and each port against the
    others (:class:`~ceecore.uniformity.Uniformity`), folded from the lines the scoring
    pass reads (no read of its own).

    Their state grows with the lines' distinct keys, nearly as fast as the lines. Given
    a ``scratch`` directory, it is never held whole: while the lines are scored, only
    the trends' :data:`~ceecore.trends.WHOLE_TALLIES` are folded (monthly totals, each
    account's first and last month), and each Center's lines are kept in a file of their
    own there (their parse, outcomes and importer ids); :meth:`write` then reads them one
    Center per thread at a time (``threads`` of them side by side), once the scores are
    written (see the README)."""

    trends: Trends
    uniformity: Uniformity
    scratch: Path | None = None
    threads: int = 1
    _kept: dict[int, LineSpill] = field(default_factory=dict)  # Center index -> its lines
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, centers: CenterMap, history: Model | None = None, scratch: Path | None = None,
           threads: int = 1) -> PeriodViews:
        """Empty views; with ``history`` (the model a period is scored against), an
        account is new only if that history never saw it; ``scratch`` and ``threads``: see
        the class."""
        trends = Trends.for_model(history, centers) if history is not None else Trends(centers)
        return cls(trends, Uniformity(centers), scratch, threads)

    def update(self, intake: Intake) -> None:
        """Folds one batch's lines in (any thread)."""
        if self.scratch is None:
            self.trends.update(intake)
            self.uniformity.update(intake)
            return
        self.trends.update(intake, WHOLE_TALLIES)
        center = intake.parsed["center"]
        rows = np.flatnonzero(center >= 0)  # (lines of no Center are in no view)
        rows = rows[np.argsort(center[rows], kind="stable")]
        if len(rows) == 0:
            return
        starts = np.flatnonzero(np.r_[True, np.diff(center[rows]) != 0])
        ends = [*starts[1:], len(rows)]
        with self._lock:
            kept = [self._kept.setdefault(int(c), LineSpill(self.scratch / f".views-{c}.arrow", _VIEW_COLUMNS))
                    for c in center[rows[starts]]]
        # One batch of the lines sorted by Center; each Center's slice goes to its file.
        batch = kept[0].batch(Intake(intake.canonical, intake.codes, {k: v[rows] for k, v in intake.parsed.items()}))
        with self._lock:
            for spill, start, end in zip(kept, starts, ends):
                spill.write(batch.slice(start, end - start))

    def merge(self, other: PeriodViews) -> None:
        """Adds the views of other lines (another process's, say): exact, in any order."""
        self._fold()
        other._fold()
        self.trends.merge(other.trends)
        self.uniformity.merge(other.uniformity)

    def to_arrow(self) -> tuple[pa.Table, pa.Table]:
        """The two states as tables, to cross processes (see :meth:`from_arrow`)."""
        self._fold()
        return self.trends.to_arrow(), self.uniformity.to_arrow()

    @classmethod
    def from_arrow(cls, tables: tuple[pa.Table, pa.Table], centers: CenterMap,
                   history: Model | None = None) -> PeriodViews:
        """The views :meth:`to_arrow` wrote (each state checked as it loads)."""
        known = history_accounts(history) if history is not None else None
        return cls(Trends.from_arrow(tables[0], centers, known), Uniformity.from_arrow(tables[1], centers))

    def write(self, out: Path) -> None:
        """``trends.parquet``, ``shifts.parquet`` and ``uniformity.parquet`` into ``out``;
        the lines kept in ``scratch`` are read (by Center, a few side by side: the same
        tables as the whole states give) and removed."""
        if self.scratch is None:
            self.trends.write(out / "trends.parquet", out / "shifts.parquet")
            write_table(self.uniformity.result(), out / "uniformity.parquet")
            return
        view, compared = TrendsView.start(self.trends), []

        def taken(read: tuple[PieceRows, dict[str, np.ndarray]]) -> None:
            view.add(read[0])
            compared.append(read[1])
            _release_memory()

        self._side_by_side(lambda kept: self._read(kept, view), taken)
        series, shifts = view.result()
        write_table(shifts, out / "shifts.parquet")
        write_table(series, out / "trends.parquet")
        del series, shifts
        write_table(comparison_table(compared, self.uniformity.centers), out / "uniformity.parquet")

    def _side_by_side(self, work: Callable[[LineSpill], T], taken: Callable[[T], None]) -> None:
        """``work`` of each Center's kept lines (handed over: no longer held here) on the
        threads, each result handed to ``taken`` on this thread as it comes. The most
        lines first; a Center is started beside others only if the lines in flight stay
        within twice the largest Center's (two of the largest at most; with the folds
        compiled, this did not raise a run's peak where measured: see the README). If
        anything fails, the Centers not yet started stay kept here."""
        waiting = sorted(self._kept.items(), key=lambda item: (-item[1].lines, item[0]))
        self._kept.clear()
        budget = 2 * waiting[0][1].lines if waiting else 0
        running: dict[Future[T], int] = {}
        try:
            with ThreadPoolExecutor(self.threads) as pool:
                while waiting or running:
                    for item in list(waiting):
                        lines = item[1].lines
                        if len(running) < self.threads and (not running or sum(running.values()) + lines <= budget):
                            waiting.remove(item)
                            running[pool.submit(work, item[1])] = lines
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        del running[future]
                        taken(future.result())
        finally:
            self._kept.update(waiting)

    def _pieces(self) -> Iterator[tuple[Trends, Uniformity]]:
        """Each Center's kept lines folded into a piece of the trends and a uniformity
        state, one Center at a time (nothing of a piece held here once it is handed out)."""
        while self._kept:
            yield self._piece(self._kept.pop(min(self._kept)))

    def _read(self, kept: LineSpill, view: TrendsView) -> tuple[PieceRows, dict[str, np.ndarray]]:
        """A Center's rows of the trends ``view`` and its ports' comparisons, each of its
        states let go once read (any thread)."""
        trends, uniformity = self._piece(kept)
        rows = view.rows(trends)
        del trends  # (before the ports are compared)
        return rows, uniformity.comparisons()

    def _piece(self, kept: LineSpill) -> tuple[Trends, Uniformity]:
        """The trends' :data:`~ceecore.trends.PIECE_TALLIES` and the uniformity state of
        one Center's kept lines; their file removed."""
        kept.close()
        trends, uniformity = Trends(self.trends.centers, self.trends.known), Uniformity(self.uniformity.centers)
        for intake in kept.intakes():
            trends.update(intake, PIECE_TALLIES)
            uniformity.update(intake)
        os.unlink(kept.path)
        return trends, uniformity

    def _fold(self) -> None:
        """The kept lines folded into the states (wanted whole: to merge or to send)."""
        if self.scratch is not None:
            for trends, uniformity in self._pieces():
                self.trends.merge(trends)
                self.uniformity.merge(uniformity)
            self.scratch = None


# The canonical columns each Center's kept lines carry beside their parse (the outcomes; the
# importers' ids, for the accounts a finding names).
_VIEW_COLUMNS = {name: kind for name, kind in scoring_input_types().items() if name in ("importer_id", *OUTCOME_COLUMNS)}


def score(
    source: Any,
    model: Model | str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    mapping: ColumnMapping | None = None,
    centers: CenterMap | None = None,
    threads: int | None = None,
    rejects: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    out_of_fold: bool = False,
    max_reject_share: float | None = None,
    outputs: OutputSet | None = None,
    pseudonyms: Pseudonymiser | None = None,
    client: Any = None,
) -> ScoreRun:
    """Scores every line of ``source``: to ``output`` (Parquet, streamed) or in memory.

    ``output`` and ``rejects`` appear together when the job is done (with ``outputs``,
    when the caller commits that set); past ``max_reject_share`` of the rows rejected,
    :class:`TooManyRejects` is raised and neither is written. ``out_of_fold``:
    ``source`` is what a learned model was fitted on; each line's history then leaves
    out its entry's fold, as in training (see :func:`run`).
    """
    if client is not None:  # the same job on a Dask cluster (ceecore.cluster; Dask is imported only then)
        from ceecore import cluster
        return cluster.score(source, model, client=client, output=output, mapping=mapping, centers=centers,
                             rejects=rejects, progress=progress, on_start=on_start, out_of_fold=out_of_fold,
                             max_reject_share=max_reject_share, outputs=outputs, pseudonyms=pseudonyms)
    check_outputs({"the rejects file": rejects, "the output": output},
                  _listed(source) + ([] if isinstance(model, Model) else [model]))
    if not isinstance(model, Model):
        model = Model.load(model)
    centers = centers or CenterMap.default()
    workers = resolve_threads(threads)
    stats = IntakeStats()
    check_pseudonyms(model.meta, pseudonyms)
    reading = Reading(source, mapping or ColumnMapping(), workers, progress, on_start, max_reject_share, pseudonyms)
    with output_set(outputs) as into, _RejectSink(rejects, into) as rejected:
        def each(work: Callable[[Intake], Any]) -> Iterator[Any]:
            return reading.each(model.input_columns, _parse_only(centers), work, stats, rejected)

        return _score(each, model, centers, output, out_of_fold, stats, into)


def _score(each: Callable[[Callable[[Intake], Any]], Iterator[Any]], model: Model, centers: CenterMap,
           output: str | os.PathLike[str] | None, out_of_fold: bool, stats: IntakeStats,
           into: OutputSet | None = None, learned_until: int | None = None,
           views: PeriodViews | None = None) -> ScoreRun:
    """Scores the intakes ``each`` hands to a work function (on its threads, results in
    input order): the lines to ``output`` (Parquet) or in memory, each Center's and each
    account's best lines and evidence kept on the side (the inspections of lines dated
    up to ``learned_until`` left out: a learned model's outcome history holds them), and
    the lines folded into ``views``."""
    top = BestLinesPerCenter(model.config.worklist, model.config.exploration_seed)
    accounts_top = BestLinesPerAccount(model.config.account_top_lines, model.config.enabled)
    evidence = AccountEvidence(model.config.enabled)
    kept: list[pa.RecordBatch] = []
    sink = ParquetSink(output, model.lines_schema, into, **LINES_PARQUET_OPTIONS) if output is not None else None

    def work(intake: Intake) -> tuple[pa.RecordBatch, pa.Table, tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        scored = score_intake(model, intake, centers, out_of_fold)
        if intake.codes.any():  # (replayed lines are all accepted: nothing to filter, nothing copied)
            scored = scored.filter(pc.is_null(scored.column("reject_reason")))
        lines = scored.drop_columns(["reject_reason"])
        importers = intake.parsed["importer_hash"]
        f = line_fields(intake)
        seen = outcomes(intake, f, revenue=None)
        fresh = seen.inspected if learned_until is None else seen.inspected & (f.day > learned_until)
        if views is not None:
            views.update(intake)
        return (lines, top.of(lines, intake.parsed["entry_hash"]), accounts_top.of(lines, importers),
                evidence.of(lines, importers, fresh, seen.violation))

    try:
        for lines, top_lines, account_lines, inspected in each(work):
            top.add(top_lines)
            accounts_top.add(account_lines)
            evidence.add(inspected)
            if sink is not None:
                sink.write(lines)
            else:
                kept.append(lines)
        if sink is not None:
            sink.commit()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    table = pa.Table.from_batches(kept, model.lines_schema) if sink is None else None
    return ScoreRun(table, stats, top, accounts_top, evidence, views)


@dataclass
class RunSummary:
    """What :func:`run` or :func:`score_period` wrote and counted (also written to
    ``summary.json``): ``model`` is the model the lines were judged against as it was
    given or fitted (``model_path`` its file), ``period`` the scored lines' dates."""

    outputs: dict[str, str]
    stats: IntakeStats
    seconds: dict[str, float]
    accounts: int
    model: Model
    model_path: str | None = None
    period: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "version": __version__,
            "rows_read": s.rows_read, "lines_scored": s.accepted, "rejected": s.rejected,
            "rejects_by_reason": dict(sorted(s.by_reason.items())), "accounts": self.accounts,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "model": {**({"path": self.model_path} if self.model_path is not None else {}),
                      **{k: v for k, v in self.model.meta.items() if k != "config"}},
            "period": self.period, "config": self.model.config.to_dict(), "outputs": self.outputs,
        }


def run(
    source: Any,
    outdir: str | os.PathLike[str],
    *,
    mapping: ColumnMapping | None = None,
    centers: CenterMap | None = None,
    config: ScoringConfig | None = None,
    labels: Labels | str | None = None,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    max_reject_share: float | None = None,
    pseudonyms: Pseudonymiser | None = None,
    views: bool = True,
    client: Any = None,
) -> RunSummary:
    """Fits baselines on ``source`` (and, with ``labels``, learns from its outcomes as
    :func:`fit` does), then scores it: the whole job, into ``outdir``.

    With ``labels``, each line is scored with the history of the other folds than its
    entry's (no entry's own outcomes raise its scores), but the trees did learn from the
    inspected lines: to measure detection, score lines the model did not learn from (a
    later period, with :func:`score_period`).

    Writes the set of :func:`write_set` (``lines.parquet``, ``accounts.parquet``,
    ``worklist.parquet``, the period's views unless ``views`` is false (``trends.parquet``,
    ``shifts.parquet``, ``uniformity.parquet``: they take time, about 10 s at 5M
    lines, and little memory), ``rejects.parquet``, ``summary.json``) and ``model.arrow``.
    They are built in a hidden directory beside ``outdir`` and swapped in whole once the
    job is done (see :func:`ceecore.io.swap_directory`): a reader of ``outdir`` sees the
    whole previous set or the whole new one, and a failed run (or one that rejected more
    than ``max_reject_share`` of its rows) leaves the previous set as it was. ``outdir``
    may hold nothing but these files.
    """
    if client is not None:  # the same job on a Dask cluster (ceecore.cluster; Dask is imported only then)
        from ceecore import cluster
        return cluster.run(source, outdir, client=client, mapping=mapping, centers=centers, config=config,
                           labels=labels, threads=threads, progress=progress, on_start=on_start,
                           max_reject_share=max_reject_share, pseudonyms=pseudonyms, views=views)
    out = Path(outdir)
    _check_outdir(out, _listed(source), RUN_OUTPUTS)
    with OutputSet() as outputs:
        staging = outputs.directory(out)
        book = AccountBook(centers, threads)
        reading = Reading(source, mapping or ColumnMapping(), book.threads, progress, on_start, max_reject_share,
                          pseudonyms)
        summary = _run(reading, book, staging, out, config, Labels(labels) if isinstance(labels, str) else labels,
                       views)
    summary.outputs = {name: str(out / name) for name in summary.outputs}
    return summary


def score_period(
    source: Any,
    model: Model | str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    mapping: ColumnMapping | None = None,
    centers: CenterMap | None = None,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    max_reject_share: float | None = None,
    pseudonyms: Pseudonymiser | None = None,
    views: bool = True,
    client: Any = None,
) -> RunSummary:
    """Scores a new period against a model fitted on the history: the set :func:`run`
    writes, into ``outdir``, without the model (the model file is not rewritten).

    The period's accounts are consolidated over its lines, and every line and account is
    judged as :func:`run` on the history and the period together would judge it, with
    the history read once, long ago: the model's state goes on with the period's lines
    dated after its last day (an account's first day, months, products, origins and
    ports run on from the history; an account the model never saw is new), the norms are
    the history's with them, and a learned model's trees and outcome history stay as
    they were. Lines dated up to the model's last day are taken as known to it already,
    so scoring the history itself gives :func:`run`'s scores. With ``pseudonyms`` (the
    model's key) the ids are tokens from the start, as in the model. Output rules as for
    :func:`run`; ``outdir`` may hold nothing but the set's files; ``views`` as for
    :func:`run`. ``client``: the same job on a Dask cluster
    (:func:`ceecore.cluster.score_period`).
    """
    if client is not None:  # the same job on a Dask cluster (ceecore.cluster; Dask is imported only then)
        from ceecore import cluster
        return cluster.score_period(source, model, outdir, client=client, mapping=mapping, centers=centers,
                                    progress=progress, on_start=on_start, max_reject_share=max_reject_share,
                                    pseudonyms=pseudonyms, threads=threads, views=views)
    out = Path(outdir)
    path = None if isinstance(model, Model) else Path(model)
    _check_outdir(out, _listed(source) + ([path] if path is not None else []), SET_OUTPUTS)
    model = Model.load(path) if path is not None else model
    check_pseudonyms(model.meta, pseudonyms)
    with OutputSet() as outputs:
        staging = outputs.directory(out)
        book = AccountBook(centers, threads)
        reading = Reading(source, mapping or ColumnMapping(), book.threads, progress, on_start, max_reject_share,
                          pseudonyms)
        summary = _score_period(reading, book, model, path, staging, out, views)
    summary.outputs = {name: str(out / name) for name in summary.outputs}
    return summary


def _score_period(reading: Reading, book: AccountBook, model: Model, path: Path | None, out: Path,
                  final: Path, views: bool = True) -> RunSummary:
    """The job of :func:`score_period`, writing into ``out`` (the set's files named as in ``final``)."""
    paths = {name: out / name for name in SET_OUTPUTS}
    started = time.perf_counter()
    stats = IntakeStats()
    span = model.baselines.day_range()
    period = Baselines(model.baselines.tallies)
    spill = LineSpill(out / ".lines.arrow", scoring_input_types(model.history.extra if model.learned else None))
    _read(_twice(reading), book, period, model.input_columns, stats, paths["rejects.parquet"], None, spill,
          after=span[1] if span else None)
    accounts = _accounts_taken(book)
    judged = _extended(model, period)
    _release_memory()
    fitted = time.perf_counter()
    return write_set(out, judged, accounts,
                     _score_spill(spill, judged, book, paths["lines.parquet"], False, reading.progress,
                                  span[1] if span and model.learned is not None else None,
                                  PeriodViews.of(book.centers, model, out, book.threads) if views else None),
                     stats, (started, fitted), final=final, given=model, model_path=None if path is None else str(path))


def _accounts_taken(book: AccountBook) -> pa.Table:
    """The book's accounts, its state let go: the lines are all read, and scoring them
    does not need it."""
    accounts = book.result()
    book.clear()
    return accounts


def _twice(reading: Reading) -> Reading:
    """``reading``, telling of twice its rows: the job goes over its lines twice (the read,
    then the replay), so there is twice the work to show."""
    on_start = reading.on_start
    return replace(reading, on_start=(lambda total: on_start(None if total is None else 2 * total))
                   if on_start else None)


def _extended(model: Model, period: Baselines) -> Model:
    """``model`` with the ``period``'s state added (taken over: it is merged into), as
    one fit on the history and the period would give it; its config, key, trees and
    outcome history as they were."""
    if period.lines == 0:
        return model
    period.merge(model.baselines)
    meta = {**model.meta, **model_meta(period)}
    return Model(period, model.config, meta, model.history, model.learned)


def _score_spill(spill: LineSpill, model: Model, book: AccountBook, output: Path, out_of_fold: bool,
                 progress: Callable[[int], None] | None, learned_until: int | None = None,
                 views: PeriodViews | None = None) -> ScoreRun:
    """Scores the lines a first pass kept (not the input again) into ``output`` (see
    :func:`_score`); the spill is removed."""
    def replayed() -> Iterator[Intake]:
        for intake in spill.intakes():
            yield intake
            if progress is not None:
                progress(len(intake.codes))

    scored = _score(lambda work: in_order(replayed(), work, book.threads), model, book.centers, output, out_of_fold,
                    IntakeStats(), learned_until=learned_until, views=views)
    os.unlink(spill.path)
    return scored


def write_set(out: Path, model: Model, accounts: pa.Table, scored: ScoreRun, stats: IntakeStats,
              clock: tuple[float, float], *, final: Path | None = None, given: Model | None = None,
              model_path: str | None = None, extra: dict[str, Any] | None = None) -> RunSummary:
    """Completes a scored set in the directory ``out``, where the scoring pass streamed
    ``lines.parquet`` and the read its ``rejects.parquet``: ``accounts.parquet`` (the
    consolidated ``accounts`` with scores, reasons, ranks and facilitation tiers, see
    :func:`ceecore.worklist.account_scores`), ``worklist.parquet``, the period's views
    (``trends.parquet``, ``shifts.parquet``, ``uniformity.parquet``: see
    :class:`PeriodViews`) and ``summary.json``.

    ``model`` judged the lines (``scored``: what :func:`_score` collected from them,
    handed over: its best lines and evidence are let go once the accounts and worklist
    are written, before the views take their memory); ``stats`` counted the read;
    ``clock`` is (start, end of fitting), ``perf_counter`` times. summary.json names the
    files as in ``final`` (default ``out``) and reports ``given`` (the model as given, if
    ``model`` extends it), ``model_path`` and ``extra`` (what else the caller reports: a
    cluster's timings, say); it lists the other files the caller put in ``out`` too (a
    run's model).
    """
    paths = {name: out / name for name in SET_OUTPUTS}
    top, accounts_top, evidence, views = scored.top, scored.accounts_top, scored.evidence, scored.views
    del scored
    _release_memory()  # what the scoring pass's batches held, before the accounts are scored
    scored_accounts = account_scores(accounts, accounts_top.summary(model), model, evidence)
    write_table(scored_accounts, paths["accounts.parquet"])
    explore = round(model.config.worklist * model.config.exploration_share)
    write_table(worklist(top.picks(explore), scored_accounts, model.config.worklist, explore,
                         model.config.exploration_seed), paths["worklist.parquet"])
    n_accounts = scored_accounts.num_rows
    dates = [pc.min(accounts.column("first_entry_date")).as_py(), pc.max(accounts.column("last_entry_date")).as_py()]
    if views is not None:
        del scored_accounts, accounts, top, accounts_top, evidence  # (the views are read from here on)
        _release_memory()
        views.write(out)
    started, fitted = clock
    done = time.perf_counter()
    summary = RunSummary({}, stats,
                         {"fit": fitted - started, "score": done - fitted, "total": done - started},
                         n_accounts, given or model, model_path,
                         {"first_date": None if dates[0] is None else str(dates[0]),
                          "last_date": None if dates[1] is None else str(dates[1])})
    names = [*(name for name, path in paths.items() if name == "summary.json" or path.exists()),
             *sorted(p.name for p in out.iterdir() if p.name not in paths and not p.name.startswith("."))]
    summary.outputs = {name: str(out / name) for name in names}
    named = {name: str((final or out) / name) for name in names}
    with atomic_path(paths["summary.json"]) as tmp:
        tmp.write_text(json.dumps({**summary.to_dict(), **(extra or {}), "outputs": named}, indent=2) + "\n")
    return summary


def _release_memory() -> None:
    """Returns freed memory that the allocators still hold to the system: Arrow's pool
    and, where the C library is glibc, malloc's (numpy's arrays), so that a job's next
    phase starts from its state, not from the high-water mark of the last one."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def bound_heap() -> None:
    """Has glibc's malloc give blocks of 256 KiB and more their own mapping, returned to
    the system as they are freed. By default that threshold rises to the largest block
    freed so far (up to 32 MiB), and from then on a batch's arrays and the big
    temporaries (sorts and lookups over a whole tally) come from the heap, whose freed
    holes stay resident: a 5M-line ``run`` peaked about 80 MB higher (at 4 MiB, 15 to
    30 MB higher; fresh mappings cost page faults: about 2 s of CPU more at 5M lines than
    4 MiB, 4 s more than the default). Set for the whole process, so the CLI calls it,
    not the library (which runs inside other programs)."""
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 256 << 10)


_M_MMAP_THRESHOLD = -3  # (glibc's malloc.h)


def _glibc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


# The set of a scored period (:func:`write_set`); a run adds its model.
SET_OUTPUTS = ("lines.parquet", "accounts.parquet", "worklist.parquet", "trends.parquet", "shifts.parquet",
               "uniformity.parquet", "rejects.parquet", "summary.json")
RUN_OUTPUTS = SET_OUTPUTS + ("model.arrow",)


def _check_outdir(out: Path, inputs: list[Any], names: tuple[str, ...]) -> None:
    """Refuses an output directory inside an input directory (learning from labels reads
    the input again, and a later run of the same input would read the outputs as lines),
    one that holds an input (the model, say), or one holding anything but the job's
    ``names``: the whole directory is replaced."""
    check_outputs({"the output directory": out}, inputs)
    if out.exists() and not out.is_dir():
        raise ValueError(f"the output directory {out} exists and is not a directory")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in names)
        if foreign:
            raise ValueError(f"the output directory {out} holds other files than the job's outputs "
                             f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}): they would be "
                             "lost when the new outputs replace it; choose an empty or new directory")


def _listed(source: Any) -> list[Any]:
    """``source`` as a list of inputs (paths among them are checked against outputs)."""
    return list(source) if isinstance(source, (list, tuple)) else [source]


def _run(reading: Reading, book: AccountBook, out: Path, final: Path, config: ScoringConfig | None,
         labels: Labels | None, views: bool = True) -> RunSummary:
    """The job of :func:`run`, writing into ``out``: the fit, then the set of its own
    lines scored (as :func:`score_period` would score them, replayed from the fit's pass)."""
    started = time.perf_counter()
    stats = IntakeStats()
    taken: list[pa.Table] = []
    model, spill = _fit(_twice(reading), book, config, labels, stats, out / "rejects.parquet", None,
                        spill=out / ".lines.arrow", on_read=lambda: taken.append(_accounts_taken(book)))
    accounts = taken.pop()
    _release_memory()  # what the first pass's batches held goes back to the system before the second
    model.save(out / "model.arrow")
    fitted = time.perf_counter()
    span = model.baselines.day_range()
    return write_set(out, model, accounts,
                     _score_spill(spill, model, book, out / "lines.parquet", labels is not None, reading.progress,
                                  span[1] if span and labels is not None else None,
                                  PeriodViews.of(book.centers, scratch=out, threads=book.threads) if views else None),
                     stats, (started, fitted), final=final)


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
            columns.append(plain_rows(chunk.batch.column(names.index(src)), take))
        else:
            columns.append(pa.nulls(len(rows), pa.large_string()))
    return pa.RecordBatch.from_arrays(columns, schema=REJECT_SCHEMA)
