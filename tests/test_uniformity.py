"""Uniformity across ports (ceecore.uniformity): the exact tests against scipy, the rate
table against a plain reference, the state under any batching and merge order, its
validation on load, and the bar of issue 13 on generated data with planted disparities."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections import defaultdict
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import ceecore
from ceecore import synth
from ceecore.accounts import AccountBook, Intake
from ceecore.centers import CenterMap
from ceecore.fields import SCORING_COLUMNS
from ceecore._fdr import benjamini_hochberg
from ceecore.uniformity import (
    comparison_table,
    _MAX_BIN,
    COUNTS,
    HISTOGRAMS,
    MIN_LINES,
    RESULT_SCHEMA,
    STATE_SCHEMA,
    Uniformity,
    fisher_greater,
    fisher_two_sided,
    _Fold,
    _pairs,
    _Tallies,
    rank_test,
)
from tests.kcs import KCS_TRAIN, needs_kcs
from tests.processes import cli_env

BAR_LINES = 200_000


def _intakes(table: pa.Table, cuts: list[int], centers: CenterMap | None = None) -> list:
    """The intakes of ``table`` cut at ``cuts`` (row offsets), each parsed on its own."""
    book = AccountBook(centers, threads=1)
    bounds = [0, *sorted(set(cuts)), table.num_rows]
    return [book.parse(table.slice(a, b - a).combine_chunks().to_batches()[0], columns=SCORING_COLUMNS)
            for a, b in pairwise(bounds) if b > a]


def _state(table: pa.Table, cuts: list[int] = ()) -> Uniformity:
    state = Uniformity()
    for intake in _intakes(table, list(cuts)):
        state.update(intake)
    return state


@pytest.fixture(scope="module")
def small() -> pa.Table:
    """A small world with outcomes and the two planted disparities."""
    return synth.generate_table(lines=6_000, accounts=150, seed=11, disparities=True)


# ---------------------------------------------------------------- the exact tests against scipy


def test_fisher_matches_scipy():
    """Twice the smaller one-sided exact tail (at most 1), the tails as scipy's
    fisher_exact gives them, over small and large tables and both extremes."""
    rng = np.random.default_rng(1)
    cases = []
    for _ in range(400):
        n = int(rng.choice([5, 40, 300, 5_000, 200_000]))
        n1, k = int(rng.integers(1, n)), int(rng.integers(1, n))
        lo, hi = max(0, n1 + k - n), min(n1, k)
        cases.append((int(rng.integers(lo, hi + 1)), n1, k, n))
    cases += [(0, 50, 50, 1000), (50, 50, 50, 1000), (5, 5, 5, 10), (0, 1, 1, 2)]
    a, n1, k, n = (np.array(c) for c in zip(*cases))
    ours = fisher_two_sided(a, n1, k, n)
    for i, (x, m, kk, nn) in enumerate(cases):
        table = [[x, m - x], [kk - x, nn - m - kk + x]]
        greater = stats.fisher_exact(table, alternative="greater").pvalue
        less = stats.fisher_exact(table, alternative="less").pvalue
        assert ours[i] == pytest.approx(min(1.0, 2 * min(greater, less)), rel=1e-7, abs=1e-300), cases[i]
        if x * nn >= m * kk:
            assert fisher_greater(a[i:i + 1], n1[i:i + 1], k[i:i + 1], n[i:i + 1])[0] == \
                pytest.approx(greater, rel=1e-7, abs=1e-300)


def test_p_values_rank_past_underflow():
    """Beyond float64's smallest number the p-value shows as 0, and its log still ranks."""
    strong, stronger = fisher_two_sided(np.array([600, 900]), np.array([1000, 1000]), np.array([1000, 1000]),
                                        np.array([10**6, 10**6]), log=True)
    assert -np.inf < stronger < strong < np.log(1e-308)
    log_p = rank_test(np.repeat([0, 1], 2000), np.zeros(2, np.int64), np.repeat([0, 1], 2000),
                      np.ones(4000, np.int64), log=True)[0]
    assert np.all(np.isfinite(log_p)) and np.all(log_p < np.log(1e-308))


