"""Trends in memory: ceecore against a polars lazy query computing the same monthly series.

The polars query takes the clean lines, finds each line's Center through the same HTS ->
Center table (a join), and computes per Center and month the lines, distinct entries,
value, duty, duty rate, distinct and new accounts, inspection and violation rates, and
the share of each origin per HTS6 for the pairs with at least 100 lines. ceecore does
all that while checking every line against the data contract, and then also tests every
series for a shift (the polars side does no tests).
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

import ceecore
from benchmarks.conftest import LINES, ROUNDS
from benchmarks.peers import center_lookup
from ceecore.centers import CenterMap
from ceecore.trends import MIN_ORIGIN_LINES


def polars_trends(lines: pa.Table, centers: CenterMap) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The Center-wide series and the origin shares, with polars (lazy, multi-threaded)."""
    lookup = pl.from_arrow(center_lookup(centers)).lazy()
    df = (pl.from_arrow(lines).lazy()
          .with_columns(heading=pl.col("hts_code").str.slice(0, 4).cast(pl.Int32),
                        hts6=pl.col("hts_code").str.slice(0, 6),
                        day=pl.col("entry_date").cast(pl.Int32),
                        month=pl.col("entry_date").dt.truncate("1mo")))
    df = (df.join(lookup, on="heading")  # (a heading's Center periods do not overlap: one match per line)
          .filter((pl.col("day") >= pl.col("start_day")) & (pl.col("day") < pl.col("end_day")))
          .with_columns(first=pl.col("month").min().over("importer_id")))
    series = df.group_by("center", "month").agg(
        lines=pl.len(),
        entries=pl.col("entry_number").n_unique(),
        entered_value=pl.col("entered_value").sum(),
        duty=pl.col("duty_paid").sum(),
        active_accounts=pl.col("importer_id").n_unique(),
        new_accounts=pl.col("importer_id").filter(pl.col("month") == pl.col("first")).n_unique(),
        inspection_rate=pl.col("inspected").mean(),
        violation_rate=pl.col("violation").drop_nulls().mean(),
    ).with_columns(duty_rate=100 * pl.col("duty") / pl.col("entered_value"))
    pairs = df.group_by("center", "hts6", "country_of_origin", "month").agg(pair_lines=pl.len())
    chosen = (pairs.group_by("center", "hts6", "country_of_origin").agg(pl.col("pair_lines").sum().alias("total"))
              .filter(pl.col("total") >= MIN_ORIGIN_LINES).drop("total"))
    products = pairs.group_by("center", "hts6", "month").agg(product_lines=pl.col("pair_lines").sum())
    shares = (chosen.join(products, on=["center", "hts6"])
              .join(pairs, on=["center", "hts6", "country_of_origin", "month"], how="left")
              .with_columns(share=pl.col("pair_lines").fill_null(0) / pl.col("product_lines")))
    return tuple(pl.collect_all([series, shares]))  # type: ignore[return-value]


def _run(benchmark, fn):  # noqa: ANN001
    return benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1 if LINES < 1_000_000 else 0)


@pytest.mark.benchmark(group="trends in memory")
@pytest.mark.parametrize("threads", [2, 1])
def test_ceecore(benchmark, lines_table, threads):  # noqa: ANN001
    benchmark.name = f"test_trends[ceecore {threads} thread{'s' if threads > 1 else ''}]"
    report = _run(benchmark, lambda: ceecore.trends(lines_table, threads=threads))
    assert report.series.num_rows > 0


@pytest.mark.benchmark(group="trends in memory")
def test_polars(benchmark, lines_table):  # noqa: ANN001
    benchmark.name = "test_trends[polars]"
    series, shares = _run(benchmark, lambda: polars_trends(lines_table, CenterMap.default()))
    assert series.height > 0 and shares.height > 0
