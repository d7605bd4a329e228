"""The ``ceecore`` command line: a thin layer over the ceecore API.

Every command parses options, calls the library, and prints; exit code 2 means the
input could not be used (a missing column, an unreadable file, a bad option value).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import ceecore
from ceecore import synth
from ceecore.centers import CenterMap, load_overrides
from ceecore.evaluate import evaluate
from ceecore.io import OutputSet, atomic_path, check_outputs, output_format, write_table
from ceecore.pipeline import bound_heap
from ceecore.privacy import KEY_ENV, Pseudonymiser
from ceecore.report import write_report
from ceecore.schema import ColumnMapping
from ceecore.uniformity import MIN_LINES

PROGRESS_MIN_LINES = 500_000
MAX_GENERATED_LINES = 10**11
WORLD_BYTES_PER_ACCOUNT = 2_200  # what the generator holds per importer (1M accounts: 2.2 GB)


@contextmanager
def _usage_errors() -> Iterator[None]:
    """Turns input problems into one clear message and exit code 2."""
    try:
        yield
    except BrokenPipeError:  # the reader went away (`ceecore centers | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except (ValueError, OSError) as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(2)
    except MemoryError:
        click.echo("error: out of memory: the input or the options ask for more than this machine has", err=True)
        sys.exit(2)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _one_line(message: str) -> str:
    """``message`` with control characters escaped (``\\n``, ``\\x1b``): a file name, a
    column name or a value from outside can neither break a line nor drive the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)


def _center_map(centers_file: str | None, hts_map: str | None, replace: bool) -> CenterMap:
    if centers_file is None and hts_map is None:
        return CenterMap.default()
    return CenterMap.from_files(centers=centers_file, mapping=hts_map, replace=replace)


def _mapping(preset: str | None, mapping_file: str | None, pairs: tuple[str, ...],
             date_format: str | None = None) -> ColumnMapping:
    mapping = ColumnMapping.preset(preset) if preset else ColumnMapping()
    if mapping_file:
        mapping = mapping.then(ColumnMapping.from_toml(mapping_file))
    if pairs:
        mapping = mapping.then(ColumnMapping.from_pairs(pairs))
    return mapping.then(ColumnMapping(date_format=date_format)) if date_format else mapping


def _pseudonyms(key_file: str | None) -> Pseudonymiser | None:
    """The pseudonymiser of ``--pseudonymise KEYFILE``, else of the key in the environment, if any."""
    return Pseudonymiser.from_file(key_file) if key_file else Pseudonymiser.from_env()


def _rejects_path(output: str, rejects: str | None) -> str:
    """Where rejected rows go: ``rejects``, else OUTPUT with ``.rejects.parquet``."""
    if not Path(output).name:  # ("", ".", "/": no file to name the rejects after)
        raise ValueError(f"-o {output!r} is not a file name")
    return rejects or str(Path(output).with_suffix("")) + ".rejects.parquet"


def _checked_outputs(inputs: Iterable[str], output: str, rejects: str | None, fixed: str | None = None,
                     **others: tuple[str | None, str | None]) -> str:
    """The rejects path of a job writing ``output`` (of format ``fixed``, else the one
    its name says), its rejects and the ``others`` (option name without dashes ->
    (path or None, format or None)), once every name says its format and no output
    collides with another or with an input."""
    rejects_path = _rejects_path(output, rejects)
    output_format(output, fixed)
    output_format(rejects_path, "parquet")
    for path, kind in others.values():
        if path:
            output_format(path, kind)
    check_outputs({"--rejects": rejects_path, **{f"--{name}": path for name, (path, _) in others.items()},
                   "-o": output}, inputs)
    return rejects_path


@contextmanager
def _committing() -> Iterator[OutputSet]:
    """A job's output set, committed with SIGINT and SIGTERM held back: an interrupt
    stops the job before its outputs move into place, or after, never half way."""
    outputs = OutputSet()
    try:
        yield outputs
    except BaseException:
        outputs.abort()
        raise
    # Handlers, not a signal mask: any thread may take the signal, the main thread acts
    # (and only the main thread may set handlers: elsewhere no signal reaches the job).
    held: list[int] = []
    signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in signals}
    try:
        outputs.commit()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            signal.raise_signal(held[0])  # as if it came now


def _print_table(table: pa.Table) -> None:
    rows = [[("" if v is None else _one_line(str(v))) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(name)] + [len(r[i]) for r in rows]) for i, name in enumerate(table.column_names)]
    click.echo("  ".join(name.ljust(w) for name, w in zip(table.column_names, widths)).rstrip())
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


