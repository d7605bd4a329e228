"""The ``ceecore`` command line: a thin layer over the ceecore API.

Every command parses options, calls the library, and prints; exit code 2 means the
input could not be used (a missing column, an unreadable file, a bad option value).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import pyarrow as pa

import ceecore
from ceecore.centers import CenterMap, load_overrides
from ceecore.io import write_table
from ceecore.sample import sample_lines
from ceecore.schema import ColumnMapping

SAMPLE_LINES = 100_000
SAMPLE_ACCOUNTS = 2_000
PROGRESS_MIN_LINES = 500_000


@contextmanager
def _usage_errors() -> Iterator[None]:
    """Turns input problems into one clear message and exit code 2."""
    try:
        yield
    except BrokenPipeError:  # the reader went away (`ceecore centers | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except (ValueError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _center_map(centers_file: str | None, hts_map: str | None, replace: bool) -> CenterMap:
    if centers_file is None and hts_map is None:
        return CenterMap.default()
    return CenterMap.from_files(centers=centers_file, mapping=hts_map, replace=replace)


def _mapping(preset: str | None, mapping_file: str | None, pairs: tuple[str, ...]) -> ColumnMapping:
    mapping = ColumnMapping.preset(preset) if preset else ColumnMapping()
    if mapping_file:
        mapping = mapping.then(ColumnMapping.from_toml(mapping_file))
    return mapping.then(ColumnMapping.from_pairs(pairs)) if pairs else mapping


def _print_table(table: pa.Table) -> None:
    rows = [[("" if v is None else str(v)) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(name)] + [len(r[i]) for r in rows]) for i, name in enumerate(table.column_names)]
    click.echo("  ".join(name.ljust(w) for name, w in zip(table.column_names, widths)).rstrip())
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


@click.group()
@click.version_option(ceecore.__version__, prog_name="ceecore")
def cli() -> None:
    """ceecore: consolidate and score customs entry lines per CBP Center."""


@cli.command()
@click.option("--on", "on", type=click.DateTime(["%Y-%m-%d"]), help="Show the map in force on this date.")
@click.option("--rules", is_flag=True, help="List the HTS mapping rules instead of the Centers.")
@click.option("--centers-file", type=click.Path(exists=True, dir_okay=False), help="CSV of Centers.")
@click.option("--hts-map", type=click.Path(exists=True, dir_okay=False), help="CSV of HTS -> Center rules.")
@click.option("--replace-map", is_flag=True, help="User Center files replace the shipped ones instead of extending them.")
def centers(on: dt.datetime | None, rules: bool, centers_file: str | None, hts_map: str | None,
            replace_map: bool) -> None:
    """The ten Centers of Excellence and Expertise and the HTS chapters they own."""
    with _usage_errors():
        cmap = _center_map(centers_file, hts_map, replace_map)
        _print_table(cmap.rules_table() if rules else cmap.centers_table(on.date() if on else None))


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path(exists=True))
@click.option("-o", "--output", default="accounts.parquet", show_default=True, type=click.Path(dir_okay=False),
              help="Consolidated accounts (Parquet, or Arrow IPC for .arrow).")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Rejected rows with reasons [default: OUTPUT with .rejects.parquet].")
@click.option("--state", type=click.Path(dir_okay=False),
              help="Also write the mergeable account state (Arrow IPC).")
@click.option("--preset", help="A shipped column mapping, e.g. 'kcs'.")
@click.option("--mapping", "mapping_file", type=click.Path(exists=True, dir_okay=False),
              help="Column mapping TOML ([columns] source = canonical, [constants]).")
@click.option("--map", "pairs", multiple=True, metavar="SOURCE=CANONICAL", help="Rename one column (repeatable).")
@click.option("--centers-file", type=click.Path(exists=True, dir_okay=False), help="CSV of Centers.")
@click.option("--hts-map", type=click.Path(exists=True, dir_okay=False), help="CSV of HTS -> Center rules.")
@click.option("--replace-map", is_flag=True, help="User Center files replace the shipped ones instead of extending them.")
@click.option("--overrides", type=click.Path(exists=True, dir_okay=False),
              help="CSV importer_id,center,note of manual assignments.")
@click.option("--assign-by", type=click.Choice(["lines", "value"]), default="lines", show_default=True,
              help="What 'predominant' means when assigning an account to a Center.")
@click.option("--threads", type=click.IntRange(1, 256), help="Threads [default: OMP_NUM_THREADS or all cores].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def consolidate(inputs: tuple[str, ...], output: str, rejects: str | None, state: str | None,
                preset: str | None, mapping_file: str | None, pairs: tuple[str, ...],
                centers_file: str | None, hts_map: str | None, replace_map: bool, overrides: str | None,
                assign_by: str, threads: int | None, quiet: bool) -> None:
    """Consolidate entry lines per importer nationwide and assign each to its Center.

    INPUTS are Parquet, Arrow IPC or CSV files, or directories of them. With none, a
    built-in sample of 100,000 lines is consolidated.
    """
    with _usage_errors():
        cmap = _center_map(centers_file, hts_map, replace_map)
        mapping = _mapping(preset, mapping_file, pairs)
        override_map = load_overrides(overrides, cmap) if overrides else None
        source: Any = list(inputs) if inputs else sample_lines(SAMPLE_LINES, SAMPLE_ACCOUNTS)
        rejects_path = rejects or str(Path(output).with_suffix("")) + ".rejects.parquet"
        with _progress(quiet) as (on_start, advance):
            run = ceecore.run_consolidation(
                source, mapping=mapping, centers=cmap, overrides=override_map, assign_by=assign_by,
                threads=threads, rejects=rejects_path, progress=advance, on_start=on_start)
        write_table(run.accounts, output)
        if state:
            write_table(run.book.to_arrow(), state, format="ipc")
    if not quiet:
        _summary(run, "the built-in sample" if not inputs else f"{len(inputs)} input(s)", output, rejects_path, state)


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
    s = run.stats
    accounts = run.accounts
    rate = s.rows_read / s.seconds if s.seconds else 0.0
    click.echo(f"read {s.rows_read:,} lines from {what} in {s.seconds:.2f} s ({rate:,.0f} lines/s): "
               f"{s.accepted:,} accepted, {s.rejected:,} rejected")
    for reason, count in sorted(s.by_reason.items(), key=lambda kv: -kv[1]):
        click.echo(f"  {reason:<28} {count:>12,}")
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


def main() -> None:
    cli(prog_name="ceecore")


if __name__ == "__main__":
    main()
