"""Baselines, indicators, scores, the model artifact and the Scorer (ceecore.baselines, ceecore.scoring)."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import ceecore
from benchmarks.jobs import JOBS
from ceecore import scoring, synth
from ceecore._kernels._scores import combine as combine_contributions
from ceecore._kernels._tally import Tally, combine, hash_strings
from ceecore.baselines import BIN_WIDTH, LOG_LOW, Baselines, Norms, shrunk_spreads
from ceecore.scoring import INDICATOR_RAW_VALUES, INDICATOR_TALLIES, INDICATORS, RAW_VALUES, Model, ScoringConfig
from ceecore_cli.main import cli

from scoring_reference import Reference  # noqa: I001 (tests/ is on the path)

SCALE = float(os.environ.get("CEECORE_HYPOTHESIS_SCALE", "1"))  # 10: a longer hunt for bugs
# Small data needs small norms, so that every indicator has something to judge by.
SMALL = ScoringConfig.from_doc({
    "thresholds": {"others_min_lines": 3, "account_min_lines": 5, "origin_min_lines": 10, "surge_min_lines": 10,
                   "surge_from": 2.0},
    "norms": {"min_group_lines": 5},
})


def _same(a: pa.RecordBatch | pa.Table, b: pa.RecordBatch | pa.Table) -> bool:
    """Equal data, NaN equal to NaN (raw values are NaN where a norm is missing)."""
    return pl.from_arrow(pa.table(a)).equals(pl.from_arrow(pa.table(b)))


def lines(n: int, seed: int, **params) -> pa.Table:  # noqa: ANN003
    return synth.generate_table(lines=n, seed=seed, **params)


# ------------------------------------------------------------------ the tally kernel


@settings(max_examples=int(60 * SCALE), deadline=None)
@given(fold=st.sampled_from(["sum", "min", "max"]), data=st.lists(st.tuples(st.integers(0, 40), st.integers(-10**12, 10**12)),
                                                                  max_size=300), cut=st.integers(0, 300))
def test_tally_matches_a_dict_and_merges_in_any_order(fold, data, cut):
    combine_fn = {"sum": lambda a, b: a + b, "min": min, "max": max}[fold]
    want: dict[int, int] = {}
    for k, v in data:
        want[k] = combine_fn(want[k], v) if k in want else v
    halves = []
    for part in (data[:cut], data[cut:]):
        t = Tally(fold)
        t.add(np.array([k for k, _ in part], np.uint64), np.array([v for _, v in part], np.int64))
        halves.append(t)
    for a, b in ((0, 1), (1, 0)):
        merged = Tally(fold)
        merged.merge(halves[a])
        merged.merge(halves[b])
        keys, values = merged.items()
        assert dict(zip(keys.tolist(), values.tolist())) == want
        assert list(keys) == sorted(want)
    probe = np.array(sorted(want) + [999], np.uint64)
    assert halves[0].get(probe, -7).shape == (len(probe),)
    assert Tally(fold).get(np.array([5], np.uint64), -7).tolist() == [-7]


def test_a_large_tally_matches_numpy_through_growth_merges_and_key_zero():
    rng = np.random.default_rng(3)
    keys = np.r_[rng.integers(0, 1 << 62, 150_000).astype(np.uint64) * np.uint64(3), np.zeros(10, np.uint64)]
    keys = np.r_[keys, keys[:40_000]]  # repeats, and key 0 (an empty slot's mark) as a real key
    values = rng.integers(-1000, 1000, (len(keys), 3))
    want_keys, inverse = np.unique(keys, return_inverse=True)
    want = np.stack([np.bincount(inverse, values[:, 0]).astype(np.int64),
                     np.full(len(want_keys), 10**9), np.full(len(want_keys), -10**9)], axis=1)
    np.minimum.at(want[:, 1], inverse, values[:, 1])
    np.maximum.at(want[:, 2], inverse, values[:, 2])
    parts = []
    for part in np.array_split(np.arange(len(keys)), 3):
        t = Tally("sum", "min", "max")
        t.add(keys[part], values[part])
        parts.append(t)
    merged = Tally("sum", "min", "max")
    for t in parts[::-1]:
        merged.merge(t)
    got_keys, got = merged.items()
    assert (got_keys == want_keys).all() and (got == want).all()
    assert (merged.get(want_keys) == want).all() and len(merged) == len(want_keys)
    merged.merge(merged)  # merging a tally with itself doubles the sums
    assert (merged.items()[1][:, 0] == 2 * want[:, 0]).all()


def test_tally_refuses_mixed_folds_and_bad_input():
    with pytest.raises(ValueError, match="fold"):
        Tally("mean")
    with pytest.raises(ValueError, match="merge"):
        Tally("sum").merge(Tally("max"))
    with pytest.raises(ValueError, match="keys"):
        Tally().add(np.zeros(2, np.uint64), np.zeros(3, np.int64))


def test_string_hashes_agree_across_layouts_and_nulls_hash_to_zero():
    values = ["ACME", None, "", "acme", "ACME", "x" * 40]
    plain = hash_strings(pa.record_batch({"s": pa.array(values)}), "s")
    for array in (pa.array(values, pa.large_string()), pa.array(values, pa.string_view()),
                  pa.array(values).dictionary_encode()):
        assert hash_strings(pa.record_batch({"s": array}), "s").tolist() == plain.tolist()
    assert plain[1] == plain[2] == 0 and plain[0] == plain[4] != plain[3]
    assert hash_strings(pa.record_batch({"s": pa.array(values)}), "absent").tolist() == [0] * 6


def test_combine_is_deterministic_and_tagged():
    a, b = np.arange(1000), np.arange(1000, dtype=np.uint64) % 7
    assert (combine(1, a, b) == combine(1, a, b)).all()
    assert len(set(combine(1, a, b).tolist())) == 1000
    assert not (combine(1, a, b) == combine(2, a, b)).any()
    with pytest.raises(ValueError):
        combine(1, np.arange(3), np.arange(4))


# ------------------------------------------------------------------ baselines


def test_norms_are_the_median_and_robust_spread_of_unit_values():
    rng = np.random.default_rng(1)
    n = 4_000
    unit_value = np.exp(rng.normal(np.log(12.0), 0.4, n))
    quantity = np.full(n, 10.0)
    table = pa.table({
        "entry_number": [f"E{i:08d}" for i in range(n)], "line_number": np.ones(n, np.int64),
        "importer_id": [f"I{i % 50}" for i in range(n)], "port_code": ["2704"] * n,
        "entry_date": pa.array(np.full(n, np.datetime64("2025-03-01", "D"))), "hts_code": ["8471300100"] * n,
        "country_of_origin": ["CN"] * n, "entered_value": np.round(unit_value * quantity, 2), "quantity": quantity,
    })
    model = ceecore.fit(table)
    norms = Norms(model.baselines.tallies["uv_hist"])
    assert len(norms.groups) == 4  # one group per level
    logs = np.log(table.column("entered_value").to_numpy() / quantity)
    assert norms.median == pytest.approx(np.median(logs), abs=0.03)
    iqr = np.subtract(*np.percentile(logs, [75, 25])) / 1.349
    assert norms.spread == pytest.approx(iqr, abs=0.03)


@pytest.mark.parametrize("differ", [0.0, 0.5])
def test_spreads_shrink_towards_their_levels_as_far_as_groups_differ_no_more(differ):
    """400 groups of 20 to 400 lines whose true spreads differ by ``differ`` (sd of log
    spread): alike, the shrunk spreads are far nearer the truth than the sample's (40
    lines: off by a fifth as often as not); unlike, the groups keep their own, and the
    shrunk spreads are at least as near the truth as the sample's."""
    rng = np.random.default_rng(3)
    lines = rng.integers(20, 400, 400)
    truth = 0.3 * np.exp(rng.normal(0, differ, 400))
    sample = np.array([np.subtract(*np.percentile(rng.normal(0, t, n), [75, 25])) / 1.349 for t, n in zip(truth, lines)])
    shrunk = shrunk_spreads(sample, lines, np.zeros(400, np.int64))
    raw_error, shrunk_error = np.mean(np.log(sample / truth) ** 2), np.mean(np.log(shrunk / truth) ** 2)
    if differ == 0:
        assert shrunk_error < 0.2 * raw_error
    else:
        assert shrunk_error <= raw_error
        assert np.corrcoef(np.log(shrunk), np.log(truth))[0, 1] > 0.95  # each keeps its own