class _ReadPath(click.Path):
    """A path the job reads: if it exists, a regular file (or a directory where allowed),
    never a FIFO, device or socket, whose reading would block or never end."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        if os.path.exists(path) and not (os.path.isfile(path) or (self.dir_okay and os.path.isdir(path))):
            self.fail(f"{click.format_filename(path)!r} is not a regular file (a FIFO, device or socket)", param, ctx)
        return path


_config_option = click.option("--config", "config_file", type=_ReadPath(exists=True, dir_okay=False),
                              help="Scoring config TOML (weights, thresholds) [default: the shipped one].")
_rejects_option = click.option("--rejects", type=click.Path(dir_okay=False),
                               help="Rejected rows with reasons [default: OUTPUT with .rejects.parquet].")


def _options(*options: Any) -> Any:
    """One decorator applying ``options`` in the order given (as --help lists them)."""
    def apply(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f
    return apply


_reject_share_option = click.option(
    "--max-reject-share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
    help="Fail (exit 2, no output written) if more than this share of the rows is rejected.")


def _cap_arrow_threads(ctx: click.Context, param: click.Parameter, threads: int | None) -> int | None:
    """``--threads`` caps Arrow's own pool too (Parquet decoding and encoding, compute
    functions), which is sized to the cores otherwise; the kernels and LightGBM take the
    number as they are given it. (Process-wide, so the library leaves it to its host.)"""
    if threads is not None:
        pa.set_cpu_count(threads)
    return threads


_threads_option = click.option("--threads", type=click.IntRange(1, 256), callback=_cap_arrow_threads,
                               help="Threads [default: OMP_NUM_THREADS or all cores].")
_quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
_show_ids_option = click.option(
    "--show-ids", is_flag=True,
    help="Print the riskiest accounts' importer ids (hidden by default: they may be SSNs or EINs).")
_views_option = click.option(
    "--views/--no-views", default=True, show_default=True,
    help="Write the period's trends, shifts and uniformity across ports with the set (they take time: about 10 s "
         "more at 5M lines).")
_cluster_option = click.option(
    "--cluster", "cluster_spec", metavar="SPEC",
    help="Run on Dask (ceecore[dask]): local:N starts N worker processes here; tcp://HOST:PORT uses a running "
         "scheduler (the workers must see the input and output paths). The same results as one process.")


@contextmanager
def _cluster(spec: str | None) -> Iterator[Any]:
    """The Dask cluster of ``--cluster`` (:mod:`ceecore.cluster`; Dask is imported only
    then), or None: run in this process."""
    if spec is None:
        yield None
        return
    try:
        from ceecore import cluster
    except ImportError:
        raise ValueError("--cluster needs Dask: pip install 'ceecore[dask]'") from None
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # (its errors end the job with ceecore's message)
    with cluster.connect(spec) as on:
        yield on


def _cluster_report(on: Any) -> None:
    """Where a cluster job's time went: per phase, and per worker."""
    if on is not None:
        for line in on.report.lines():
            click.echo(line)
# The Center-map options of the commands that assign Centers.
_center_options = _options(
    click.option("--centers-file", type=_ReadPath(exists=True, dir_okay=False), help="CSV of Centers."),
    click.option("--hts-map", type=_ReadPath(exists=True, dir_okay=False), help="CSV of HTS -> Center rules."),
    click.option("--replace-map", is_flag=True,
                 help="User Center files replace the shipped ones instead of extending them."),
)
# The column-mapping options every command that reads entry lines takes.
_mapping_options = _options(
    click.option("--preset", help="A shipped column mapping, e.g. 'kcs'."),
    click.option("--mapping", "mapping_file", type=_ReadPath(exists=True, dir_okay=False),
                 help="Column mapping TOML ([columns] source = canonical, [constants])."),
    click.option("--map", "pairs", multiple=True, metavar="SOURCE=CANONICAL", help="Rename one column (repeatable)."),
    click.option("--date-format", metavar="FORMAT",
                 help="strptime format of dates stored as text, e.g. %d/%m/%Y [default: the mapping's, else ISO]."),
    click.option("--pseudonymise", "key_file", type=_ReadPath(dir_okay=False),
                 help="Replace importer and manufacturer ids by keyed tokens from the start (the key: this "
                      f"file's bytes, or {KEY_ENV}); outputs and models then hold no id in clear."),
    _reject_share_option,
    _threads_option,
    _quiet_option,
)


@click.group()
@click.version_option(ceecore.__version__, prog_name="ceecore")
def cli() -> None:
    """ceecore: consolidate and score customs entry lines per CBP Center."""


@cli.command()
@click.option("--on", "on", type=click.DateTime(["%Y-%m-%d"]), help="Show the map in force on this date.")
@click.option("--rules", is_flag=True, help="List the HTS mapping rules instead of the Centers.")
@_center_options
def centers(on: dt.datetime | None, rules: bool, centers_file: str | None, hts_map: str | None,
            replace_map: bool) -> None:
    """The ten Centers of Excellence and Expertise and the HTS chapters they own."""
    with _usage_errors():
        cmap = _center_map(centers_file, hts_map, replace_map)
        _print_table(cmap.rules_table() if rules else cmap.centers_table(on.date() if on else None))


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=_ReadPath(exists=True))
@click.option("-o", "--output", default="accounts.parquet", show_default=True, type=click.Path(dir_okay=False),
              help="Consolidated accounts (Parquet, or Arrow IPC for .arrow).")
@_rejects_option
@click.option("--state", type=click.Path(dir_okay=False),
              help="Also write the mergeable account state (Arrow IPC).")
@_center_options
@click.option("--overrides", type=_ReadPath(exists=True, dir_okay=False),
              help="CSV importer_id,center,note of manual assignments.")
@click.option("--assign-by", type=click.Choice(["lines", "value"]), default="lines", show_default=True,
              help="What 'predominant' means when assigning an account to a Center.")
