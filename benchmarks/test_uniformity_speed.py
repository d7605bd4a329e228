"""Uniformity across ports: ceecore against polars computing the same rate table.

The polars peer (lazy, multi-threaded, group_by) parses the lines as the contract does
where it matters here (HTS digits, padded port, upper-case origin, the Center by the
same HTS -> Center table) and computes, per Center x group x port at the three levels
(the Center's goods, HTS6 x origin, HTS10 x origin), the lines, preference claims,
inspections and violations of the port and of the other ports, and their rates. ceecore
does that and more: the effective duty rates, unit values, HTS mix, revenue, the exact
tests, the false discovery rate and the findings, from one parse. The test at the end
checks the two agree on the Centers' inspection rates.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import ceecore
from benchmarks.conftest import LINES, ROUNDS
from benchmarks.peers import center_lookup
from ceecore.centers import CenterMap
from ceecore.uniformity import MIN_LINES


def polars_rates(lines: pa.Table, centers: CenterMap, min_lines: int = MIN_LINES) -> pl.DataFrame:
    """Rates of every port against the other ports, per level (polars, lazy)."""
    lookup = pl.from_arrow(center_lookup(centers)).lazy()
    hts = pl.col("hts_code").str.replace_all(r"[. ]", "")
    df = pl.from_arrow(lines).lazy().with_columns(
        hts10=hts, hts6=hts.str.slice(0, 6), heading=hts.str.slice(0, 4).cast(pl.Int32),
        day=pl.col("entry_date").cast(pl.Int32), port=pl.col("port_code").str.zfill(4),
        origin=pl.col("country_of_origin").str.to_uppercase(),
        claimed=pl.col("spi").is_not_null().cast(pl.Int64), flagged=pl.col("inspected").is_not_null().cast(pl.Int64),
        hits=pl.col("inspected").fill_null(False).cast(pl.Int64),
        judged=(pl.col("inspected").fill_null(False) & pl.col("violation").is_not_null()).cast(pl.Int64),
        found=(pl.col("inspected").fill_null(False) & pl.col("violation").fill_null(False)).cast(pl.Int64),
    ).with_row_index("row")
    centered = (df.select("row", "heading", "day").join(lookup, on="heading")
                .filter((pl.col("day") >= pl.col("start_day")) & (pl.col("day") < pl.col("end_day")))
                .select("row", "center"))
    df = df.join(centered, on="row").with_columns(level_center=pl.lit(""), no_origin=pl.lit(""))
    sums = [pl.len().alias("lines"), *(pl.col(c).sum() for c in ("claimed", "flagged", "hits", "judged", "found"))]
    frames = []
    for level, hts_col, origin_col in (("center", "level_center", "no_origin"), ("hts6", "hts6", "origin"),
                                       ("hts10", "hts10", "origin")):
        group = ["center", hts_col, origin_col]
        cells = df.group_by([*group, "port"]).agg(sums)
        totals = cells.group_by(group).agg(pl.col(c).sum().alias(f"all_{c}")
                                           for c in ("lines", "claimed", "flagged", "hits", "judged", "found"))
        frames.append(cells.join(totals, on=group).rename({hts_col: "hts", origin_col: "origin"})
                      .with_columns(level=pl.lit(level)))
    out = pl.concat(frames).with_columns(
        (pl.col(f"all_{c}") - pl.col(c)).alias(f"other_{c}")
        for c in ("lines", "claimed", "flagged", "hits", "judged", "found")
    ).with_columns(
        preference_share=pl.col("claimed") / pl.col("lines"),
        other_preference_share=pl.col("other_claimed") / pl.col("other_lines"),
        inspection_rate=pl.col("hits") / pl.col("flagged"),
        other_inspection_rate=pl.col("other_hits") / pl.col("other_flagged"),
        violation_rate=pl.col("found") / pl.col("judged"),
        other_violation_rate=pl.col("other_found") / pl.col("other_judged"),
    ).filter((pl.col("lines") >= min_lines) & (pl.col("other_lines") >= min_lines))
    return out.collect()


def _run(benchmark, fn):  # noqa: ANN001
    return benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1 if LINES < 1_000_000 else 0)


@pytest.mark.benchmark(group="uniformity in memory")
@pytest.mark.parametrize("threads", [2, 1])
def test_ceecore(benchmark, lines_table, threads):  # noqa: ANN001
    benchmark.name = f"test_uniformity[ceecore {threads} thread{'s' if threads > 1 else ''}]"
    benchmark.extra_info["lines"] = lines_table.num_rows
    result = _run(benchmark, lambda: ceecore.uniformity(lines_table, threads=threads))
    assert result.num_rows > 0


@pytest.mark.benchmark(group="uniformity in memory")
def test_polars(benchmark, lines_table):  # noqa: ANN001
    benchmark.name = "test_uniformity[polars rates only]"
    benchmark.extra_info["lines"] = lines_table.num_rows
    result = _run(benchmark, lambda: polars_rates(lines_table, CenterMap.default()))
    assert result.height > 0


def test_polars_agrees_on_the_centers_inspection_rates(lines_table):  # noqa: ANN001
    ours = ceecore.uniformity(lines_table)
    ours = ours.filter(pc.and_(pc.equal(ours.column("level"), "center"),
                               pc.equal(ours.column("measure"), "inspection_rate")))
    theirs = polars_rates(lines_table, CenterMap.default()).filter(pl.col("level") == "center")
    rates = {(r["center"], r["port"]): (r["inspection_rate"], r["other_inspection_rate"], r["lines"], r["other_lines"])
             for r in theirs.iter_rows(named=True)}
    assert ours.num_rows > 10
    for row in ours.to_pylist():
        assert rates[(row["center"], row["port"])] == pytest.approx(
            (row["port_value"], row["other_value"], row["port_lines"], row["other_lines"]), rel=1e-12)