def _state(table: pa.Table, batch_rows: int) -> pa.Table:
    return ceecore.fit(pa.Table.from_batches(table.to_batches(max_chunksize=batch_rows))).baselines.to_arrow()


def test_fit_is_partition_invariant(tmp_path):
    """Any batching, any split across fits merged in any order: the identical artifact."""
    table = lines(30_000, seed=4, dirty=20)
    want = _state(table, 1 << 20)
    assert _state(table, 777).equals(want)
    parts = [ceecore.fit(table.slice(a, b - a)).baselines for a, b in ((0, 9_000), (9_000, 21_000), (21_000, 30_020))]
    for order in ((0, 1, 2), (2, 0, 1)):
        merged = Baselines()
        for i in order:
            merged.merge(parts[i])
        assert merged.to_arrow().equals(want)
    # ... and byte for byte as a saved model.
    for name, state in (("a", want), ("b", merged.to_arrow())):
        model = Model(Baselines.from_arrow(state), meta=ceecore.pipeline.model_meta(Baselines.from_arrow(state)))
        model.save(tmp_path / f"{name}.arrow")
    assert (tmp_path / "a.arrow").read_bytes() == (tmp_path / "b.arrow").read_bytes()


def test_models_fitted_apart_merge_into_the_model_of_one_fit(tmp_path):
    """Fit parts in separate processes, `ceecore merge` them: the bytes of one fit on everything."""
    table = lines(24_000, seed=8, dirty=10)
    whole = tmp_path / "whole.arrow"
    ceecore.fit(table).save(whole)
    parts = []
    for i, (a, b) in enumerate(((0, 5_000), (5_000, 17_000), (17_000, table.num_rows))):
        pq.write_table(table.slice(a, b - a), tmp_path / f"part{i}.parquet")
        parts.append(str(tmp_path / f"part{i}.arrow"))
        result = CliRunner().invoke(cli, ["fit", str(tmp_path / f"part{i}.parquet"), "-o", parts[-1], "-q"])
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["merge", parts[2], parts[0], parts[1], "-o", str(tmp_path / "merged.arrow")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "merged.arrow").read_bytes() == whole.read_bytes()
    other = ScoringConfig.from_doc({"weights": {"origin_rare": 0.0}})
    with pytest.raises(ValueError, match="different scoring configs"):
        ceecore.merge_models([parts[0], ceecore.fit(table.slice(0, 100), config=other)])


def test_baselines_round_trip_and_refuse_foreign_tables():
    state = ceecore.fit(lines(5_000, seed=2)).baselines.to_arrow()
    assert Baselines.from_arrow(state).to_arrow().equals(state)
    with pytest.raises(ValueError, match="not ceecore baselines"):
        Baselines.from_arrow(state.replace_schema_metadata({}))
    with pytest.raises(ValueError, match="non-null"):
        Baselines.from_arrow(state.rename_columns(["tally", "field", "k", "value"]).replace_schema_metadata(state.schema.metadata))


# ------------------------------------------------------------------ indicators


def _scored(table: pa.Table, config: ScoringConfig = SMALL) -> tuple[Model, pl.DataFrame]:
    model = ceecore.fit(table, config=config)
    return model, pl.from_arrow(ceecore.Scorer(model).score(table))