@_mapping_options
@_cluster_option
def consolidate(inputs: tuple[str, ...], output: str, rejects: str | None, state: str | None,
                preset: str | None, mapping_file: str | None, pairs: tuple[str, ...], date_format: str | None,
                key_file: str | None, max_reject_share: float, centers_file: str | None, hts_map: str | None,
                replace_map: bool, overrides: str | None, assign_by: str, threads: int | None, quiet: bool,
                cluster_spec: str | None) -> None:
    """Consolidate entry lines per importer nationwide and assign each to its Center.

    INPUTS are Parquet, Arrow IPC or CSV files, or directories of them (``ceecore
    generate`` makes sample ones). The accounts, rejects and state files appear together
    once the job is done.
    """
    with _usage_errors():
        rejects_path = _checked_outputs(inputs, output, rejects, state=(state, "ipc"))
        cmap = _center_map(centers_file, hts_map, replace_map)
        mapping = _mapping(preset, mapping_file, pairs, date_format)
        override_map = load_overrides(overrides, cmap) if overrides else None
        with _committing() as outputs, _progress(quiet) as (on_start, advance), _cluster(cluster_spec) as on:
            run = ceecore.run_consolidation(
                list(inputs), mapping=mapping, centers=cmap, overrides=override_map, assign_by=assign_by,
                threads=threads, rejects=rejects_path, progress=advance, on_start=on_start,
                max_reject_share=max_reject_share, outputs=outputs, pseudonyms=_pseudonyms(key_file), client=on)
            if state:
                write_table(run.book.to_arrow(), state, format="ipc", into=outputs)
            write_table(run.accounts, output, into=outputs)
    if not quiet:
        _summary(run, f"{len(inputs)} input(s)", output, rejects_path, state)
        _cluster_report(on)


def _config(path: str | None) -> ceecore.ScoringConfig:
    return ceecore.ScoringConfig.from_toml(path) if path else ceecore.ScoringConfig.default()


def _counts(s: ceecore.IntakeStats, what: str) -> None:
    """Lines read, accepted and rejected (by reason), and how fast."""
    rate = s.rows_read / s.seconds if s.seconds else 0.0
    click.echo(f"read {s.rows_read:,} lines from {what} in {s.seconds:.2f} s ({rate:,.0f} lines/s): "
               f"{s.accepted:,} accepted, {s.rejected:,} rejected")
    for reason, count in sorted(s.by_reason.items(), key=lambda kv: -kv[1]):
        click.echo(f"  {reason:<28} {count:>12,}")



# The options of commands that can learn from outcomes.
_label_options = _options(
    click.option("--labels", help="Learn from this outcome column (true = a violation, empty = not inspected); "
                                  "needs ceecore[learn]."),
    click.option("--revenue", help="With --labels: the revenue recovered per line."),
    click.option("--history-key", "history_keys", multiple=True, metavar="COLUMN",
                 help="With --labels: also keep the outcome history of this input column (repeatable)."),
)


def _labels(labels: str | None, revenue: str | None, history_keys: tuple[str, ...],
            mapping: ColumnMapping) -> ceecore.Labels | None:
    if labels is None:
        if revenue or history_keys:
            raise click.UsageError("--revenue and --history-key need --labels")
        return None
    return ceecore.Labels(labels, revenue, tuple(dict.fromkeys(mapping.history_keys + history_keys)),
                          mapping.history_combined)


