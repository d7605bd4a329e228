"""Scale-out on Dask: the batch jobs of :mod:`ceecore.pipeline` on a cluster, with the
results of one process.

The input is cut into partitions, file fragments (Parquet row groups or whole files,
Arrow IPC and CSV files) or the partitions of a dask DataFrame, and every worker reads
its own: no line travels through the scheduler or the client. Each partition's state
(accounts, baselines, each Center's and account's best lines) comes back as Arrow IPC
bytes and is merged in a tree of fixed shape, left before right, so the result is the
one of a single process whatever the workers, the partitioning or the timing: the merges
are exact, and the best-line collectors keep ties in input order. The model is
broadcast to the workers once; they write the scored lines as the part files of one
Parquet dataset directory, which appears atomically with the job's other outputs.

A worker that dies has its tasks rerun by Dask (the same partition gives the same
bytes); a cluster that goes away ends the job with :class:`ClusterError` and no output.
The scored lines, the rejects and the input must be on a file system every worker and
the client see under the same paths.

Dask is imported only here, and this module only when a job is given a cluster.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from distributed import Client, Future, LocalCluster, as_completed, get_worker
from distributed.comm import CommClosedError
from distributed.scheduler import KilledWorker

from ceecore._threads import in_order, resolve_threads
from ceecore.accounts import CONSOLIDATION_COLUMNS, AccountBook, Intake
from ceecore.baselines import Baselines
from ceecore.centers import CenterMap, Override
from ceecore.fields import SCORING_COLUMNS, line_fields
from ceecore.history import History, outcomes
from ceecore.io import BATCH_ROWS, Chunk, OutputSet, ParquetSink, check_outputs, open_sources, output_set
from ceecore.learn import TRAINING, Learned, train
from ceecore.pipeline import (
    REJECT_SCHEMA, RUN_OUTPUTS, Consolidation, IntakeStats, Labels, PeriodViews, Reading, RunSummary, ScoreRun,
    SET_OUTPUTS, _check_outdir, _check_replayed, _dated_after, _extended, _listed, _parse_only, _score, model_meta,
    reject_rows, write_set,
)
from ceecore.privacy import Pseudonymiser, check_pseudonyms
from ceecore.schema import ColumnMapping
from ceecore.scoring import Model, ScoringConfig, scoring_input_types
from ceecore.spill import LineSpill
from ceecore.worklist import AccountEvidence, BestLinesPerAccount, BestLinesPerCenter

__all__ = ["Cluster", "ClusterError", "Fragment", "connect", "consolidate", "fit", "fragments", "run",
           "run_consolidation", "score", "score_period"]

FRAGMENT_ROWS = 1 << 23  # at most, by default: Parquet row groups are gathered into partitions of about this many
# Partitions per worker, by default: each partition's state is nearly as large as the
# whole (it grows with keys, not lines), so every extra one costs a merge; two let a
# worker that finishes early take another's, and a lost worker lose half its share.
PARTITIONS_PER_WORKER = 2
FAN_IN = 4  # states merged by one task (each merge decodes its inputs and encodes one state)


class ClusterError(ValueError):
    """The cluster went away (or cannot be reached) during a job: nothing was written."""


@dataclass
class WorkerTimes:
    """What one worker did in a job: partitions read, their rows, and the seconds it spent."""

    partitions: int = 0
    rows: int = 0
    seconds: float = 0.0


@dataclass
class Report:
    """A cluster job's timings: per phase on the client, per worker on the workers."""

    workers: dict[str, WorkerTimes] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)

    def add(self, timings: list[tuple[str, int, float]]) -> None:
        for worker, rows, seconds in timings:
            times = self.workers.setdefault(worker, WorkerTimes())
            times.partitions += 1
            times.rows += rows
            times.seconds += seconds

    def to_dict(self) -> dict[str, Any]:
        return {"phases": {k: round(v, 3) for k, v in self.phases.items()},
                "workers": {w: {"partitions": t.partitions, "rows": t.rows, "seconds": round(t.seconds, 3)}
                            for w, t in sorted(self.workers.items())}}

    def lines(self) -> list[str]:
        """The report as text, for a summary on the console."""
        out = ["cluster: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.phases.items())]
        for worker, t in sorted(self.workers.items()):
            rate = t.rows / t.seconds if t.seconds else 0.0
            out.append(f"  {worker:<28} {t.partitions:>4} partition tasks {t.rows:>14,} rows {t.seconds:>8.2f} s "
                       f"({rate:,.0f} rows/s)")
        return out


class Cluster:
    """A Dask client and the report of the last job run on it. Any job of this module
    takes a :class:`Cluster` or a plain ``distributed.Client``."""

    def __init__(self, client: Client, started: float = 0.0) -> None:
        self.client = client
        self.report = Report(phases={"start": started} if started else {})


@contextmanager
def connect(spec: str, workers_threads: int = 1) -> Iterator[Cluster]:
    """A cluster by ``spec``: ``local:N`` starts a ``LocalCluster`` of N worker
    processes (``workers_threads`` threads each) for the block; ``tcp://HOST:PORT``
    (or ``tls://``) connects to a running scheduler."""
    started = time.perf_counter()
    if spec.startswith("local:"):
        count = spec.removeprefix("local:")
        if not count.isdigit() or not 1 <= int(count) <= 1024:
            raise ValueError(f"--cluster {spec!r}: local:N takes a number of workers from 1 to 1024")
        import logging
        with LocalCluster(n_workers=int(count), threads_per_worker=workers_threads, processes=True,
                          dashboard_address=":0", silence_logs=logging.CRITICAL) as local, Client(local) as client:
            yield Cluster(client, time.perf_counter() - started)
        return
    if "://" not in spec:
        raise ValueError(f"--cluster {spec!r}: give local:N or a scheduler address such as tcp://HOST:8786")
    try:
        client = Client(spec, timeout="20s")
    except (OSError, TimeoutError, ValueError, TypeError) as exc:  # (unreachable, a bad address, TLS not set up)
        raise ClusterError(f"cannot reach the Dask scheduler at {spec}: {exc}") from None
    with client:
        yield Cluster(client, time.perf_counter() - started)


def _cluster(client: Cluster | Client) -> Cluster:
    return client if isinstance(client, Cluster) else Cluster(client)


# ---------------------------------------------------------------------------- partitions


@dataclass(frozen=True)
class Fragment:
    """One partition of the input: a file (``row_groups`` None) or some row groups of a
    Parquet file, whose first row is row ``first_row`` of the file; or (``path`` None) a
    partition of a dask DataFrame. ``rows``: its row count, if known."""

    name: str
    path: str | None
    row_groups: tuple[int, ...] | None = None
    first_row: int = 0
    rows: int | None = None


def fragments(source: Any, rows: int | None = None, workers: int = 1) -> list[Fragment]:
    """The partitions of ``source`` (paths: files or directories, resolved as a single
    process resolves them), in input order: Parquet files cut at row-group bounds into
    parts of about ``rows`` rows (default: enough parts for :data:`PARTITIONS_PER_WORKER`
    per worker, each of 64k to :data:`FRAGMENT_ROWS` rows), other files whole."""
    found, _ = open_sources(source)
    if rows is None:
        total = sum(src.rows or 0 for src in found)
        rows = min(FRAGMENT_ROWS, max(BATCH_ROWS, total // (PARTITIONS_PER_WORKER * max(workers, 1))))
    parts: list[Fragment] = []
    for src in found:
        if not isinstance(src.obj, Path):
            raise TypeError(f"a cluster reads files (each worker its own): give paths, not {src.name}")
        if src.rows is None:  # (Arrow IPC, CSV: a file is a partition)
            parts.append(Fragment(src.name, str(src.obj)))
            continue
        meta = pq.read_metadata(src.obj)
        groups: list[int] = []
        first = taken = 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            taken += meta.row_group(g).num_rows
            if taken >= rows or g == meta.num_row_groups - 1:
                whole = len(groups) == meta.num_row_groups
                parts.append(Fragment(src.name, str(src.obj), None if whole else tuple(groups), first, taken))
                first, groups, taken = first + taken, [], 0
        if meta.num_row_groups == 0:
            parts.append(Fragment(src.name, str(src.obj), None, 0, 0))
    return parts


def _is_dask_frame(source: Any) -> bool:
    return hasattr(source, "to_delayed") and hasattr(source, "npartitions")


@dataclass(frozen=True)
class _Input:
    """A job's partitions, and for a dask DataFrame the futures of its partitions' data."""

    parts: list[Fragment]
    data: list[Future | None]

    @classmethod
    def of(cls, source: Any, client: Client, rows: int | None) -> _Input:
        if _is_dask_frame(source):
            data = client.compute(source.to_delayed())
            return cls([Fragment(f"<dask partition {i}>", None) for i in range(len(data))], data)
        parts = fragments(source, rows, len(client.scheduler_info(n_workers=-1)["workers"]))
        if not parts:
            raise ValueError("no input: give files, directories of them, or a dask DataFrame")
        return cls(parts, [None] * len(parts))

    @property
    def rows(self) -> int | None:
        counts = [p.rows for p in self.parts]
        return None if None in counts else sum(counts)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Job:
    """What every partition task needs to know (small; sent with each task)."""

    mapping: ColumnMapping
    centers: CenterMap
    config: ScoringConfig | None = None
    pseudonyms: Pseudonymiser | None = None
    consolidate: bool = False
    fit: bool = False
    scratch: str = ""  # where the partitions' rejects go (a hidden directory beside the outputs)
    lines: str = ""  # the scored lines' dataset directory
    labels: Labels | None = None  # with fit: also the outcome history
    spill: str = ""  # run: where each partition's parsed lines wait for the second pass (as in one process)
    out_of_fold: bool = False  # scoring the lines a learned model was fitted on
    views: bool = False  # scoring a set: the period's views folded too (pipeline.PeriodViews)
    after: int | None = None  # with fit: only lines dated after this day go into the baselines (a new period)
    history_keys: tuple[str, ...] | None = None  # a learned model's history keys, read for scoring with it
    learned_until: int | None = None  # inspections up to this day are in a learned model's history

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the first pass reads beyond consolidation's."""
        if not self.fit:
            return ()
        scored = ("filer_code", *self.history_keys) if self.history_keys is not None else ()
        return SCORING_COLUMNS + (self.labels.columns if self.labels else scored)


class _Rejects:
    """A partition's rejected rows to an Arrow IPC part file, each named and numbered as
    in its source file (so the rejects read as in one process)."""

    def __init__(self, index: int, part: Fragment, job: _Job) -> None:
        self.path = Path(job.scratch, f"rejects-{index:06d}.arrow") if job.scratch else None
        self.part, self._writer = part, None

    def write(self, chunk: Chunk, codes: np.ndarray, mapping: ColumnMapping) -> None:
        if self.path is not None and codes.any():
            chunk = replace(chunk, source=self.part.name, first_row=chunk.first_row + self.part.first_row)
            if self._writer is None:
                self._writer = ipc.new_file(self.path, REJECT_SCHEMA)
            self._writer.write_batch(reject_rows(chunk, codes, mapping))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _reading(part: Fragment, data: Any, job: _Job, columns: tuple[str, ...]) -> Reading:
    """How a worker reads its partition: a file as one process would, row groups through
    a reader of their own, a dask partition as an Arrow table."""
    if part.path is None:
        source: Any = pa.Table.from_pandas(data, preserve_index=False)
    elif part.row_groups is None:
        source = part.path
    else:
        file = pq.ParquetFile(part.path, pre_buffer=False)
        wanted = {job.mapping.source_of(c) for c in CONSOLIDATION_COLUMNS + columns}
        names = [c for c in file.schema_arrow.names if c in wanted]
        source = pa.RecordBatchReader.from_batches(
            pa.schema([file.schema_arrow.field(c) for c in names]),
            file.iter_batches(batch_size=BATCH_ROWS, row_groups=list(part.row_groups), columns=names))
    return Reading(source, job.mapping, 1, pseudonyms=job.pseudonyms)


def _where() -> str:
    try:
        return get_worker().address
    except ValueError:
        return "client"


# ---------------------------------------------------------------------------- the tasks


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _table(data: bytes) -> pa.Table:
    return ipc.open_stream(pa.py_buffer(data)).read_all()


@dataclass
class _Folded:
    """A partition's (or a merged run of partitions') first-pass state as Arrow IPC bytes."""

    accounts: bytes | None
    baselines: bytes | None
    stats: IntakeStats
    timings: list[tuple[str, int, float]]
    history: bytes | None = None


def _fold_part(index: int, part: Fragment, data: Any, job: _Job) -> _Folded:
    """The first pass over one partition, on a worker: its accounts and/or baselines."""
    started = time.perf_counter()
    book = AccountBook(job.centers, threads=1)
    baselines = Baselines(job.config.tallies) if job.fit and job.config else None
    labels = job.labels
    history = labels.history() if labels is not None and baselines is not None else None
    stats = IntakeStats()
    kept = _spill(index, job)

    def fold(intake: Intake) -> pa.RecordBatch | None:
        if baselines is not None:
            f = line_fields(intake)
            baselines.update(f if job.after is None else _dated_after(f, job.after), 1)
            if history is not None:
                history.update(history.keys(intake, f), outcomes(intake, f, labels.label, labels.revenue))
        return kept.batch(intake) if kept is not None else None

    ingest = partial(book.ingest, checked=True) if job.consolidate else _parse_only(job.centers)
    columns = job.columns
    rejects = _Rejects(index, part, job)
    try:
        reading = _reading(part, data, job, columns)
        for lines in reading.each(columns, ingest, fold, stats, rejects):  # type: ignore[arg-type]  (a reject sink)
            if kept is not None:
                kept.write(lines)
    finally:
        rejects.close()
    if kept is not None:
        kept.close()
    return _Folded(_ipc(book.to_arrow()) if job.consolidate else None,
                   _baseline_bytes(baselines) if baselines is not None else None, stats,
                   [(_where(), stats.rows_read, time.perf_counter() - started)],
                   _ipc(history.to_arrow()) if history is not None else None)


def _merge_folded(runs: list[_Folded], job: _Job) -> _Folded:
    """Adjacent runs of partitions as one (exact: the state one process builds)."""
    accounts = baselines = None
    if runs[0].accounts is not None:
        # (from_arrow folds each row into the book as merge does: the rows of several
        # states together are their merge, absorbed in one pass)
        tables = [_table(run.accounts) for run in runs]  # type: ignore[arg-type]
        accounts = _ipc(AccountBook.from_arrow(pa.concat_tables(tables), job.centers, threads=1).to_arrow())
    if runs[0].baselines is not None:
        state = Baselines(job.config.tallies if job.config else None)
        for run in runs:
            if run.baselines:
                state.merge(Baselines.from_arrow(_table(run.baselines)))
        baselines = _baseline_bytes(state)
    history = None
    if runs[0].history is not None and job.labels is not None:
        outcomes_seen = job.labels.history()
        for run in runs:
            outcomes_seen.merge(History.from_arrow(_table(run.history)))  # type: ignore[arg-type]
        history = _ipc(outcomes_seen.to_arrow())
    return _Folded(accounts, baselines, _added(*(run.stats for run in runs)), [t for run in runs for t in run.timings],
                   history)


def _baseline_bytes(state: Baselines) -> bytes:
    """Baselines as Arrow IPC bytes; none at all for a state of no lines (a partition
    whose rows were all rejected: an empty table names no tallies to read back)."""
    return _ipc(state.to_arrow()) if state.lines else b""


def _added(*stats: IntakeStats) -> IntakeStats:
    """The counts of several reads as one."""
    by_reason: dict[str, int] = {}
    for s in stats:
        for reason, count in s.by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + count
    return IntakeStats(sum(s.rows_read for s in stats), sum(s.accepted for s in stats),
                       sum(s.rejected for s in stats), dict(sorted(by_reason.items())))


_MODEL: tuple[str, Model] | None = None  # the model a worker process holds (loaded once per job)


def _model(key: str, data: bytes) -> Model:
    """The broadcast model, loaded (and checked, as any model file) once per worker."""
    def load() -> Model:
        with tempfile.TemporaryDirectory(prefix="ceecore-model-") as folder:
            path = Path(folder, "model.arrow")
            path.write_bytes(data)
            return Model.load(path)
    return _held(key, load)


def _held(key: str, build: Callable[[], Model]) -> Model:
    """The model of ``key`` this worker process holds, else ``build()``'s (one at a time)."""
    global _MODEL
    if _MODEL is None or _MODEL[0] != key:
        _MODEL = None
        _MODEL = (key, build())
    return _MODEL[1]


@dataclass
class _Scored:
    """A partition's (or a merged run's) best lines: per Center by score and by draw (none,
    b"", before any line), per account (importer hash, score, strengths), and its accounts'
    evidence and the period's views (b"": none kept), as Arrow IPC bytes."""

    by_score: bytes
    by_draw: bytes
    accounts: bytes
    evidence: bytes
    trends: bytes
    uniformity: bytes
    stats: IntakeStats
    timings: list[tuple[str, int, float]]


def _score_part(index: int, part: Fragment, data: Any, job: _Job, model_bytes: bytes, key: str) -> _Scored:
    """The scoring pass over one partition, on a worker: its lines to a part file of the
    dataset, its best lines back."""
    started = time.perf_counter()
    model = _model(key, model_bytes)
    stats = IntakeStats()
    reading = _reading(part, data, job, model.input_columns)
    rejects = _Rejects(index, part, job)
    kept = _spill(index, job)

    def each(work: Callable[[Intake], Any]) -> Iterator[Any]:
        if kept is not None and kept.path.exists():  # (a run: the lines the first pass parsed, not the input again)
            return in_order(_replayed(kept, stats), work, 1)
        parse = _parse_only(job.centers)
        return reading.each(model.input_columns, parse, work, stats, rejects)  # type: ignore[arg-type]

    if not Path(job.lines).is_dir():  # (the job ended, by an error elsewhere: write nothing)
        raise FileNotFoundError(f"{job.lines}: the job's output directory is gone")
    try:
        run = _score(each, model, job.centers, Path(job.lines, f"part-{index:06d}.parquet"), job.out_of_fold, stats,
                     learned_until=job.learned_until, views=PeriodViews.of(job.centers) if job.views else None)
    finally:
        rejects.close()
    if kept is not None:  # (a rerun of this task, should its result be lost, reads the input: the same lines)
        kept.path.unlink(missing_ok=True)
    return _scored(run, [(_where(), stats.rows_read, time.perf_counter() - started)])


def _spill(index: int, job: _Job) -> LineSpill | None:
    """Where a run keeps a partition's accepted lines, parsed, between its passes."""
    if not job.spill:
        return None
    return LineSpill(Path(job.spill, f"lines-{index:06d}.arrow"),
                     scoring_input_types(job.labels.history_keys if job.labels else job.history_keys))


def _replayed(kept: LineSpill, stats: IntakeStats) -> Iterator[Intake]:
    """A partition's kept lines as intakes, counted (every one accepted)."""
    for intake in kept.intakes():
        stats.rows_read += len(intake.codes)
        stats.accepted += len(intake.codes)
        yield intake


def _scored(run: ScoreRun, timings: list[tuple[str, int, float]]) -> _Scored:
    """What a scoring pass collected, as bytes to cross processes."""
    hashes, scores, strengths = _best_accounts(run.accounts_top)
    table = pa.table({"importer_hash": hashes, "score": scores,
                      **{name: strengths[:, i] for i, name in enumerate(run.accounts_top.names)}})
    views = run.views.to_arrow() if run.views is not None else (None, None)
    return _Scored(*(_ipc(t) if t is not None else b"" for t in (run.top.by_score, run.top.by_draw)),  # (b"": no lines)
                   _ipc(table), _ipc(run.evidence.to_arrow()), *(_ipc(t) if t is not None else b"" for t in views),
                   run.stats, timings)


def _best_accounts(accounts: BestLinesPerAccount) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not accounts.parts:
        return np.zeros(0, np.uint64), np.zeros(0), np.zeros((0, len(accounts.names)))
    accounts._reduce()  # (each account's best lines of all the parts added, in their order)
    return accounts.parts[0]


def _collected(scored: _Scored, model: Model, centers: CenterMap, history: Model | None = None) -> ScoreRun:
    """What ``scored`` holds, as the collectors one process's scoring pass fills (the
    views' new accounts are those ``history`` never saw)."""
    top, accounts = _collectors(scored, model)
    evidence = AccountEvidence.from_arrow(_table(scored.evidence), model.config.enabled)
    views = PeriodViews.from_arrow((_table(scored.trends), _table(scored.uniformity)), centers, history) \
        if scored.trends else None
    return ScoreRun(None, scored.stats, top, accounts, evidence, views)


def _collectors(scored: _Scored, model: Model) -> tuple[BestLinesPerCenter, BestLinesPerAccount]:
    """The best-line collectors holding ``scored``."""
    top = BestLinesPerCenter(model.config.worklist, model.config.exploration_seed)
    if scored.by_score and scored.by_draw:
        top.by_score, top.by_draw = _table(scored.by_score), _table(scored.by_draw)
    accounts = BestLinesPerAccount(model.config.account_top_lines, model.config.enabled)
    table = _table(scored.accounts)
    if table.num_rows:
        strengths = np.stack([table.column(n).to_numpy() for n in accounts.names], axis=1) if accounts.names \
            else np.zeros((table.num_rows, 0))
        accounts.add((table.column("importer_hash").to_numpy(), table.column("score").to_numpy(), strengths))
    return top, accounts


def _merge_scored(runs: list[_Scored], model_bytes: bytes, key: str, centers: CenterMap) -> _Scored:
    """Adjacent runs of partitions' best lines as one, each run's after the one before,
    so that ties keep input order as in one process; their evidence and views merged."""
    model = _model(key, model_bytes)
    merged = _collected(runs[0], model, centers)
    for run in runs[1:]:
        other = _collected(run, model, centers)
        if other.top.by_score is not None and other.top.by_draw is not None:
            merged.top.add((other.top.by_score, other.top.by_draw))
        for part in other.accounts_top.parts:
            merged.accounts_top.add(part)
        merged.evidence.merge(other.evidence)
        if merged.views is not None and other.views is not None:
            merged.views.merge(other.views)
    merged.stats = _added(*(run.stats for run in runs))
    return _scored(merged, [t for run in runs for t in run.timings])


@dataclass
class _Rows:
    """A partition's training rows (outcome ``y``, features ``x0``, ``x1``, ...) as Arrow IPC bytes."""

    table: bytes
    stats: IntakeStats


def _training_part(index: int, part: Fragment, data: Any, job: _Job, state: _Folded, key: str) -> _Rows:
    """The inspected lines of one partition as training rows, on a worker: their features,
    each line's history taken out of its own fold, and outcome (as ``pipeline._learn``
    computes them: the same rows, in input order once the partitions are joined)."""
    model = _held(key, lambda: _model_of(state, job))
    labels = job.labels
    assert labels is not None
    stats = IntakeStats()

    def rows(intake: Intake) -> tuple[np.ndarray, np.ndarray]:
        f = line_fields(intake)
        outcome = outcomes(intake, f, labels.label, labels.revenue)
        X = model.features(intake, f, outcome.fold)[0]
        return X[outcome.inspected], outcome.violation[outcome.inspected]

    reading = _reading(part, data, job, job.columns)
    parts = list(reading.each(job.columns, _parse_only(job.centers), rows, stats,
                              _Rejects(index, part, replace(job, scratch=""))))  # type: ignore[arg-type]
    X = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, len(model.feature_names())))
    y = np.concatenate([p[1] for p in parts]).astype(np.int64) if parts else np.zeros(0, np.int64)
    table = pa.table({"y": y, **{f"x{i}": X[:, i] for i in range(X.shape[1])}})
    return _Rows(_ipc(table), stats)


def _learned(cluster: Cluster, data: _Input, job: _Job, root: _Folded, model: Model, threads: int | None,
             progress: Callable[[int], None] | None) -> Model:
    """``model`` with trees trained on the inspected lines of every partition (a pass of
    their own; the client trains, as one process does, on ``threads`` threads)."""
    client = cluster.client
    started = time.perf_counter()
    state = client.scatter(replace(root, accounts=None, timings=[]), broadcast=True, hash=False)
    key = f"unlabelled:{time.time_ns()}"
    futures = [client.submit(_training_part, i, part, d, job, state, key, pure=False)
               for i, (part, d) in enumerate(zip(data.parts, data.data))]
    _each_done(futures, None)
    done = client.gather(futures)
    _check_replayed(model.baselines.lines, _added(*(r.stats for r in done)))
    tables = [_table(r.table) for r in done]
    cluster.report.phases["learn read"] = time.perf_counter() - started
    names = model.feature_names()
    X = np.concatenate([np.stack([t.column(f"x{i}").to_numpy() for i in range(len(names))], axis=1)
                        if len(names) else np.zeros((t.num_rows, 0)) for t in tables])
    y = np.concatenate([t.column("y").to_numpy() for t in tables]).astype(np.int64)
    trained = time.perf_counter()
    model = _with_trees(model, X, y, job.labels, resolve_threads(threads))  # type: ignore[arg-type]
    cluster.report.phases["learn"] = time.perf_counter() - trained
    return model


def _with_trees(model: Model, X: np.ndarray, y: np.ndarray, labels: Labels, threads: int) -> Model:
    """The model with trees trained on ``X``, ``y`` (as the end of ``pipeline._learn``)."""
    trees = train(X, y, model.feature_names(), threads=threads)
    training = {"lines": int(len(y)), "violations": int(y.sum()), "params": TRAINING, "prior": model.history.prior}
    learned = Learned(labels.label, labels.revenue, trees, training)
    return model.with_learned(learned)


# ---------------------------------------------------------------------------- on the client


def _tree(client: Client, futures: list[Future], merge: Callable[..., Any], *args: Any) -> Any:
    """The partitions' results merged on the workers, :data:`FAN_IN` adjacent ones at a
    time, left before right: a tree of fixed shape (so a fixed order), whatever finished
    first. Returns the root's value."""
    level = futures
    while len(level) > 1:
        level = [client.submit(merge, level[i:i + FAN_IN], *args, pure=False) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), FAN_IN)]
    return level[0].result()