@pytest.mark.parametrize("variants", [False, True])
def test_every_indicator_matches_the_plain_reference_on_random_data(variants):
    table = lines(4_000, seed=9, scheme_rates=dict.fromkeys(synth.SCHEMES, 0.03), accounts=60, products=120,
                  variants=variants)
    # The generator's duty always follows the rate: make one line in 50 pay a tenth of it.
    paid = table.column("duty_paid").to_numpy()
    paid = np.where(np.arange(len(paid)) % 50 == 0, np.round(paid / 10, 2), paid)
    table = table.set_column(table.schema.get_field_index("duty_paid"), "duty_paid", pa.array(paid))
    model, scored = _scored(table)
    reference = Reference(table.to_pylist(), SMALL)
    fired = dict.fromkeys(INDICATORS, 0)
    for row, line in zip(scored.iter_rows(named=True), reference.lines):
        want = reference.strengths(line)
        for name in INDICATORS:
            assert row[name] == pytest.approx(want[name], abs=1e-5), (name, row["entry_number"])
            fired[name] += want[name] > 0
        assert row["score"] == pytest.approx(reference.score(want, line), abs=1e-5)
    # The comparison exercised every indicator (a variant new importer files few lines: in
    # so small a world it does not stand out by lines per day).
    assert all(n > 0 for name, n in fired.items() if not (variants and name == "new_importer")), fired
    if variants:  # and, on the variant shapes, the evidence of partial schemes
        assert reference.branches["switch_old_origin_going_on"] > 0, reference.branches
        assert reference.branches["disparity_number_here_only"] > 0, reference.branches


def _line(entry: str, importer: str, day: int, hts: str, country: str, value: float, quantity: float = 10,
          port: str = "2704", mfr: str | None = "CNACMEWID1SHE", spi: str | None = None, rate: float = 5.0) -> dict:
    return {"entry_number": entry, "line_number": 1, "importer_id": importer, "port_code": port,
            "entry_date": dt.date(2025, 1, 1) + dt.timedelta(days=day), "hts_code": hts, "country_of_origin": country,
            "entered_value": value, "duty_rate": 0.0 if spi else rate, "quantity": quantity, "gross_weight_kg": quantity,
            "manufacturer_id": mfr, "spi": spi}


@pytest.mark.parametrize("kept", [("unit_value_outlier",), ("origin_switch", "port_spread", "volume_surge"),
                                  ("unit_value_low", "classification_disparity", "new_importer")])
def test_an_indicator_with_weight_zero_is_off_and_its_baselines_not_built(tmp_path, kept):
    table = lines(6_000, seed=9, scheme_rates=dict.fromkeys(synth.SCHEMES, 0.03), accounts=60, products=120)
    _, full = _scored(table)
    doc = {"thresholds": {k: v for k, v in SMALL.thresholds.items()}, "norms": {"min_group_lines": 5},
           "weights": {name: (SMALL.weights[name] if name in kept else 0) for name in INDICATORS}}
    config = ScoringConfig.from_doc(doc)
    model, some = _scored(table, config)
    assert set(model.baselines.tallies) == {"acct", *(t for name in kept for t in INDICATOR_TALLIES[name])}
    for name in INDICATORS:
        if name in kept:
            assert some[name].equals(full[name]), name
            assert some[name].max() > 0, name
        else:  # not in the output at all, nor its raw values
            assert name not in some.columns
    assert [c for c in some.columns if c in RAW_VALUES] == [c for c in RAW_VALUES if any(
        c in INDICATOR_RAW_VALUES[name] for name in kept)]
    model.save(tmp_path / "m.arrow")
    assert set(ceecore.load_model(tmp_path / "m.arrow").model.baselines.tallies) == set(model.baselines.tallies)
    with pytest.raises(ValueError, match="refit"):
        Model(model.baselines)  # the default config needs baselines this model lacks
    with pytest.raises(ValueError, match="cannot merge"):
        Baselines().merge(model.baselines)


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_the_unit_value_score_agrees_with_the_benchmark_peers(engine, tmp_path):
    """The benchmark's polars and duckdb peers compute the same baseline and score: exact
    quantiles where ceecore interpolates in 5% bins, so they agree to within a bin or two."""
    table = lines(60_000, seed=5)
    config = ScoringConfig.from_doc({"weights": {n: 1.0 if n == "unit_value_outlier" else 0.0 for n in INDICATORS}})
    ours = pl.from_arrow(ceecore.Scorer(ceecore.fit(table, config=config)).score(table))
    source, output = str(tmp_path / "lines.parquet"), str(tmp_path / "scores.parquet")
    pq.write_table(table, source)
    JOBS[engine](source, output)
    theirs = pl.read_parquet(output).select("entry_number", "line_number", "score", "unit_value_z")
    both = ours.join(theirs, on=["entry_number", "line_number"], suffix="_peer")
    assert both.height == table.num_rows
    z = both.filter(pl.col("unit_value_z").is_not_nan() & pl.col("unit_value_z_peer").is_not_null())
    assert z.height > 0.9 * table.num_rows
    assert (z["unit_value_z"] - z["unit_value_z_peer"]).abs().median() < 0.15  # a 5% bin is ~0.1 spread here
    assert (both["unit_value_outlier"] - both["score_peer"]).abs().mean() < 0.01
    assert ((both["unit_value_outlier"] > 0) == (both["score_peer"] > 0)).mean() > 0.98