@cli.command("fit")
@click.argument("history", nargs=-1, required=True, type=_ReadPath(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The model file (Arrow IPC).")
@_label_options
@_config_option
@_rejects_option
@_mapping_options
@_cluster_option
def fit_command(history: tuple[str, ...], output: str, labels: str | None, revenue: str | None,
                history_keys: tuple[str, ...], config_file: str | None, rejects: str | None, preset: str | None,
                mapping_file: str | None, pairs: tuple[str, ...], date_format: str | None, key_file: str | None,
                max_reject_share: float, threads: int | None, quiet: bool, cluster_spec: str | None) -> None:
    """Build industry baselines from HISTORY (files or directories) into a scoring model;
    with --labels, also learn from the inspection outcomes it records."""
    with _usage_errors():
        rejects_path = _checked_outputs(history, output, rejects, "ipc")
        stats = ceecore.IntakeStats()
        started = time.perf_counter()
        mapping = _mapping(preset, mapping_file, pairs, date_format)
        learn = _labels(labels, revenue, history_keys, mapping)
        with _committing() as outputs, _progress(quiet) as (on_start, advance), _cluster(cluster_spec) as on:
            model = ceecore.fit(list(history), mapping=mapping, config=_config(config_file), labels=learn,
                                threads=threads, rejects=rejects_path, stats=stats, progress=advance, on_start=on_start,
                                max_reject_share=max_reject_share, outputs=outputs, pseudonyms=_pseudonyms(key_file),
                                client=on)
            model.save(outputs.file(output))
        stats.seconds = time.perf_counter() - started
    if not quiet:
        _counts(stats, f"{len(history)} input(s)")
        meta = model.meta
        click.echo(f"baselines of {meta['lines']:,} lines, {meta['first_date']} to {meta['last_date']}")
        if model.learned is not None:
            t = model.learned.training
            click.echo(f"learned from {t['lines']:,} inspected lines ({t['violations']:,} violations): "
                       f"{len(model.learned.trees.roots)} trees")
        click.echo(f"model   -> {output}")
        click.echo(f"rejects -> {rejects_path}")
        _cluster_report(on)


@cli.command("evaluate")
@click.argument("scored", nargs=-1, required=True, type=_ReadPath(exists=True))
@click.option("--label", default="violation", show_default=True, help="The outcome column (true = a violation).")
@click.option("--revenue", help="Revenue recovered per line, for Revenue@n%.")
@click.option("--score", "score_column", default="score", show_default=True, help="The column to rank lines by.")
@click.option("--by", default="center", show_default=True, help="Also measure per value of this column.")
@click.option("-o", "--output", default="evaluation.json", show_default=True, type=click.Path(dir_okay=False),
              help="The report (JSON).")
def evaluate_command(scored: tuple[str, ...], label: str, revenue: str | None, score_column: str, by: str,
                     output: str) -> None:
    """Precision, recall and revenue at the top 1, 2, 5 and 10% of SCORED lines, and AUC,
    overall and per Center, against the random-selection baseline."""
    with _usage_errors():
        output_format(output, "json")
        check_outputs({"-o": output}, scored)
        report = evaluate(list(scored), label=label, revenue=revenue, score=score_column, by=by)
        with atomic_path(output) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    _print_evaluation(report)
    click.echo(f"report -> {output}")


def _print_evaluation(report: dict[str, Any]) -> None:
    shares = [k for k in report["overall"] if k.endswith("%")]
    kinds = [("P", "precision"), ("R", "recall")] + ([("Rev", "revenue")] if report["revenue"] else [])
    head = "".join(f"{kind + '@' + share:<8}" for kind, _ in kinds for share in shares)
    click.echo(f"{report['lines']:,} labelled lines ({report['unlabelled']:,} without a label left out)")
    click.echo(f"{'':<14}{'lines':>9}{'rate':>7}   {head}  AUC")

    def row(name: str, m: dict[str, Any]) -> None:
        cells = "".join(_cell(m[share][key]) for _, key in kinds for share in shares)
        rate = "" if m["violation_rate"] is None else f"{m['violation_rate']:.3f}"
        click.echo(f"{name:<14}{m['lines']:>9,}{rate:>7}   {cells}{_cell(m['auc'])}")

    row("all", report["overall"])
    random = report["overall"]["random"]
    click.echo(f"{'random':<14}{'':>9}{'':>7}   " + "".join(
        _cell(random[share].get(key)) for _, key in kinds for share in shares) + _cell(0.5))
    for name, m in report.get("groups", {}).items():
        row(_one_line(f"{report['by']} {name}"), m)  # (values from the scored file)


def _cell(value: float | None) -> str:
    return f"{value:<8.3f}" if value is not None else f"{'-':<8}"


@cli.command("merge")
@click.argument("models", nargs=-1, required=True, type=_ReadPath(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The merged model (Arrow IPC).")
def merge_command(models: tuple[str, ...], output: str) -> None:
    """Merge MODELS fitted on parts of the history (same config) into one model, the same
    as one fit on all of it: fit the parts in separate processes or machines, then merge."""
    with _usage_errors():
        output_format(output, "ipc")
        check_outputs({"-o": output}, models)
        model = ceecore.merge_models(list(models))
        model.save(output)
    meta = model.meta
    click.echo(f"{len(models)} model(s): baselines of {meta['lines']:,} lines, {meta['first_date']} to "
               f"{meta['last_date']} -> {output}")


@cli.command("score")
@click.argument("inputs", nargs=-1, required=True, type=_ReadPath(exists=True))
@click.option("--model", "model_path", required=True, type=_ReadPath(exists=True, dir_okay=False),
              help="A model from 'ceecore fit' (or a run's model.arrow).")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="A directory (an existing one, or a name without a suffix): the whole set, as 'run' writes it "
                   "but the model; or FILE.parquet: the scored lines only.")
@_rejects_option
@_mapping_options
@_show_ids_option
@_views_option
@_cluster_option
def score_command(inputs: tuple[str, ...], model_path: str, output: str, rejects: str | None, preset: str | None,
                  mapping_file: str | None, pairs: tuple[str, ...], date_format: str | None, key_file: str | None,
                  max_reject_share: float, threads: int | None, show_ids: bool, views: bool, quiet: bool,
                  cluster_spec: str | None) -> None:
    """Score INPUTS (a new period) against a model fitted on the history: into a directory,
    lines, accounts, worklist, rejects and summary, swapped in as one set (the accounts
    consolidated over INPUTS, judged with the history); into FILE.parquet, the lines alone
    (with --cluster, FILE.parquet is a directory of part files: one Parquet dataset)."""
    with _usage_errors():
        mapping = _mapping(preset, mapping_file, pairs, date_format)
        pseudonyms = _pseudonyms(key_file)
        if not Path(output).name:  # ("", ".", "/": no name to write to)
            raise ValueError(f"-o {output!r} is not a file name")
        if Path(output).suffix.lower() != ".parquet" and (Path(output).is_dir() or not Path(output).suffix):
            if rejects is not None:
                raise ValueError("--rejects names the rejects file of -o FILE.parquet; a set writes its "
                                 "rejects.parquet in the directory")
            with _progress(quiet) as (on_start, advance), _cluster(cluster_spec) as on:
                summary = ceecore.score_period(list(inputs), model_path, output, mapping=mapping, threads=threads,
                                               progress=advance, on_start=on_start,
                                               max_reject_share=max_reject_share, pseudonyms=pseudonyms, client=on,
                                               views=views)
            if not quiet:
                _run_report(summary, show_ids=show_ids or pseudonyms is not None)
                _cluster_report(on)
            return
        rejects_path = _checked_outputs((*inputs, model_path), output, rejects, "parquet")
        if cluster_spec is None and os.path.isdir(output):
            raise ValueError(f"-o {output} is a directory (scored lines go to one Parquet file without --cluster)")
        model = ceecore.Model.load(model_path)
        started = time.perf_counter()
        with _committing() as outputs, _progress(quiet) as (on_start, advance), _cluster(cluster_spec) as on:
            run = ceecore.score(list(inputs), model_path if on else model, output=output, mapping=mapping,
                                threads=threads, rejects=rejects_path, progress=advance, on_start=on_start,
                                max_reject_share=max_reject_share, outputs=outputs, pseudonyms=pseudonyms, client=on)
        run.stats.seconds = time.perf_counter() - started
    if not quiet:
        _counts(run.stats, f"{len(inputs)} input(s)")
        click.echo(f"lines   -> {output}")
        click.echo(f"rejects -> {rejects_path}")
        _cluster_report(on)


@cli.command("run")
@click.argument("inputs", nargs=-1, required=True, type=_ReadPath(exists=True))
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False), help="Where the outputs go.")
@_label_options
@_config_option
@_mapping_options
@_show_ids_option
@_views_option
@_cluster_option
def run_command(inputs: tuple[str, ...], outdir: str, labels: str | None, revenue: str | None,
                history_keys: tuple[str, ...], config_file: str | None, preset: str | None,
                mapping_file: str | None, pairs: tuple[str, ...], date_format: str | None, key_file: str | None,
                max_reject_share: float, threads: int | None, show_ids: bool, views: bool, quiet: bool,
                cluster_spec: str | None) -> None:
    """Fit baselines on INPUTS (with --labels, also learn from their outcomes), then score
    them: lines, accounts, worklist, rejects, summary, swapped into OUTDIR as one set
    (OUTDIR holds nothing else)."""
    with _usage_errors():
        mapping = _mapping(preset, mapping_file, pairs, date_format)
        learn = _labels(labels, revenue, history_keys, mapping)
        pseudonyms = _pseudonyms(key_file)
        with _progress(quiet) as (on_start, advance), _cluster(cluster_spec) as on:
            summary = ceecore.run(list(inputs), outdir, mapping=mapping, config=_config(config_file), labels=learn,
                                  threads=threads, progress=advance, on_start=on_start,
                                  max_reject_share=max_reject_share, pseudonyms=pseudonyms, client=on, views=views)
    if not quiet:
        _run_report(summary, show_ids=show_ids or pseudonyms is not None)
        _cluster_report(on)


@cli.command("report")
@click.argument("directory", type=_ReadPath(exists=True, file_okay=False))
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="The report (one self-contained HTML file).")
@click.option("--hide-ids", is_flag=True, help="Leave importer ids out (they may be SSNs or EINs).")
def report_command(directory: str, output: str, hide_ids: bool) -> None:
    """One HTML page from the DIRECTORY that 'ceecore run' wrote: a section per Center with
    its key figures, worklist, riskiest accounts, score distribution and, where there,
    detection, trends, uniformity findings and accounts eligible for expedited release."""
    with _usage_errors():
        if Path(output).suffix.lower() not in (".html", ".htm"):
            raise ValueError(f"{output}: the report is HTML: name it .html")
        check_outputs({"-o": output}, (directory,))
        path = write_report(directory, output, hide_ids=hide_ids)
    click.echo(f"report -> {path}")