def test_rank_test_matches_scipy_mann_whitney():
    """On histograms the rank test is scipy's Mann-Whitney U (tie-corrected normal
    approximation with continuity correction) of the lines they stand for."""
    rng = np.random.default_rng(2)
    for _ in range(30):
        ports = int(rng.integers(2, 5))
        values = [rng.integers(0, int(rng.integers(1, 12)), size=int(rng.integers(3, 60))) + shift
                  for shift in rng.integers(0, 3, size=ports)]
        cell = np.concatenate([np.full(len(v), i) for i, v in enumerate(values)])
        bins = np.concatenate(values)
        p, effect, n1, n2 = rank_test(cell, np.zeros(ports, np.int64), bins, np.ones(len(bins), np.int64))
        for i, mine in enumerate(values):
            rest = np.concatenate([v for j, v in enumerate(values) if j != i])
            if len(np.unique(np.r_[mine, rest])) == 1:
                assert np.isnan(p[i])
                continue
            want = stats.mannwhitneyu(mine, rest, method="asymptotic", use_continuity=True)
            assert p[i] == pytest.approx(want.pvalue, rel=1e-9)
            assert effect[i] == pytest.approx(want.statistic / (len(mine) * len(rest)), rel=1e-12)
            assert (n1[i], n2[i]) == (len(mine), len(rest))


def test_bh_matches_scipy():
    p = np.random.default_rng(3).uniform(size=500) ** 3
    assert np.allclose(benjamini_hochberg(p), stats.false_discovery_control(p, method="bh"))


# ---------------------------------------------------------------- the rate table against a plain reference


def _reference_rates(table: pa.Table, min_lines: int) -> dict[tuple, tuple]:
    """Inspection rates per (Center, port) of each Center's goods, port against the
    other ports, and the importers behind each side, counted line by line in plain Python."""
    centers = CenterMap.default()
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    importers: dict[tuple, set[str]] = defaultdict(set)
    for row in table.select(["hts_code", "entry_date", "port_code", "inspected", "importer_id"]).to_pylist():
        center = centers.center_of(row["hts_code"], row["entry_date"])
        if center is None:
            continue
        importers[(center, row["port_code"].zfill(4))].add(row["importer_id"])
        if row["inspected"] is None:
            continue
        cell = counts[(center, row["port_code"].zfill(4))]
        cell[0] += 1
        cell[1] += bool(row["inspected"])
    out = {}
    for (center, port), (lines, hits) in counts.items():
        other_lines = sum(c[0] for (k, _), c in counts.items() if k == center) - lines
        other_hits = sum(c[1] for (k, _), c in counts.items() if k == center) - hits
        others = set().union(*(who for (k, p), who in importers.items() if k == center and p != port))
        if lines >= min_lines and other_lines >= min_lines and 0 < hits + other_hits < lines + other_lines:
            out[(center, port)] = (hits / lines, other_hits / other_lines, lines, other_lines,
                                   len(importers[(center, port)]), len(others))
    return out


def test_center_inspection_rates_match_a_plain_count(small):
    result = Uniformity.result(_state(small), min_lines=5)
    rows = result.filter(pc.and_(pc.equal(result.column("level"), "center"),
                                 pc.equal(result.column("measure"), "inspection_rate"))).to_pylist()
    ours = {(r["center"], r["port"]): r for r in rows}
    want = _reference_rates(small, 5)
    assert ours.keys() == want.keys() and len(ours) > 10
    for key, (*values, importers, other_importers) in want.items():
        row = ours[key]
        assert (row["port_value"], row["other_value"], row["port_lines"], row["other_lines"]) == \
            pytest.approx(tuple(values), rel=1e-12)
        assert f"lines; {importers:,} vs {other_importers:,} importer" in row["finding"]