def test_hand_computed_unit_value_and_preference_cases():
    # Twelve importers sell a product from CN at $10 a unit; A declares $3.
    rows = [_line(f"E{i}", f"I{i % 12}", i, "8471300100", "CN", 100.0) for i in range(60)]
    rows += [_line(f"A{i}", "A", 100 + i, "8471300100", "CN", 30.0) for i in range(5)]
    # Mexican goods claim USMCA ("S") nearly always; one Chinese line claims it too.
    rows += [_line(f"M{i}", f"I{i % 12}", i, "9403600000", "MX", 100.0, spi="S") for i in range(40)]
    rows += [_line("B1", "B", 200, "9403600000", "CN", 100.0, spi="S")]
    rows += [_line(f"C{i}", f"I{i % 12}", i, "9403600000", "CN", 100.0, rate=3.0) for i in range(30)]
    table = pa.Table.from_pylist(rows)
    _, scored = _scored(table)
    a = scored.filter(pl.col("importer_id") == "A")
    # A's 5 lines are 5 of the group's 65, so the norm is the group's histogram median:
    # 5 lines below ln 10's bin, 60 in it, so the median sits (32.5 - 5) / 60 into it;
    # the spread (no spread at all) is floored at one bin, 0.05.
    ln10_bin = np.floor((np.log(10) - LOG_LOW) / BIN_WIDTH)
    median = LOG_LOW + BIN_WIDTH * (ln10_bin + (32.5 - 5) / 60)
    assert a["account_unit_value_z"][0] == pytest.approx((np.log(3) - median) / BIN_WIDTH, rel=1e-6)  # micro-units
    # Every ramp far past its end: the strength bends towards 1 (1 - 0.01 / (r - 0.8) at
    # r times the way). The size (~24 spreads on the ramp 0.5 -> 1.5) bounds the deep
    # test, but a 70% shortfall against the robust median of the number and origin is
    # material, so the sustained test (z = size / sqrt(1 / 5 lines + 1 / 60 others) on
    # 2.0 -> 3.09) counts too, and it is the larger.
    size = -a["account_unit_value_z"][0]
    deep = 1 - 0.01 / ((size - 0.5) / 1.0 - 0.8)
    sustained = 1 - 0.01 / ((size / np.sqrt(1 / 5 + 1 / 60) - 2.0) / (3.09 - 2.0) - 0.8)
    assert sustained > deep
    assert a["unit_value_low"].to_numpy() == pytest.approx(sustained, rel=1e-6)
    assert 0.999 < a["unit_value_low"][0] < 1.0
    assert (scored.filter(pl.col("importer_id").str.starts_with("I") & (pl.col("hts_code") == "8471300100"))
            ["unit_value_low"] == 0).all()
    b = scored.filter(pl.col("importer_id") == "B")
    assert b["claim_share"][0] == pytest.approx(1 / 96)  # 1 of all 96 Chinese lines claims S
    assert b["preference_rare"][0] == pytest.approx((1 / 96 - 0.05) / (0.005 - 0.05))
    assert (scored.filter(pl.col("country_of_origin") == "MX")["preference_rare"] == 0).all()
    assert b["reasons"][0].to_list()[0] == "preference_rare"


def test_hand_computed_origin_switch_and_classification_disparity():
    rows = [_line(f"O{i}", "T", i * 5, "8501100000", "CN", 100.0, rate=25.0) for i in range(4)]  # days 0..15
    # ... then from VN, paying less duty than the Chinese goods (a switch that saves none is no transshipment)
    rows += [_line(f"N{i}", "T", 100 + i, "8501100000", "VN", 100.0, mfr="VNNEWCO12HAN") for i in range(3)]
    # One importer + manufacturer + heading: 7318.15 at 5% in Los Angeles, 7318.16 at 2% in Newark.
    rows += [_line(f"R{i}", "K", i, "7318150000", "CN", 50.0, port="2704", rate=5.0) for i in range(4)]
    rows += [_line(f"W{i}", "K", i, "7318160000", "CN", 50.0, port="4601", rate=2.0) for i in range(4)]
    _, scored = _scored(pa.Table.from_pylist(rows))
    switched = scored.filter(pl.col("entry_number").str.starts_with("N"))
    # First seen 100 days after the product (ramp 30 -> 90 days): r = 70 / 60, past the bend at 0.9.
    assert switched["origin_switch"].to_numpy() == pytest.approx(1 - 0.01 / (70 / 60 - 0.8), rel=1e-6)
    assert (scored.filter(pl.col("entry_number").str.starts_with("O"))["origin_switch"] == 0).all()
    wrong = scored.filter(pl.col("entry_number").str.starts_with("W"))
    # (500 - 200) / 500 = 0.6 on the ramp to 0.1: r = 6, past the bend at 0.9.
    assert wrong["classification_disparity"].to_numpy() == pytest.approx(1 - 0.01 / (6 - 0.8), rel=1e-6)
    assert (scored.filter(pl.col("entry_number").str.starts_with("R"))["classification_disparity"] == 0).all()


def test_hand_computed_account_indicators():
    rows = []
    for k in range(20):  # twenty steady importers, one port each, all year
        rows += [_line(f"S{k}-{d}", f"S{k}", d * 30, "3926909985", "CN", 100.0, port="2704") for d in range(12)]
    rows += [_line(f"P{d}", "P", d * 30, "3926909985", "CN", 100.0, port=port)  # twelve ports, one line each
             for d, port in enumerate(["2704", "2709", "1001", "4601", "1703", "5301", "3801", "4701", "3901",
                                       "2720", "3001", "3002"])]
    # New: 30 lines on one day, one of them (Q0) worth 20 usual lines.
    rows += [_line(f"Q{d}", "Q", 300, "3926909985", "CN", 2000.0 if d == 0 else 100.0) for d in range(30)]
    _, scored = _scored(pa.Table.from_pylist(rows))
    p = scored.filter(pl.col("importer_id") == "P")
    assert p["effective_ports"][0] == pytest.approx(12.0)
    # 12 ports against an industry of 1: r = (12 - 1.5) / (3 - 1.5) = 7, far past the bend.
    assert p["port_spread"].to_numpy() == pytest.approx(1 - 0.01 / (7 - 0.8), rel=1e-6)
    assert (scored.filter(pl.col("importer_id").str.starts_with("S"))["port_spread"] == 0).all()
    q = scored.filter(pl.col("importer_id") == "Q")
    assert (q["lines_per_day"] == 30.0).all()
    mean_line = (281 * 100 + 2000) / 282  # the product's value per line
    ordinary, bulky = q.filter(pl.col("entry_number") != "Q0"), q.filter(pl.col("entry_number") == "Q0")
    v = 100 / mean_line  # the volume counts on an ordinary line in proportion v / (1 + v)
    assert ordinary["line_value_ratio"].to_numpy() == pytest.approx(v, rel=1e-6)
    account = ordinary["new_importer"].to_numpy() / (v / (1 + v))  # the account's strength, far above the industry
    assert 0.99 < account.min() and account.max() < 1 and account.max() - account.min() < 1e-6
    # Its lines' values against the steady accounts' (all $100: no spread but the floor, a variance of 1e-6):
    # its mean log value is log(20) / 30 higher (the within-account variance, 0 but for the millionths the
    # sums of squares are kept in, adds a few percent to the standard error).
    assert q["account_value_z"].to_numpy() == pytest.approx(np.log(20) / 30 / 1e-3, rel=0.05)
    # Q0 is worth 18.7 mean lines: the account's evidence counts on it in proportion v / (1 + v).
    v0 = 2000 / mean_line
    assert bulky["new_importer"][0] == pytest.approx(account[0] * v0 / (1 + v0), rel=1e-6)
    assert (scored.filter(pl.col("importer_id") != "Q")["new_importer"] == 0).all()