@cli.command("uniformity")
@click.argument("inputs", nargs=-1, required=True, type=_ReadPath(exists=True))
@click.option("-o", "--output", default="uniformity.parquet", show_default=True, type=click.Path(dir_okay=False),
              help="The comparisons (Parquet, or Arrow IPC for .arrow), most significant first.")
@_rejects_option
@click.option("--state", type=click.Path(dir_okay=False), help="Also write the mergeable state (Arrow IPC).")
@click.option("--min-lines", type=click.IntRange(2), default=MIN_LINES, show_default=True,
              help="Compare a port only with this many lines there and at the other ports.")
@click.option("--top", type=click.IntRange(0), default=10, show_default=True, help="Findings to print.")
@_center_options
@_mapping_options
def uniformity_command(inputs: tuple[str, ...], output: str, rejects: str | None, state: str | None, min_lines: int,
                       top: int, centers_file: str | None, hts_map: str | None, replace_map: bool, preset: str | None,
                       mapping_file: str | None, pairs: tuple[str, ...], date_format: str | None, key_file: str | None,
                       max_reject_share: float, threads: int | None, quiet: bool) -> None:
    """Compare every port with the other ports on identical activity (per Center, HTS10 x
    origin, HTS6 x origin and the Center's goods): duty, preferences, unit values, HTS
    numbers; inspections, findings and revenue where outcome columns exist."""
    with _usage_errors():
        rejects_path = _checked_outputs(inputs, output, rejects, state=(state, "ipc"))
        stats = ceecore.IntakeStats()
        started = time.perf_counter()
        with _committing() as outputs, _progress(quiet) as (on_start, advance):
            found = ceecore.read_uniformity(
                list(inputs), mapping=_mapping(preset, mapping_file, pairs, date_format),
                centers=_center_map(centers_file, hts_map, replace_map), threads=threads, rejects=rejects_path,
                stats=stats, progress=advance, on_start=on_start, max_reject_share=max_reject_share,
                outputs=outputs, pseudonyms=_pseudonyms(key_file))
            if state:
                write_table(found.to_arrow(), state, format="ipc", into=outputs)
            table = found.result(min_lines)
            write_table(table, output, into=outputs)
        stats.seconds = time.perf_counter() - started
    if not quiet:
        _counts(stats, f"{len(inputs)} input(s)")
        q = table.column("q_value").to_numpy()
        click.echo(f"{table.num_rows:,} comparisons; {int((q < 0.05).sum()):,} at a false discovery rate below 5%, "
                   f"{int((q < 0.01).sum()):,} below 1%")
        for row in table.slice(0, top).to_pylist():
            click.echo(f"  q={row['q_value']:.1e}  {_one_line(row['finding'])}")
        click.echo(f"uniformity -> {output}")
        click.echo(f"rejects    -> {rejects_path}")
        if state:
            click.echo(f"state      -> {state}")