def test_table_form(small):
    result = _state(small).result(min_lines=5)
    assert result.schema == RESULT_SCHEMA and result.num_rows > 100
    q, p = result.column("q_value").to_numpy(), result.column("p_value").to_numpy()
    assert np.all(np.diff(q) >= 0) and np.all((p >= 0) & (p <= q + 1e-15) & (q <= 1))
    assert pc.min(result.column("port_lines")).as_py() >= 5 and pc.min(result.column("other_lines")).as_py() >= 5
    assert set(result.column("level").to_pylist()) <= {"center", "hts6", "hts10"}
    center_rows = result.filter(pc.equal(result.column("level"), "center"))
    assert set(center_rows.column("hts").to_pylist()) == {""} and set(center_rows.column("origin").to_pylist()) == {""}
    assert all(f.startswith("Port ") for f in result.column("finding").to_pylist())


def test_hts_numbers_as_declared(small):
    """An HTS number is reported with the digits it was declared with (8 here), its
    subheading with 6."""
    short = small.set_column(small.schema.get_field_index("hts_code"), "hts_code",
                             pc.utf8_slice_codeunits(small.column("hts_code"), 0, 8))
    result = ceecore.uniformity(short, min_lines=5)
    for level, digits in (("hts10", 8), ("hts6", 6)):
        codes = result.filter(pc.equal(result.column("level"), level)).column("hts").to_pylist()
        assert {len(c) for c in codes} == ({digits} if codes or level == "hts10" else set())
    assert set(result.filter(pc.equal(result.column("level"), "hts10")).column("hts").to_pylist()) <= \
        set(short.column("hts_code").to_pylist())


def test_nothing_to_compare():
    """No lines, lines of no Center (chapter 99), one port only: an empty table."""
    assert Uniformity().result().equals(RESULT_SCHEMA.empty_table())
    assert Uniformity.from_arrow(Uniformity().to_arrow()).result().num_rows == 0
    lines = pa.table({"entry_number": ["A1", "A2", "A3"], "line_number": [1, 1, 1], "importer_id": ["I", "I", "J"],
                      "port_code": ["30", "30", "30"], "entry_date": pa.array([18262] * 3, pa.date32()),
                      "hts_code": ["9903880100", "6109100010", "6109100010"], "country_of_origin": ["CN"] * 3,
                      "entered_value": [1.0, 2.0, 3.0], "inspected": [True, False, None]})
    assert ceecore.uniformity(lines, min_lines=2).num_rows == 0


def test_inputs_without_outcomes_compare_declarations_only(small):
    bare = small.drop_columns(["inspected", "violation", "revenue_recovered"])
    result = ceecore.uniformity(bare, min_lines=5)
    assert result.num_rows > 0
    assert set(result.column("measure").to_pylist()) <= {"duty_rate", "preference_share", "unit_value", "hts_mix"}
    # Without the inspected flag (or with a column of nulls, as a run's spill holds it) no
    # inspection rate, but a known outcome is an inspected line's: the same findings.
    full = ceecore.uniformity(small, min_lines=5)
    nulls = small.set_column(small.schema.get_field_index("inspected"), "inspected",
                             pa.nulls(small.num_rows, pa.bool_()))
    for flagless in (small.drop_columns(["inspected"]), nulls):
        table = ceecore.uniformity(flagless, min_lines=5)
        assert "inspection_rate" not in table.column("measure").to_pylist()
        for measure in ("violation_rate", "revenue_per_inspected"):
            ours, want = (t.filter(pc.equal(t.column("measure"), measure)).sort_by([("center", "ascending"),
                          ("level", "ascending"), ("hts", "ascending"), ("origin", "ascending"), ("port", "ascending")])
                          for t in (table, full))
            assert ours.num_rows > 0
            assert ours.select(["port_value", "other_value", "p_value"]).equals(
                want.select(["port_value", "other_value", "p_value"]))