# ------------------------------------------------------------------ scores, the Scorer, the artifact


def test_hand_computed_volume_surge():
    rows = []
    for month in range(1, 7):  # twenty lines a month for six months, then 120 in July
        rows += [_line(f"V{month}-{i}", "V", (dt.date(2025, month, 1) - dt.date(2025, 1, 1)).days + i % 20,
                       "8471300100", "CN", 100.0) for i in range(20)]
    rows += [_line(f"J{i}", "V", 181 + i % 25, "8471300100", "CN", 100.0) for i in range(120)]
    _, scored = _scored(pa.Table.from_pylist(rows))
    july = scored.filter(pl.col("entry_number").str.starts_with("J"))
    # 120 / 20 = 6 on the test config's ramp from 2 to 8: strength 4 / 6.
    assert (july["month_volume_ratio"] == 6.0).all() and july["volume_surge"].to_numpy() == pytest.approx(4 / 6)
    assert (scored.filter(pl.col("entry_number").str.starts_with("V"))["volume_surge"] == 0).all()  # 20 / 20


def test_scores_are_explained_by_their_indicators(tmp_path):
    table = lines(20_000, seed=3)
    model, scored = _scored(table)
    weights = np.array([model.config.weights[n] for n in INDICATORS])
    strengths = scored.select(INDICATORS).to_numpy().astype(float)
    evidence = 1 - np.prod(1 - strengths * weights, axis=1)
    # The line's value at stake takes at most 1% off, less the dearer the line.
    stake = 1 - 0.01 / (1 + np.log1p(table.column("entered_value").to_numpy()))
    assert scored["score"].to_numpy() == pytest.approx(evidence * stake, abs=1e-6)
    assert (scored["score"].to_numpy() <= evidence + 1e-6).all()
    assert scored["score"].min() >= 0 and scored["score"].max() <= 1
    for row in scored.filter(pl.col("score") > 0).head(200).iter_rows(named=True):
        first = row["reasons"][0]
        assert row[first] * model.config.weights[first] == max(row[n] * model.config.weights[n] for n in INDICATORS)


@settings(max_examples=int(40 * SCALE), deadline=None)
@given(rows=st.lists(st.lists(st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 0.9, 1.0]), min_size=10, max_size=10),
                     max_size=40), k=st.integers(0, 12))
def test_the_combine_kernel_matches_numpy(rows, k):
    """Score, top contributors (ties: the lower column) and how many fired, against numpy."""
    c = np.array(rows, np.float64).reshape(-1, 10)
    score, top, fired = combine_contributions(c, k)
    assert (score == 1 - np.prod(1 - c, axis=1)).all()
    kk = min(k, 10)
    want = np.argsort(-c, axis=1, kind="stable")[:, :kk]
    assert (top == want).all()
    assert (fired == (np.take_along_axis(c, want, 1) > 0).sum(axis=1)).all()


def test_scores_do_not_depend_on_threads_or_batching(tmp_path):
    table = lines(40_000, seed=6)
    outputs = []
    for threads, rows in ((1, 1 << 20), (2, 5_000), (3, 12_345)):
        out = tmp_path / f"run{threads}"
        ceecore.run(pa.Table.from_batches(table.to_batches(max_chunksize=rows)), out, threads=threads)
        outputs.append({name: pq.read_table(out / name) for name in ("lines.parquet", "accounts.parquet", "worklist.parquet")})
        assert (out / "model.arrow").read_bytes() == (tmp_path / "run1" / "model.arrow").read_bytes()
    for other in outputs[1:]:
        for name, table_ in outputs[0].items():
            assert pl.from_arrow(other[name]).equals(pl.from_arrow(table_)), name  # NaN equals NaN here