def _each_done(futures: list[Future], progress: Callable[[int], None] | None) -> None:
    """Waits for the partition tasks, reporting the rows of each as it finishes (the row
    count alone crosses to the client); the first error is raised, and the tasks not yet
    started are then cancelled (a running one cannot be stopped: it finds its output
    directory gone, see :func:`_score_part`)."""
    client = futures[0].client if futures else None
    rows = [client.submit(_rows_of, f, pure=False) for f in futures] if client else []
    try:
        for done in as_completed(rows):
            count = done.result()
            if progress is not None:
                progress(count)
    except BaseException:
        if client is not None and client.status == "running":
            client.cancel(futures + rows)
        raise


def _rows_of(result: _Folded | _Scored | _Rows) -> int:
    return result.stats.rows_read


@contextmanager
def _guarded() -> Iterator[None]:
    """A cluster that goes away (or loses a partition's worker too often), or whose
    scheduler or workers cannot load ceecore's tasks, is one clear error."""
    try:
        yield
    except (CancelledError, CommClosedError, KilledWorker, TimeoutError) as exc:
        raise ClusterError(f"the Dask cluster went away during the job ({type(exc).__name__}: {exc}); "
                           "no output written") from None
    except (ImportError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "deserializ" not in str(exc):
            raise
        said = str(exc).splitlines()[0].split(". ")[0]
        raise ClusterError(f"the Dask scheduler or a worker cannot load ceecore's tasks ({type(exc).__name__}: "
                           f"{said}): install this same ceecore on every machine of the cluster; no output written"
                           ) from None


def _start(cluster: Cluster, source: Any, rows: int | None, on_start: Callable[[int | None], None] | None,
           passes: int = 1) -> _Input:
    """The job's partitions; ``on_start`` hears the rows to read (``passes`` times), if known."""
    data = _Input.of(source, cluster.client, rows)
    if on_start is not None:
        on_start(None if data.rows is None else passes * data.rows)
    return data


def _fold_pass(cluster: Cluster, data: _Input, job: _Job, progress: Callable[[int], None] | None) -> _Folded:
    """Reads every partition once on the workers and merges their states."""
    client = cluster.client
    started = time.perf_counter()
    futures = [client.submit(_fold_part, i, part, d, job, pure=False)
               for i, (part, d) in enumerate(zip(data.parts, data.data))]
    _each_done(futures, progress)
    read = time.perf_counter()
    root = _tree(client, futures, _merge_folded, job)
    cluster.report.phases["read"] = read - started
    cluster.report.phases["merge"] = time.perf_counter() - read
    cluster.report.add(root.timings)
    return root


def _rejects_out(job: _Job, parts: int, path: str | os.PathLike[str] | None, into: OutputSet | None) -> None:
    """The partitions' rejects, in input order, into one Parquet file (part of ``into``)."""
    if path is None:
        return
    with ParquetSink(path, REJECT_SCHEMA, into) as sink:
        for i in range(parts):
            part = Path(job.scratch, f"rejects-{i:06d}.arrow")
            if part.exists():
                with pa.memory_map(str(part)) as f:
                    reader = ipc.open_file(f)
                    for k in range(reader.num_record_batches):
                        sink.write(reader.get_batch(k))


@contextmanager
def _scratch(beside: str | os.PathLike[str]) -> Iterator[str]:
    """A hidden directory beside an output, for the workers' part files of rejects."""
    folder = Path(beside).absolute().parent
    folder.mkdir(parents=True, exist_ok=True)
    path = tempfile.mkdtemp(prefix=".ceecore-parts.", dir=folder)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _job(mapping: ColumnMapping | None, centers: CenterMap | None, scratch: str, **options: Any) -> _Job:
    return _Job(mapping or ColumnMapping(), centers or CenterMap.default(), scratch=scratch, **options)


def run_consolidation(
    source: Any,
    *,
    client: Cluster | Client,
    mapping: ColumnMapping | None = None,
    centers: CenterMap | None = None,
    overrides: Mapping[str, Override] | None = None,
    assign_by: Literal["lines", "value"] = "lines",
    rejects: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    max_reject_share: float | None = None,
    outputs: OutputSet | None = None,
    pseudonyms: Pseudonymiser | None = None,
    fragment_rows: int | None = None,
    **_: Any,
) -> Consolidation:
    """:func:`ceecore.pipeline.run_consolidation` on a cluster: the same accounts,
    rejects and counts."""
    cluster = _cluster(client)
    check_outputs({"the rejects file": rejects}, _listed(source))
    with _guarded(), _scratch(rejects or "accounts") as scratch, output_set(outputs) as into:
        job = _job(mapping, centers, scratch, pseudonyms=pseudonyms, consolidate=True)
        data = _start(cluster, source, fragment_rows, on_start)
        root = _fold_pass(cluster, data, job, progress)
        root.stats.check_share(max_reject_share)
        _rejects_out(job, len(data.parts), rejects, into)
    book = AccountBook.from_arrow(_table(root.accounts), job.centers)  # type: ignore[arg-type]
    started = time.perf_counter()
    accounts = book.result(assign_by, overrides)
    cluster.report.phases["accounts"] = time.perf_counter() - started
    root.stats.seconds = sum(cluster.report.phases.values()) - cluster.report.phases.get("start", 0.0)
    return Consolidation(accounts, root.stats, book)


def consolidate(source: Any, **options: Any) -> pa.Table:
    """The consolidated accounts of ``source`` on a cluster (options as for :func:`run_consolidation`)."""
    return run_consolidation(source, **options).accounts


def fit(
    source: Any,
    *,
    client: Cluster | Client,
    mapping: ColumnMapping | None = None,
    centers: CenterMap | None = None,
    config: ScoringConfig | None = None,
    labels: Labels | str | None = None,
    rejects: str | os.PathLike[str] | None = None,
    stats: IntakeStats | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    max_reject_share: float | None = None,
    outputs: OutputSet | None = None,
    pseudonyms: Pseudonymiser | None = None,
    threads: int | None = None,
    fragment_rows: int | None = None,
    **_: Any,
) -> Model:
    """:func:`ceecore.pipeline.fit` on a cluster: the same model, to the byte. With
    ``labels``, the trees are trained on the client, on ``threads`` threads, from the
    training rows the workers compute (as in one process: the same threads give the
    same trees)."""
    labels = _labels(labels, mapping)
    cluster = _cluster(client)
    check_outputs({"the rejects file": rejects}, _listed(source))
    with _guarded(), _scratch(rejects or "model") as scratch, output_set(outputs) as into:
        job = _job(mapping, centers, scratch, config=config or ScoringConfig.default(), pseudonyms=pseudonyms, fit=True,
                   labels=labels)
        data = _start(cluster, source, fragment_rows, on_start)
        root = _fold_pass(cluster, data, job, progress)
        root.stats.check_share(max_reject_share)
        model = _model_of(root, job)
        if labels is not None:
            model = _learned(cluster, data, job, root, model, threads, None)
        _rejects_out(job, len(data.parts), rejects, into)
    if stats is not None:
        total = _added(stats, root.stats)
        stats.rows_read, stats.accepted, stats.rejected, stats.by_reason = (
            total.rows_read, total.accepted, total.rejected, total.by_reason)
    return model


def _model_of(root: _Folded, job: _Job) -> Model:
    """The model of the merged baselines, as :func:`ceecore.pipeline.fit` builds it."""
    baselines = Baselines.from_arrow(_table(root.baselines)) if root.baselines else Baselines(job.config.tallies
                                                                                             if job.config else None)
    history = History.from_arrow(_table(root.history)) if root.history is not None else None
    return Model(baselines, job.config, model_meta(baselines, job.pseudonyms), history)


def _labels(labels: Labels | str | None, mapping: ColumnMapping | None) -> Labels | None:
    """The labels to learn from, checked against the mapping (as one process checks them)."""
    labels = Labels(labels) if isinstance(labels, str) else labels
    if labels is not None:
        labels.check(mapping or ColumnMapping())
    return labels


def score(
    source: Any,
    model: Model | str | os.PathLike[str],
    *,
    client: Cluster | Client,
    output: str | os.PathLike[str] | None = None,
    mapping: ColumnMapping | None = None,
    centers: CenterMap | None = None,
    rejects: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    out_of_fold: bool = False,
    max_reject_share: float | None = None,
    outputs: OutputSet | None = None,
    pseudonyms: Pseudonymiser | None = None,
    fragment_rows: int | None = None,
    **_: Any,
) -> ScoreRun:
    """:func:`ceecore.pipeline.score` on a cluster. ``output`` is a directory: the
    scored lines as a Parquet dataset, one part file per partition in input order."""
    if output is None:
        raise ValueError("scoring on a cluster writes the scored lines to a directory: give an output")
    cluster = _cluster(client)
    check_outputs({"the rejects file": rejects, "the output": output},
                  _listed(source) + ([] if isinstance(model, Model) else [model]))
    given = None if isinstance(model, Model) else model
    if not isinstance(model, Model):
        model = Model.load(model)
    check_pseudonyms(model.meta, pseudonyms)
    with _guarded(), _scratch(output) as scratch, output_set(outputs) as into:
        job = _job(mapping, centers, scratch, pseudonyms=pseudonyms, lines=str(into.directory(output)),
                   out_of_fold=out_of_fold)
        data = _start(cluster, source, fragment_rows, on_start)
        if given is None:  # (a model in memory: sent as the bytes of its file)
            given = Path(scratch, "model.arrow")
            model.save(given)
        scored = _score_pass(cluster, data, job, Path(given).read_bytes(), progress)
        scored.stats.check_share(max_reject_share)
        _rejects_out(job, len(data.parts), rejects, into)
    return _collected(scored, model, job.centers)


def _score_pass(cluster: Cluster, data: _Input, job: _Job, model_bytes: bytes,
                progress: Callable[[int], None] | None) -> _Scored:
    """Scores every partition on the workers (the model, a model file's bytes, sent to
    each once), their lines to part files of ``job.lines``; their best lines merged."""
    client = cluster.client
    started = time.perf_counter()
    key = hashlib.sha256(model_bytes).hexdigest()
    shared = client.scatter(model_bytes, broadcast=True, hash=False)
    futures = [client.submit(_score_part, i, part, d, job, shared, key, pure=False)
               for i, (part, d) in enumerate(zip(data.parts, data.data))]
    _each_done(futures, progress)
    scored = time.perf_counter()
    root = _tree(client, futures, _merge_scored, shared, key, job.centers)
    for leftover in Path(job.lines).glob(".*"):  # (staging of a worker that died while writing)
        leftover.unlink(missing_ok=True)
    cluster.report.phases["score"] = scored - started
    cluster.report.phases["score merge"] = time.perf_counter() - scored
    cluster.report.add(root.timings)
    return root


def run(
    source: Any,
    outdir: str | os.PathLike[str],
    *,
    client: Cluster | Client,
    mapping: ColumnMapping | None = None,
    centers: CenterMap | None = None,
    config: ScoringConfig | None = None,
    labels: Labels | str | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    max_reject_share: float | None = None,
    pseudonyms: Pseudonymiser | None = None,
    threads: int | None = None,
    views: bool = True,
    fragment_rows: int | None = None,
    **_: Any,
) -> RunSummary:
    """:func:`ceecore.pipeline.run` on a cluster: the same model file, accounts, line
    scores and worklist. ``lines.parquet`` is a directory here: a Parquet dataset of
    one part file per partition, in input order. With ``labels``, as :func:`fit` (a third
    pass over the input), each line then scored out of its own fold, as in one process."""
    labels = _labels(labels, mapping)
    cluster = _cluster(client)
    out = Path(outdir)
    _check_outdir(out, _listed(source), RUN_OUTPUTS)
    started = time.perf_counter()
    with _guarded(), OutputSet() as outputs, _scratch(out) as scratch:
        staging = outputs.directory(out)
        paths = {name: staging / name for name in RUN_OUTPUTS}
        paths["lines.parquet"].mkdir()
        job = _job(mapping, centers, scratch, config=config or ScoringConfig.default(), pseudonyms=pseudonyms,
                   consolidate=True, fit=True, lines=str(paths["lines.parquet"]), labels=labels,
                   out_of_fold=labels is not None, spill=scratch)
        data = _start(cluster, source, fragment_rows, on_start, passes=2)
        root = _fold_pass(cluster, data, job, progress)
        root.stats.check_share(max_reject_share)
        model = _model_of(root, job)
        if labels is not None:
            model = _learned(cluster, data, job, root, model, threads, None)
        model.save(paths["model.arrow"])
        fitted = time.perf_counter()
        # (the first pass wrote the rejects: the second writes none)
        span = model.baselines.day_range()
        scoring = replace(job, scratch="", views=views,
                          learned_until=span[1] if span and labels is not None else None)
        scored = _score_pass(cluster, data, scoring, paths["model.arrow"].read_bytes(), progress)
        _rejects_out(job, len(data.parts), paths["rejects.parquet"], None)
        book = AccountBook.from_arrow(_table(root.accounts), job.centers)  # type: ignore[arg-type]
        summary = write_set(staging, model, book.result(), _collected(scored, model, job.centers), root.stats,
                            (started, fitted), final=out, extra={"cluster": cluster.report.to_dict()})
    summary.outputs = {name: str(out / name) for name in summary.outputs}
    return summary


def score_period(
    source: Any,
    model: Model | str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    client: Cluster | Client,
    mapping: ColumnMapping | None = None,
    centers: CenterMap | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    max_reject_share: float | None = None,
    pseudonyms: Pseudonymiser | None = None,
    views: bool = True,
    fragment_rows: int | None = None,
    **_: Any,
) -> RunSummary:
    """:func:`ceecore.pipeline.score_period` on a cluster: the same set (``lines.parquet``
    a dataset directory, as for :func:`run`). The first pass consolidates the period and
    folds its lines dated after the model's last day into baselines merged with the
    model's; the second scores the kept lines against that, with the period's views."""
    cluster = _cluster(client)
    out = Path(outdir)
    path = None if isinstance(model, Model) else Path(model)
    _check_outdir(out, _listed(source) + ([path] if path is not None else []), SET_OUTPUTS)
    given = Model.load(path) if path is not None else model
    check_pseudonyms(given.meta, pseudonyms)
    span = given.baselines.day_range()
    started = time.perf_counter()
    with _guarded(), OutputSet() as outputs, _scratch(out) as scratch:
        staging = outputs.directory(out)
        (staging / "lines.parquet").mkdir()
        job = _job(mapping, centers, scratch, config=given.config, pseudonyms=pseudonyms, consolidate=True, fit=True,
                   lines=str(staging / "lines.parquet"), spill=scratch, after=span[1] if span else None,
                   history_keys=given.history.extra if given.learned is not None else None)
        data = _start(cluster, source, fragment_rows, on_start, passes=2)
        root = _fold_pass(cluster, data, job, progress)
        root.stats.check_share(max_reject_share)
        judged = _extended(given, _model_of(root, job).baselines)
        judged_file = Path(scratch, "model.arrow")
        judged.save(judged_file)
        fitted = time.perf_counter()
        scoring = replace(job, scratch="", views=views,
                          learned_until=span[1] if span and given.learned is not None else None)
        scored = _score_pass(cluster, data, scoring, judged_file.read_bytes(), progress)
        _rejects_out(job, len(data.parts), staging / "rejects.parquet", None)
        book = AccountBook.from_arrow(_table(root.accounts), job.centers)  # type: ignore[arg-type]
        summary = write_set(staging, judged, book.result(), _collected(scored, judged, job.centers, given), root.stats,
                            (started, fitted), final=out, given=given, model_path=None if path is None else str(path),
                            extra={"cluster": cluster.report.to_dict()})
    summary.outputs = {name: str(out / name) for name in summary.outputs}
    return summary