# ---------------------------------------------------------------- state: any batching, any merge order


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_same_result_whatever_the_batches_and_merge_order(small, data):
    table = small.slice(0, 3_000)
    whole = _state(table)
    cuts = data.draw(st.lists(st.integers(1, table.num_rows - 1), max_size=6), label="cuts")
    parts = [Uniformity() for _ in range(data.draw(st.integers(1, 4), label="states"))]
    for i, intake in enumerate(_intakes(table, cuts)):
        parts[data.draw(st.integers(0, len(parts) - 1), label=f"state of batch {i}")].update(intake)
    order = data.draw(st.permutations(range(len(parts))), label="merge order")
    merged = Uniformity()
    for i in order:
        merged.merge(Uniformity.from_arrow(parts[i].to_arrow()) if i % 2 else parts[i])
    assert merged.to_arrow().equals(whole.to_arrow())
    assert merged.result(min_lines=4).equals(whole.result(min_lines=4))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_pieces_of_disjoint_centers_give_the_same_table(small, data):
    """States of the lines of disjoint sets of Centers (any grouping and batching; how a
    run reads its views, a Center at a time), their comparisons joined in any order:
    the whole state's table (every comparison is within a Center; the FDR over all)."""
    n_centers = len(CenterMap.default().codes)
    groups = data.draw(st.lists(st.integers(0, 3), min_size=n_centers, max_size=n_centers), label="groups")
    cuts = data.draw(st.lists(st.integers(1, small.num_rows - 1), max_size=4), label="cuts")
    pieces = {g: Uniformity() for g in set(groups)}
    for intake in _intakes(small, cuts):
        for g, piece in pieces.items():
            rows = np.flatnonzero(np.isin(intake.parsed["center"], [c for c, k in enumerate(groups) if k == g]))
            piece.update(Intake(intake.canonical, intake.codes, {k: v[rows] for k, v in intake.parsed.items()}))
    order = data.draw(st.permutations(sorted(pieces)), label="order")
    compared = [pieces[g].comparisons(5) for g in order]
    assert comparison_table(compared, CenterMap.default()).equals(_state(small).result(5))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_messy_lines_any_layout_any_batches(lines, data):
    """The shared strategy's lines (dirty rows, every text layout, optional columns
    dropped, chapters 98/99, unmapped chapters): no error, and the same state whatever
    the batches."""
    drawn = data.draw(lines(max_rows=60, dirty=True), label="lines")
    table = drawn.table
    cuts = data.draw(st.lists(st.integers(1, max(1, table.num_rows - 1)), max_size=4), label="cuts")
    whole, parts = _state(table), _state(table, cuts if table.num_rows > 1 else [])
    assert parts.to_arrow().equals(whole.to_arrow())
    assert parts.result(min_lines=2).equals(whole.result(min_lines=2))
    assert whole.result(min_lines=2).schema == RESULT_SCHEMA


def test_the_table_built_in_chunks_is_the_table_built_whole(small, monkeypatch):
    """The result table is built a chunk of rows at a time; a row's words may refer to a
    row of an earlier chunk (the port that stands out the other way): any chunk size
    gives the same table."""
    whole = _state(small).result()
    assert whole.num_rows > 50 and any("the other ports include port" in f for f in whole.column("finding").to_pylist())
    module = importlib.import_module("ceecore.uniformity")  # (ceecore.uniformity is also the API's function)
    for rows in (1, 7, 50):
        monkeypatch.setattr(module, "TABLE_CHUNK", rows)
        assert _state(small).result().equals(whole)


def test_threads_do_not_change_the_table(small):
    assert ceecore.uniformity(small, threads=1, min_lines=5).equals(ceecore.uniformity(small, threads=3, min_lines=5))