def _run_report(summary: ceecore.RunSummary, top: int = 3, show_ids: bool = False) -> None:
    """The riskiest accounts per Center with their reasons, and where everything went;
    importer ids only if ``show_ids`` (they are often Social Security numbers)."""
    s = summary.stats
    first = "read" if summary.model_path else "fit"  # (scoring a period reads it, and adds it to the model's state)
    click.echo(f"scored {s.accepted:,} lines ({s.rejected:,} rejected) of {summary.accounts:,} accounts in "
               f"{summary.seconds['total']:.1f} s ({first} {summary.seconds['fit']:.1f} s, "
               f"score {summary.seconds['score']:.1f} s)")
    if summary.model_path:
        meta, period = summary.model.meta, summary.period
        click.echo(f"against {summary.model_path} ({meta['lines']:,} lines, {meta['first_date']} to "
                   f"{meta['last_date']}); this period {period['first_date']} to {period['last_date']}")
    accounts = pq.read_table(summary.outputs["accounts.parquet"],
                             columns=["center", "center_name", "rank_in_center", "importer_id", "score", "lines", "reasons"])
    riskiest = accounts.filter(pc.less_equal(accounts.column("rank_in_center"), top)).to_pylist()
    names = {}
    for row in riskiest:
        names[row["center"]] = row["center_name"]
    click.echo(f"riskiest {top} accounts per Center:")
    for center in sorted(c for c in names if c):
        click.echo(f"  {center} {names[center]}")
        for row in (r for r in riskiest if r["center"] == center):
            reasons = ", ".join(row["reasons"] or []) or "-"
            importer = _one_line(row["importer_id"]) if show_ids else "(id hidden)"  # (C1 controls pass the contract)
            click.echo(f"    {row['rank_in_center']}. {importer:<14} score {row['score']:.2f}  "
                       f"{row['lines']:>7,} lines  {reasons}")
    for name, path in summary.outputs.items():
        click.echo(f"{name:<17} -> {path}")


_variants_option = click.option(
    "--variants", is_flag=True,
    help="Plant the risk schemes in their variant shapes (partial, shallow, bulky, spread thin), same six labels.")


@cli.command("demo")
@click.option("-n", "--lines", type=click.IntRange(1000), default=1_000_000, show_default=True,
              help="Generated lines to score.")
@click.option("-o", "--outdir", default="ceecore-demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the generated input (input.parquet) and the run's outputs (run/) go.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@_variants_option
@_threads_option
def demo(lines: int, outdir: str, seed: int, variants: bool, threads: int | None) -> None:
    """Generate a year of entry lines with known fraud, run the whole pipeline, report."""
    with _usage_errors():
        started = time.perf_counter()
        source, results = Path(outdir) / "input.parquet", Path(outdir) / "run"
        written = synth.write(source, _fits_in_memory(synth.SynthConfig(lines=lines, seed=seed, variants=variants)),
                              threads=threads)
        click.echo(f"generated {written.lines:,} entry lines of {written.world.n_accounts:,} importers "
                   f"({sum(written.schemes.values()):,} in injected fraud schemes) in {written.seconds:.1f} s -> {source}")
        with _progress(False) as (on_start, advance):
            summary = ceecore.run(str(source), results, threads=threads, progress=advance, on_start=on_start)
        _run_report(summary)
        recall = synth.scheme_recall(pq.read_table(summary.outputs["lines.parquet"], columns=["entry_number", "line_number", "score"]),
                                     pq.read_table(source, columns=["entry_number", "line_number", "scheme"]))
        click.echo("injected schemes found among the top 5% of lines by score (recall):")
        for name, value in recall.items():
            click.echo(f"  {name:<20} {value:.2f}")
        click.echo(f"done in {time.perf_counter() - started:.1f} s")


def _fits_in_memory(config: synth.SynthConfig) -> synth.SynthConfig:
    """Refuses a world that could not fit in this machine's memory (the lines stream, but
    every account is held), rather than fail or swap half way."""
    need = WORLD_BYTES_PER_ACCOUNT * (config.accounts or 0)
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    if have and need > have:
        raise ValueError(f"{config.accounts:,} importer accounts need about {need / 2**30:,.0f} GiB of memory, more "
                         f"than this machine's {have / 2**30:,.0f} GiB: ask for fewer lines or fewer --accounts")
    return config


def _scheme_rates(pairs: tuple[str, ...]) -> dict[str, float]:
    """``NAME=RATE`` pairs (``all=RATE`` sets every scheme) as a scheme -> rate dict."""
    rates: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = float("nan")
        if not sep or rate != rate:
            raise click.BadParameter(f"{pair!r}: expected SCHEME=RATE, e.g. undervaluation=0.02", param_hint="--scheme-rate")
        names = synth.SCHEMES if name.strip() == "all" else (name.strip(),)
        rates.update(dict.fromkeys(names, rate))
    return rates


@cli.command()
@click.option("-n", "--lines", type=click.IntRange(0, MAX_GENERATED_LINES), default=1_000_000, show_default=True,
              help="Entry lines to generate.")
@click.option("--accounts", type=click.IntRange(1, MAX_GENERATED_LINES // 50),
              help="Importer accounts [default: one per 50 lines].")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First entry date [default: 2025-01-01].")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last entry date [default: 2025-12-31].")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="The same seed and options give identical lines.")