def test_the_scorer_is_safe_to_share_between_threads():
    table = lines(20_000, seed=8)
    scorer = ceecore.Scorer(ceecore.fit(table))
    batches = table.to_batches(max_chunksize=1_000)
    want = [scorer.score(b) for b in batches]
    got: dict[int, pa.RecordBatch] = {}

    def work(k: int) -> None:
        for i in range(k, len(batches), 4):
            got[i] = scorer.score(batches[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(_same(got[i], want[i]) for i in range(len(batches)))
    # Any Arrow producer: a polars frame scores the same.
    assert _same(scorer.score(pl.from_arrow(pa.Table.from_batches(batches[:1]))), want[0])


def test_rejected_rows_come_back_with_a_reason_and_no_score():
    table = lines(3_000, seed=5, dirty=16)
    scored = ceecore.Scorer(ceecore.fit(table)).score(table)
    assert scored.num_rows == table.num_rows
    rejected = pl.from_arrow(scored).filter(pl.col("reject_reason").is_not_null())
    assert sorted(rejected["reject_reason"].unique()) == sorted(synth.DIRTY_REASONS)
    assert rejected["score"].null_count() == rejected.height and rejected["reasons"].null_count() == rejected.height


def test_model_round_trip_and_clear_errors_for_anything_else(tmp_path):
    table = lines(10_000, seed=1)
    model = ceecore.fit(table)
    path = tmp_path / "model.arrow"
    model.save(path)
    loaded = ceecore.load_model(path)
    assert loaded.model.baselines.to_arrow().equals(model.baselines.to_arrow())
    assert loaded.model.config == model.config and loaded.model.meta["lines"] == 10_000
    assert _same(loaded.score(table), ceecore.Scorer(model).score(table))
    bad = tmp_path / "bad.arrow"
    for content, message in ((b"not arrow at all", "not a ceecore model"), (path.read_bytes()[:500], "not a ceecore model")):
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=message):
            ceecore.load_model(bad)
    pq.write_table(table, bad)
    with pytest.raises(ValueError, match="not a ceecore model"):
        ceecore.load_model(bad)
    import pyarrow.ipc as ipc
    state = model.baselines.to_arrow()
    for meta, message in (({b"ceecore.model": b'{"format": "ceecore.model/0"}'}, "refit"),
                          ({b"ceecore.model": b"{not json"}, "not a ceecore model")):
        with ipc.new_file(bad, state.schema.with_metadata({**state.schema.metadata, **meta})) as w:
            w.write_table(state.replace_schema_metadata({**state.schema.metadata, **meta}))
        with pytest.raises(ValueError, match=message):
            ceecore.load_model(bad)


def test_exploration_seeds_must_fit_and_older_configs_load(tmp_path):
    with pytest.raises(ValueError, match="exploration_seed"):
        ScoringConfig.from_doc({"output": {"exploration_seed": 2**64 - 1}})
    model = ceecore.fit(lines(3_000, seed=1))
    model.save(tmp_path / "m.arrow")
    table = ipc.open_file(str(tmp_path / "m.arrow")).read_all()
    meta = json.loads(table.schema.metadata[b"ceecore.model"])
    del meta["config"]["exploration_seed"], meta["config"]["exploration_share"]  # as an older release wrote it
    table = table.replace_schema_metadata({**table.schema.metadata, b"ceecore.model": json.dumps(meta).encode()})
    batches = table.to_batches()
    seal = scoring._checksum(table.schema.metadata, batches).hexdigest().encode()  # sealed as save seals it
    with ipc.new_file(str(tmp_path / "old.arrow"), table.schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
        writer.write_batch(batches[-1].slice(0, 0), custom_metadata={b"ceecore.sha256": seal})
    assert ceecore.Model.load(tmp_path / "old.arrow").config.exploration_seed == 0


def test_config_files_are_checked(tmp_path):
    good = tmp_path / "c.toml"
    good.write_text("[weights]\nport_spread = 0.5\n")
    assert ScoringConfig.from_toml(good).weights["port_spread"] == 0.5
    for text, message in (("[weights]\nnope = 1\n", "unknown key"), ("[weights]\nport_spread = 2\n", "in \\[0, 1\\]"),
                          ("[extra]\n", "unknown section"), ("[weights]\nport_spread = 'x'\n", "number"),
                          ("[weights\n", "cannot read")):
        good.write_text(text)
        with pytest.raises(ValueError, match=message):
            ScoringConfig.from_toml(good)


# ------------------------------------------------------------------ detection, jobs and CLI


def test_every_injected_scheme_is_recovered_in_the_top_5_percent(tmp_path):
    table = lines(400_000, seed=11)
    summary = ceecore.run(table, tmp_path)
    recall = synth.scheme_recall(pq.read_table(summary.outputs["lines.parquet"]), table)
    print("recall@5% per scheme:", {k: round(v, 3) for k, v in recall.items()})
    assert set(recall) == set(synth.SCHEMES)
    assert all(v >= 0.7 for v in recall.values()), recall


def test_a_run_without_its_views_writes_the_same_scores_and_no_views(tmp_path):
    table = lines(20_000, seed=4)
    ceecore.run(table, tmp_path / "with")
    summary = ceecore.run(table, tmp_path / "without", views=False)
    assert sorted(p.name for p in (tmp_path / "without").iterdir()) == sorted(
        ["lines.parquet", "accounts.parquet", "worklist.parquet", "rejects.parquet", "model.arrow", "summary.json"])
    assert sorted(summary.outputs) == sorted(p.name for p in (tmp_path / "without").iterdir())
    for name in ("lines.parquet", "accounts.parquet", "worklist.parquet"):
        assert pq.read_table(tmp_path / "with" / name).equals(pq.read_table(tmp_path / "without" / name)), name


def test_run_writes_every_output(tmp_path):
    table = lines(30_000, seed=2, dirty=5)
    summary = ceecore.run(table, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["lines.parquet", "accounts.parquet", "worklist.parquet", "trends.parquet", "shifts.parquet",
         "uniformity.parquet", "rejects.parquet", "model.arrow", "summary.json"])
    doc = summary.to_dict()
    assert doc["rows_read"] == 30_005 and doc["rejected"] == 5 and doc["lines_scored"] == 30_000
    assert pq.read_table(tmp_path / "lines.parquet").num_rows == 30_000
    assert pq.read_table(tmp_path / "rejects.parquet").num_rows == 5
    accounts = pl.read_parquet(tmp_path / "accounts.parquet")
    for _, group in accounts.group_by("center"):
        ranked = group.sort("rank_in_center")
        assert ranked["rank_in_center"].to_list() == list(range(1, group.height + 1))
        assert ranked["score"].is_sorted(descending=True)
    worklist = pl.read_parquet(tmp_path / "worklist.parquet")
    assert set(worklist["kind"]) == {"account", "line"}
    assert worklist.group_by("kind", "center").len()["len"].max() <= 50


def test_run_scores_its_replayed_lines_as_the_scorer_scores_the_input(tmp_path):
    """run parses its input once and scores the lines it kept (the spill): the same ids,
    outcomes, Centers, scores, reasons and indicators as a Scorer on the input itself."""
    table = lines(20_000, seed=8, dirty=7)
    ceecore.run(table, tmp_path)
    model = Model.load(tmp_path / "model.arrow")
    direct = pl.from_arrow(ceecore.Scorer(model).score(table)).filter(pl.col("reject_reason").is_null()) \
        .drop("reject_reason")
    replayed = pl.read_parquet(tmp_path / "lines.parquet")
    assert replayed.height == 20_000 and replayed.columns == direct.columns
    assert replayed.equals(direct)  # NaN equals NaN here
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # the spill went with the staging


def test_run_takes_a_one_time_stream(tmp_path):
    """Reading the input once, run scores a stream that can be read only once."""
    table = lines(12_000, seed=3)
    ceecore.run(table, tmp_path / "table")
    stream = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=3_000))
    ceecore.run(stream, tmp_path / "stream")
    for name in ("lines.parquet", "accounts.parquet", "worklist.parquet"):
        assert pl.read_parquet(tmp_path / "stream" / name).equals(pl.read_parquet(tmp_path / "table" / name)), name
    assert (tmp_path / "stream" / "model.arrow").read_bytes() == (tmp_path / "table" / "model.arrow").read_bytes()