def test_the_state_fed_from_a_runs_spill(small, tmp_path):
    """The hook a run or score set uses: the replayed intakes of a run's second pass
    (outcome columns always there, null where the input had none) give the same table."""
    from ceecore.scoring import scoring_input_types
    from ceecore.spill import LineSpill

    spill = LineSpill(tmp_path / "lines.arrow", scoring_input_types())
    for intake in _intakes(small, [2_000, 4_000]):
        spill.write(spill.batch(intake))
    spill.close()
    state = Uniformity()
    for intake in spill.intakes():
        state.update(intake)
    assert state.result(5).equals(_state(small).result(5))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_the_fold_against_sorted_sums(data):
    """The fold (keys given dense ids by hash, counts added in place, bins and importers in
    hash tables) against the plain reference: every row's counts, histogram rows and
    importers summed per key by sorting (:meth:`_Tallies.summed`), whatever the batches,
    including lines added after the state was read."""
    n = data.draw(st.integers(1, 200), label="rows")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    k1 = rng.integers(0, 4, n) << 10 | rng.integers(0, 3, n)
    k2 = rng.integers(0, 3, n)
    counts = rng.integers(0, 1 << 40, (n, len(COUNTS)))
    h_row = rng.integers(0, n, 2 * n)
    h_field, h_bin = rng.integers(0, len(HISTOGRAMS), 2 * n), rng.integers(-_MAX_BIN, _MAX_BIN + 1, 2 * n)
    h_bin[::2] = h_bin[0]  # (bins that repeat)
    importer = rng.integers(-5, 5, n) * (1 << 60)  # (a few importers, hashes of any sign)
    want = _Tallies.summed(k1, k2, counts, h_row, h_field, h_bin, np.ones(2 * n, np.int64), np.arange(n), importer)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n), max_size=5), label="cuts")))
    fold, done = _Fold(), []
    for a, b in pairwise([0, *cuts, n]):
        hist = (h_row >= a) & (h_row < b)
        fold.add(k1[a:b], k2[a:b], list(counts[a:b].T), h_row[hist] - a, h_field[hist], h_bin[hist],
                 np.ones(int(hist.sum()), np.int64), np.arange(b - a), importer[a:b])
        if data.draw(st.booleans(), label="read here"):
            done.append(fold.take())  # (the fold, emptied, takes the next lines)
    got = _Tallies.combine([*done, fold.take()])
    for name, value in want._asdict().items():
        assert np.array_equal(getattr(got, name), value), name


@settings(max_examples=60, deadline=None)
@given(a=st.lists(st.integers(0, 40), max_size=80), b=st.lists(st.integers(-2**62, 2**62), min_size=1, max_size=5),
       picks=st.lists(st.integers(0, 4), min_size=80, max_size=80))
def test_pairs_as_numpys_unique_rows(a, b, picks):
    """The distinct (cell, number) rows the comparisons group by, against numpy's sort of rows."""
    left = np.array(a, np.int64)
    right = np.array([b[i % len(b)] for i in picks[:len(a)]], np.int64)
    want, at = np.unique(np.c_[left, right].reshape(-1, 2), axis=0, return_inverse=True)
    got, got_at = _pairs(left, right)
    assert np.array_equal(got, want) and np.array_equal(got_at, at.ravel())


def test_the_fold_kernel_refuses_rows_out_of_bounds():
    """The compiled fold reads its rows by index: an index or bin out of range is refused
    before anything is folded (never a read past an array)."""
    from ceecore._kernels._views import KeyFold
    one, two = np.ones(2, np.int64), np.zeros(2, np.int64)
    hashes = np.array([3, 4], np.uint64)

    def add(fold: KeyFold, hist_row=(0,), hist_field=(0,), hist_bin=(0,), imp_row=(1,), columns=None) -> None:
        h = np.array(hist_row, np.int64)
        fold.add(hashes, one, two, columns if columns is not None else [None, two], h,
                 np.array(hist_field, np.int64), np.array(hist_bin, np.int64), np.ones(len(h), np.int64),
                 np.array(imp_row, np.int64), np.ones(len(imp_row), np.int64))

    fold = KeyFold(2, 8)
    for bad in ({"hist_row": (2,)}, {"hist_row": (-1,)}, {"hist_field": (4,)}, {"hist_bin": (9,)},
                {"hist_bin": (-9,)}, {"imp_row": (2,)}, {"columns": [None]}, {"columns": [None, one[:1]]}):
        with pytest.raises(ValueError):
            add(fold, **bad)
        assert fold.n == 0
    add(fold)
    assert fold.n == 2 and np.array_equal(fold.counts(np.array([1, 0])), [[1, 0], [1, 0]])
    for order in ([0], [0, 2], [-1, 0]):
        with pytest.raises(ValueError):
            fold.counts(np.array(order, np.int64))
    with pytest.raises(RuntimeError, match="share a 64-bit hash"):  # the same hashes, other keys
        fold.add(hashes, two, two, [None, two], *(np.zeros(0, np.int64),) * 4, *(np.zeros(0, np.int64),) * 2)