@click.option("--scheme-rate", "scheme_rates", multiple=True, metavar="SCHEME=RATE",
              help=f"Expected share of lines of a risk scheme (repeatable; 'all=0' for none). Schemes: "
                   f"{', '.join(f'{k} ({v:g})' for k, v in synth.DEFAULT_SCHEME_RATES.items())}.")
@click.option("--inspect-share", type=click.FloatRange(0, 1), help="Share of lines inspected (with outcomes) [default: 0.05].")
@click.option("--dirty", type=click.IntRange(0, MAX_GENERATED_LINES), default=0, show_default=True,
              help="Also add this many contract-breaking rows (each rejected for a known reason).")
@click.option("--batch-rows", type=click.IntRange(1), default=1 << 18, show_default=True, help="Rows per batch (Parquet row group).")
@click.option("--file-rows", type=click.IntRange(1), help="Rows per file when OUTPUT is a dataset directory.")
@click.option("--truth", type=click.Path(dir_okay=False), help="Also write the ground truth per account (Parquet).")
@_variants_option
@click.option("--trend", is_flag=True,
              help="Inject a trade diversion: from mid-period, 80% of the busiest HTS6's lines from its main origin "
                   "come from another country.")
@click.option("--disparities", is_flag=True,
              help="Plant two port disparities (a port inspecting one Center's goods 5x as often; a port taking a "
                   "dutiable product in at no duty), found by 'ceecore uniformity'.")
@_threads_option
@click.option("-o", "--output", required=True, type=click.Path(),
              help="A .parquet, .csv(.gz) or .arrow file, or else a directory of Parquet files.")
@_quiet_option
def generate(lines: int, accounts: int | None, start: dt.datetime | None, end: dt.datetime | None, seed: int,
             scheme_rates: tuple[str, ...], inspect_share: float | None, dirty: int, batch_rows: int,
             file_rows: int | None, truth: str | None, variants: bool, trend: bool, disparities: bool,
             threads: int | None,
             output: str, quiet: bool) -> None:
    """Generate realistic entry lines with labelled risk schemes (synthetic, known truth)."""
    rates = _scheme_rates(scheme_rates)
    with _usage_errors():
        params: dict[str, Any] = {"lines": lines, "accounts": accounts, "seed": seed, "scheme_rates": rates, "dirty": dirty,
                                  "variants": variants, "trend": trend, "disparities": disparities}
        params.update({k: v.date() for k, v in (("start", start), ("end", end)) if v is not None})
        if inspect_share is not None:
            params["inspect_share"] = inspect_share
        config = _fits_in_memory(synth.SynthConfig(**params))
        truth_format = output_format(truth) if truth else None
        check_outputs({"-o": output, "--truth": truth})
        with _committing() as outputs, _progress(quiet) as (on_start, advance):
            truth_file = outputs.file(truth) if truth else None  # (moved in before the lines)
            on_start(lines + dirty)
            written = synth.write(output, config, batch_rows=batch_rows, file_rows=file_rows, threads=threads,
                                  progress=advance, outputs=outputs)
            assert written.world is not None
            if truth_file:
                write_table(written.world.accounts(), truth_file, format=truth_format)
    if not quiet:
        rate = written.lines / max(written.seconds, 1e-9)
        click.echo(f"generated {written.lines:,} lines from {written.world.n_accounts:,} accounts in "
                   f"{written.seconds:.2f} s ({rate:,.0f} lines/s); {written.inspected:,} inspected")
        for name, count in written.schemes.items():
            click.echo(f"  {name:<20} {count:>12,} lines ({count / max(lines, 1):.2%})")
        if dirty:
            click.echo(f"  {'contract-breaking':<20} {dirty:>12,} rows")
        if written.world.trend is not None:
            t = written.world.trend
            click.echo(f"  trend: from {t.start}, {t.share:.0%} of HTS {t.hts6}'s lines from {t.origin} come from {t.to}")
        for row in written.world.disparities().to_pylist():
            click.echo(f"  disparity: {row['measure']} at port {row['port']}, Center {row['center']}"
                       + (f", HTS {row['hts']}" if row["hts"] else ""))
        click.echo(f"lines -> {output}")
        if truth:
            click.echo(f"truth -> {truth}")


@cli.command("trends")
@click.argument("inputs", nargs=-1, required=True, type=_ReadPath(exists=True))
@click.option("-o", "--output", default="trends.parquet", show_default=True, type=click.Path(dir_okay=False),
              help="Monthly series per Center (Parquet, or Arrow IPC for .arrow).")