def test_the_worklist_reserves_exploration_picks(tmp_path):
    table = lines(30_000, seed=2)
    config = ScoringConfig.from_doc({"output": {"worklist": 20, "exploration_share": 0.25}})
    ceecore.run(table, tmp_path, config=config)
    worklist = pl.read_parquet(tmp_path / "worklist.parquet")
    everything = pl.read_parquet(tmp_path / "lines.parquet")
    for (kind, center), group in worklist.group_by("kind", "center"):
        assert group["rank"].sort().to_list() == list(range(1, group.height + 1))
        best, picked = group.filter(pl.col("pick") == "score"), group.filter(pl.col("pick") == "exploration")
        if kind == "line" and everything.filter(pl.col("center") == center).height >= 20:
            assert best.height == 15 and picked.height == 5
            assert picked["score"].max() <= best["score"].min()  # picked among the rest
            assert picked["rank"].min() > best["rank"].max()
    # Another seed, other picks; the same seed, the same picks.
    seeded = ScoringConfig.from_doc({"output": {"worklist": 20, "exploration_share": 0.25, "exploration_seed": 7}})
    ceecore.run(table, tmp_path / "seeded", config=seeded)
    picks = pl.read_parquet(tmp_path / "seeded" / "worklist.parquet").filter(pl.col("pick") == "exploration")
    assert not picks.equals(worklist.filter(pl.col("pick") == "exploration"))
    # Nothing reserved: the top 20 by score, as before.
    ceecore.run(table, tmp_path / "none", config=ScoringConfig.from_doc({"output": {"worklist": 20,
                                                                                    "exploration_share": 0}}))
    assert set(pl.read_parquet(tmp_path / "none" / "worklist.parquet")["pick"]) == {"score"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 4)), min_size=20, max_size=300),
       st.lists(st.integers(1, 20), min_size=1, max_size=8), st.integers(1, 4), st.integers(1, 12),
       st.integers(0, 3), st.sampled_from([np.float64, np.float32]))
def test_each_accounts_best_lines_are_the_plain_top_k(rows, cuts, k, cut_rows, ahead, dtype):
    """BestLinesPerAccount keeps, per account, the k lines of highest score (of equal
    scores, the earliest), whatever the batches, however often it cuts its buffer down
    (and so whichever floors leave lines out on the way) and however many batches the
    workers cut down (``of``) ahead of those added in order: against a plain sort."""
    from ceecore.worklist import BestLinesPerAccount

    hashes = np.array([10 + a for a, _ in rows], np.uint64)
    scores = np.array([s / 4 for _, s in rows], dtype)  # (few distinct scores: many ties)
    strengths = np.arange(len(rows), dtype=np.float64)  # (each line's arrival, to check which line won)
    best = BestLinesPerAccount(k, ("x",))
    best.cut_rows = cut_rows
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    start, i = 0, 0
    while start < len(rows):
        end = min(len(rows), start + cuts[i % len(cuts)])
        batch = pa.record_batch({"score": scores[start:end], "x": strengths[start:end]})
        pending.append(best.of(batch, hashes[start:end]))
        if len(pending) > ahead:
            best.add(pending.pop(0))
        start, i = end, i + 1
    for part in pending:
        best.add(part)
    if best.parts:
        best._reduce()
    got = best.parts[0] if best.parts else (np.zeros(0, np.uint64), np.zeros(0), np.zeros((0, 1)))
    want = sorted(range(len(rows)), key=lambda r: (hashes[r], -scores[r], r))
    want = [r for j, r in enumerate(want) if sum(hashes[q] == hashes[r] for q in want[max(0, j - k):j]) < k]
    assert got[0].tolist() == hashes[want].tolist()
    assert got[2][:, 0].tolist() == [float(r) for r in want]