def test_a_hash_collision_stops_the_fold(small, monkeypatch):
    """Keys (or a key's importers) that share a hash would be summed as one: the fold
    checks every id against its key and refuses instead."""
    monkeypatch.setattr(sys.modules["ceecore.uniformity"], "combine", lambda tag, *columns: np.full(len(columns[0]), 7, np.uint64))
    with pytest.raises(RuntimeError, match="share a 64-bit hash"):
        _state(small.slice(0, 500))


# ---------------------------------------------------------------- state files are untrusted


def _tampered(table: pa.Table, column: str, row: int, value: int) -> pa.Table:
    values = table.column(column).to_numpy().copy()
    values[row] = value
    return table.set_column(table.schema.get_field_index(column), column,
                            pa.array(values, STATE_SCHEMA.field(column).type))


def test_state_round_trip_and_refusals(small):
    state = _state(small.slice(0, 2_000)).to_arrow()
    assert Uniformity.from_arrow(state).to_arrow().equals(state)
    field = state.column("field").to_numpy()
    lines_row = int(np.flatnonzero(field == 0)[0])
    inspected_row = int(np.flatnonzero(field == 3)[0])
    bad = {
        "wrong format": state.replace_schema_metadata({b"ceecore.uniformity": b'{"format": "other/9"}'}),
        "no metadata": state.replace_schema_metadata(None),
        "negative count": _tampered(state, "value", lines_row, -1),
        "more inspected than lines": _tampered(state, "value", inspected_row, 10**9),
        "histogram not adding up": _tampered(state, "value", lines_row, int(state.column("value")[lines_row].as_py()) + 1),
        "bad port": _tampered(state, "port", 0, 10_000),
        "bad hts": _tampered(state, "hts", 0, 5),
        "bad origin": _tampered(state, "origin", 0, 700),
        "unknown field": _tampered(state, "field", 0, 99),
        "a key's field twice": pa.concat_tables([state, state.slice(0, 1)]),
        "missing column": state.drop_columns(["bin"]),
        "nulls": state.set_column(6, "value", pa.array([None] * state.num_rows, pa.int64())),
    }
    for why, table in bad.items():
        with pytest.raises(ValueError):
            Uniformity.from_arrow(table)
            pytest.fail(why)


# ---------------------------------------------------------------- the bar of issue 13


def _planted(result: pa.Table, truth: dict) -> tuple[int, dict]:
    """The rank (by significance) and row of a planted disparity: the inspection rate of
    the port's Center's goods as a whole; the duty rate of the product at the port."""
    for rank, row in enumerate(result.to_pylist()):
        if row["measure"] == truth["measure"] and row["port"] == truth["port"] and row["center"] == truth["center"] \
                and (row["hts"] == truth["hts"] if truth["hts"] else row["level"] == "center"):
            return rank, row
    return -1, {}


@pytest.mark.parametrize("seed", [8, 21])
def test_bar_planted_disparities_top_ten_and_none_without_them(seed):
    config = synth.SynthConfig(lines=BAR_LINES, seed=seed, disparities=True)
    world = synth.Synthesizer(config)
    truth = world.disparities().to_pylist()
    result = ceecore.uniformity(world.table())
    clean = ceecore.uniformity(synth.generate_table(lines=BAR_LINES, seed=seed))
    q_clean = clean.column("q_value").to_numpy()
    print(f"\nseed {seed}, {BAR_LINES:,} lines: {result.num_rows:,} rows with the disparities "
          f"({int((result.column('q_value').to_numpy() < 0.05).sum())} at q < 0.05); without them {clean.num_rows:,} "
          f"rows, {int((q_clean < 0.05).sum())} at q < 0.05, {int((q_clean < 0.01).sum())} at q < 0.01")
    for planted in truth:
        rank, row = _planted(result, planted)
        print(f"  {planted['measure']:<16} rank {rank + 1:>2}  q={row.get('q_value', float('nan')):.1e}  "
              f"{row.get('finding')}")
        assert 0 <= rank < 10 and row["q_value"] < 0.01
        # The rows it mirrors (the same goods at other ports, leaning the other way) say so.
        group = ("center", "level", "hts", "origin", "measure")
        mirrors = [r for r in result.to_pylist() if [r[k] for k in group] == [row[k] for k in group]
                   and r["port"] != row["port"]
                   and (r["port_value"] - r["other_value"]) * (row["port_value"] - row["other_value"]) < 0]
        assert all(f"include port {row['port']}, which differs the other way" in r["finding"] for r in mirrors)
        # The same port and Center (product) in data without the disparities: nothing at q < 0.01.
        same = [r for r in clean.to_pylist() if r["measure"] == planted["measure"] and r["port"] == planted["port"]
                and r["center"] == planted["center"] and (r["hts"] == planted["hts"] if planted["hts"] else True)]
        assert all(r["q_value"] >= 0.01 for r in same), same[:2]