@click.option("--shifts", type=click.Path(dir_okay=False),
              help="The flagged shifts [default: shifts.parquet beside OUTPUT].")
@click.option("--model", "model_path", type=_ReadPath(exists=True, dir_okay=False),
              help="A model from 'ceecore fit': accounts its history saw are not new.")
@_rejects_option
@_center_options
@_mapping_options
def trends_command(inputs: tuple[str, ...], output: str, shifts: str | None, model_path: str | None,
                   rejects: str | None, centers_file: str | None, hts_map: str | None, replace_map: bool,
                   preset: str | None, mapping_file: str | None, pairs: tuple[str, ...], date_format: str | None,
                   key_file: str | None, max_reject_share: float, threads: int | None, quiet: bool) -> None:
    """Monthly series per Center of INPUTS (lines, entries, value, duty, duty rate, active
    and new accounts, origin shares per HTS6, inspection and violation rates) and the
    shifts that matter (trade diversion, volume steps, a falling duty rate), FDR < 10%."""
    with _usage_errors():
        shifts_path = shifts or str(Path(output).with_name("shifts.parquet"))
        rejects_path = _checked_outputs((*inputs, *([model_path] if model_path else [])), output, rejects,
                                        shifts=(shifts_path, None))
        started = time.perf_counter()
        with _committing() as outputs, _progress(quiet) as (on_start, advance):
            report = ceecore.trends(list(inputs), mapping=_mapping(preset, mapping_file, pairs, date_format),
                                    centers=_center_map(centers_file, hts_map, replace_map), model=model_path,
                                    threads=threads, rejects=rejects_path, progress=advance, on_start=on_start,
                                    max_reject_share=max_reject_share, outputs=outputs,
                                    pseudonyms=_pseudonyms(key_file))
            write_table(report.shifts, shifts_path, into=outputs)
            write_table(report.series, output, into=outputs)
        report.stats.seconds = time.perf_counter() - started
    if not quiet:
        _counts(report.stats, f"{len(inputs)} input(s)")
        click.echo(f"{report.series.num_rows:,} monthly values; {report.shifts.num_rows:,} shift(s) flagged (q < 0.10)")
        for finding in report.shifts.column("finding").to_pylist()[:10]:
            click.echo(f"  {_one_line(finding)}")
        click.echo(f"trends  -> {output}")
        click.echo(f"shifts  -> {shifts_path}")
        click.echo(f"rejects -> {rejects_path}")


@contextmanager
def _progress(quiet: bool) -> Iterator[tuple[Any, Any]]:
    """Progress on stderr for long inputs: a bar when the row count is known, else a counter."""
    state: dict[str, Any] = {"done": 0}
    show = not quiet and sys.stderr.isatty()

    def on_start(total: int | None) -> None:
        if show and total is not None and total >= PROGRESS_MIN_LINES:
            state["bar"] = click.progressbar(length=total, label="lines", file=sys.stderr, show_pos=True)
            state["bar"].__enter__()
        state["count"] = show and total is None

    def advance(rows: int) -> None:
        state["done"] += rows
        if "bar" in state:
            state["bar"].update(rows)
        elif state.get("count"):
            click.echo(f"\r{state['done']:,} lines", nl=False, err=True)

    try:
        yield on_start, advance
    finally:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)
        elif state.get("count"):
            click.echo(err=True)


def _summary(run: ceecore.Consolidation, what: str, output: str, rejects: str, state: str | None) -> None:
    accounts = run.accounts
    _counts(run.stats, what)
    click.echo(f"{accounts.num_rows:,} accounts by Center:")
    counts = accounts.group_by("center").aggregate([("importer_id", "count")]).sort_by("center").to_pylist()
    names = {c.code: c.name for c in run.book.centers.centers}
    for row in counts:
        code = row["center"]
        label = f"{code} {names[code]}" if code else "(no Center: no line in a mapped HTS chapter)"
        click.echo(f"  {label:<48} {row['importer_id_count']:>10,}")
    click.echo(f"accounts -> {output}")
    click.echo(f"rejects  -> {rejects}")
    if state:
        click.echo(f"state    -> {state}")


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM ends a job as Ctrl-C does, so that its staging is removed on the way out
    (once: a second SIGTERM while cleaning up is ignored; kill -9 still stops it)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    global _terminated
    _terminated = True
    raise KeyboardInterrupt


_terminated = False


def _exit_terminated() -> NoReturn:
    """Ends a job SIGTERM stopped with the conventional code, 143.

    CPython (3.11, 3.12) remembers a KeyboardInterrupt that ended code run from a string
    (the methods a dataclass or namedtuple generates as it is made, say), even one caught
    since, and a ``python -m`` process then kills itself with SIGINT instead of exiting
    with its code. The next evaluation of a string clears that memory."""
    exec("")  # (a constant: nothing from outside is evaluated)
    sys.exit(128 + signal.SIGTERM)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    if sys.argv[1:2] != ["generate"]:  # (generate holds no state: the fresh mappings would cost it a tenth)
        bound_heap()  # freed batch memory goes back to the system (see its docstring)
    try:
        cli(prog_name="ceecore")
    except SystemExit:
        if _terminated:  # (click said "Aborted!")
            _exit_terminated()
        raise


if __name__ == "__main__":
    main()