def test_cli_fit_score_run_demo(tmp_path):
    runner = CliRunner()
    data = tmp_path / "lines.parquet"
    synth.write(data, lines=20_000, seed=4)
    result = runner.invoke(cli, ["fit", str(data), "-o", str(tmp_path / "m.arrow")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["score", str(data), "--model", str(tmp_path / "m.arrow"), "-o", str(tmp_path / "s.parquet")])
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "s.parquet").num_rows == 20_000
    result = runner.invoke(cli, ["run", str(data), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0 and "riskiest 3 accounts per Center" in result.output
    result = runner.invoke(cli, ["demo", "-n", "20000", "-o", str(tmp_path / "demo")])
    assert result.exit_code == 0 and "recall" in result.output, result.output
    (tmp_path / "junk.arrow").write_bytes(b"junk")
    result = runner.invoke(cli, ["score", str(data), "--model", str(tmp_path / "junk.arrow"), "-o", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2 and "not a ceecore model" in result.output


# ------------------------------------------------------------------ edges (from a review)


def test_a_model_fits_and_saves_without_optional_columns_or_with_every_row_rejected(tmp_path):
    table = lines(3_000, seed=3).drop_columns(["manufacturer_id", "spi", "quantity", "gross_weight_kg"])
    summary = ceecore.run(table, tmp_path / "a")
    assert summary.stats.accepted == 3_000 and (tmp_path / "a" / "model.arrow").exists()
    broken = lines(500, seed=3).set_column(2, "importer_id", pa.nulls(500, pa.string()))
    summary = ceecore.run(broken, tmp_path / "b")
    assert summary.stats.rejected == 500 and summary.accounts == 0
    assert pq.read_table(tmp_path / "b" / "lines.parquet").num_rows == 0


def test_claims_of_different_origins_never_share_a_key():
    # KE and UA are 270 apart in the 26 x 26 code space: a 56-bit shift would merge them.
    rows = [_line(f"K{i}", f"I{i % 5}", i, "6109100000", "KE", 50.0, spi="D") for i in range(20)]
    rows += [_line(f"U{i}", f"I{i % 5}", i, "6109100000", "UA", 50.0) for i in range(20)]
    rows += [_line("X1", "X", 30, "6109100000", "UA", 50.0, spi="D")]
    _, scored = _scored(pa.Table.from_pylist(rows))
    x = scored.filter(pl.col("importer_id") == "X")
    assert x["claim_share"][0] == pytest.approx(1 / 21)  # not (20 + 1) / 41, Kenya's claims counted in


def test_an_unseen_port_is_judged_by_the_line_itself():
    rows = [_line(f"R{i}", "K", i, "7318150000", "CN", 50.0, port="2704", rate=5.0) for i in range(4)]
    rows += [_line(f"W{i}", "K", i, "7318160000", "CN", 50.0, port="2704", rate=4.9) for i in range(4)]
    model = ceecore.fit(pa.Table.from_pylist(rows), config=SMALL)
    new_port = pa.Table.from_pylist([_line("N1", "K", 10, "7318160000", "CN", 50.0, port="4601", rate=4.9)])
    strength = ceecore.Scorer(model).score(new_port).column("classification_disparity")[0].as_py()
    assert strength == pytest.approx(0.1 / 5.0 / 0.1)  # a 2% gap, on the ramp to 10%: not 1


def test_text_in_any_layout_the_contract_reads(tmp_path):
    table = lines(2_000, seed=4, dirty=8)
    model = ceecore.fit(table)
    want = pl.from_arrow(ceecore.Scorer(model).score(table))
    for name in ("hts_code", "spi", "importer_id"):
        for kind in (pa.binary(), pa.large_binary(), pa.binary_view()):
            variant = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(kind))
            got = pl.from_arrow(ceecore.Scorer(model).score(variant))
            assert got.select("score", "reject_reason").equals(want.select("score", "reject_reason")), (name, kind)
    # A dictionary whose unused values could not be parsed (a rejected row's HTS code).
    hts = table.column("hts_code").combine_chunks().to_pylist()
    hts[0] = "84X1.20.00"
    variant = table.set_column(table.schema.get_field_index("hts_code"), "hts_code", pa.array(hts).dictionary_encode())
    got = pl.from_arrow(ceecore.Scorer(model).score(variant))
    assert got["reject_reason"][0] == "bad_hts_code" and got["score"][1:].equals(want["score"][1:])


def test_the_scorer_takes_big_and_empty_inputs():
    table = lines(300_000, seed=2)
    scorer = ceecore.Scorer(ceecore.fit(table.slice(0, 50_000)))
    assert scorer.score(table.combine_chunks()).num_rows == 300_000  # one chunk above a kernel batch
    empty = scorer.score(table.slice(0, 0))
    assert empty.num_rows == 0 and empty.schema.names == scorer.model.scored_schema.names
    one_batch = table.combine_chunks().to_batches()[0]  # one record batch, cut into kernel batches on reading
    model = ceecore.fit(one_batch)
    assert model.baselines.lines == 300_000
    assert ceecore.score(one_batch, model).lines.num_rows == 300_000


def test_parsing_a_batch_leaves_the_book_unchanged():
    batch = lines(2_000, seed=4).combine_chunks().to_batches()[0]
    book = ceecore.AccountBook()
    parsed = book.parse(batch, columns=("spi",))
    ingested = ceecore.AccountBook().ingest(batch, columns=("spi",))
    assert len(book) == 0 and book.to_arrow().num_rows == 0
    assert (parsed.codes == ingested.codes).all() and parsed.canonical.equals(ingested.canonical)
    assert all((parsed.parsed[k] == ingested.parsed[k]).all() for k in ingested.parsed)


def test_no_usable_unit_value_from_a_vanishing_quantity():
    table = lines(2_000, seed=1)
    quantity = table.column("quantity").to_numpy(zero_copy_only=False).copy()
    quantity[::100] = 1e-310
    table = table.set_column(table.schema.get_field_index("quantity"), "quantity",
                             pa.array(quantity, from_pandas=True))  # NaN: a null quantity, as before
    model = ceecore.fit(table)
    moments = model.baselines.tallies["uv_moments"].items()[1]
    assert np.abs(moments).max() < 2**62  # no infinite log unit value folded in
    scored = pl.from_arrow(ceecore.Scorer(model).score(table))
    assert scored["reject_reason"].null_count() == 2_000
    assert scored["score"].null_count() == 0 and not scored["score"].is_nan().any()


def test_a_tally_sum_saturates_at_the_int64_limits():
    t = Tally("sum")
    t.add(np.array([1, 2], np.uint64), np.array([2**62, -(2**62)], np.int64))
    t.add(np.array([1, 1, 2, 2], np.uint64), np.array([2**62, 2**62, -(2**62), -(2**62)], np.int64))
    assert t.get(np.array([1, 2], np.uint64)).tolist() == [2**63 - 1, -(2**63)]


def test_outcomes_pass_through_scoring_and_unparseable_ones_are_rejected():
    table = lines(3_000, seed=12).drop_columns(["inspected", "violation", "revenue_recovered"])
    text = ["yes", "no", None, "maybe", "1"] * 600
    revenue = ["12.5", None, "", "3", "x"] * 600
    labelled = table.append_column("violation", pa.array(text)).append_column("revenue_recovered", pa.array(revenue))
    scored = pl.from_arrow(ceecore.Scorer(ceecore.fit(table)).score(labelled))
    reasons = scored["reject_reason"].to_list()
    assert reasons[3::5] == ["bad_violation"] * 600 and reasons[4::5] == ["bad_revenue_recovered"] * 600
    ok = scored.filter(pl.col("reject_reason").is_null())
    assert ok["violation"].to_list()[:3] == [True, False, None] and ok["revenue_recovered"].to_list()[:3] == [12.5, None, None]
    assert ok["inspected"].null_count() == ok.height  # absent from the input: null
    model = ceecore.fit(labelled)
    assert model.meta["lines"] == 1_800


def test_run_refuses_an_output_inside_its_input(tmp_path):
    synth.write(tmp_path / "in" / "lines.parquet", lines=1_000)
    with pytest.raises(ValueError, match="inside the input directory"):
        ceecore.run(str(tmp_path / "in"), tmp_path / "in" / "out")


def test_a_failed_run_leaves_the_previous_outputs(tmp_path, monkeypatch):
    ceecore.run(lines(2_000, seed=1), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(ceecore.pipeline, "account_scores", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        ceecore.run(lines(2_000, seed=2), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