def test_bar_false_discoveries_on_a_null_world():
    """Where ports truly do not differ (no schemes, inspections at random, unit values
    drawn alike at every port), the inspection and unit-value comparisons are a complete
    null: adjusted among themselves, none passes q < 0.05 (Benjamini-Hochberg allows any
    discovery at most 5% of the time), and among all the table's discoveries (the
    declared measures differ for real: importers claim and pay differently) they make
    up well under 5%."""
    table = synth.generate_table(lines=BAR_LINES, seed=4, scheme_rates=dict.fromkeys(synth.SCHEMES, 0.0),
                                 targeting=1.0)
    result = ceecore.uniformity(table)
    is_null = pc.is_in(result.column("measure"), pa.array(["inspection_rate", "unit_value"])).to_numpy(
        zero_copy_only=False)
    p, q = result.column("p_value").to_numpy(), result.column("q_value").to_numpy()
    found = q < 0.05
    print(f"\nnull world, {BAR_LINES:,} lines: {int(is_null.sum()):,} inspection and unit-value comparisons "
          f"(smallest p {p[is_null].min():.2e}), {int((benjamini_hochberg(p[is_null]) < 0.05).sum())} at q < 0.05 among "
          f"themselves; of the table's {int(found.sum())} rows at q < 0.05, {int((found & is_null).sum())} are theirs")
    assert is_null.sum() > 1000 and (benjamini_hochberg(p[is_null]) >= 0.05).all()
    assert (found & is_null).sum() <= 0.05 * max(found.sum(), 1)


@needs_kcs
def test_real_kcs_declarations():
    """The KCS declarations (every line inspected, no inspected flag, 6-digit codes):
    violation rates, duty rates and unit values compared across its offices."""
    result = ceecore.uniformity(str(KCS_TRAIN), mapping=ceecore.ColumnMapping.preset("kcs"))
    q = result.column("q_value").to_numpy()
    print(f"\nKCS train: {result.num_rows} comparisons, {int((q < 0.05).sum())} at q < 0.05; "
          f"by measure {pc.value_counts(result.column('measure')).to_pylist()}")
    assert result.schema == RESULT_SCHEMA and result.num_rows > 100
    assert {"violation_rate", "duty_rate", "unit_value"} <= set(result.column("measure").to_pylist())
    assert {len(h) for h in result.filter(pc.equal(result.column("level"), "hts10")).column("hts").to_pylist()} == {6}


# ---------------------------------------------------------------- the command


def test_cli_uniformity(small, tmp_path):
    source = tmp_path / "lines.parquet"
    pq.write_table(small, source)
    out, state = tmp_path / "u.parquet", tmp_path / "u.arrow"
    proc = subprocess.run([sys.executable, "-m", "ceecore", "uniformity", str(source), "-o", str(out), "--state",
                           str(state), "--min-lines", "5", "--threads", "2"],
                          check=False, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "comparisons" in proc.stdout and "q=" in proc.stdout
    table = pq.read_table(out)
    assert table.equals(ceecore.uniformity(small, min_lines=5))
    assert Uniformity.from_arrow(ipc.open_file(state).read_all()).result(5).equals(table)
    bad = tmp_path / "bad.csv"
    bad.write_text("entry_number,importer_id\nA1,B\n")
    proc = subprocess.run([sys.executable, "-m", "ceecore", "uniformity", str(bad), "-o", str(tmp_path / "x.parquet")],
                          check=False, capture_output=True, text=True, env=cli_env(), timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def test_min_lines_default_is_documented():
    assert MIN_LINES == 20
