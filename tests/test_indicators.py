"""The indicator registry (ceecore.indicators): what it declares, what derives from it, and
that it describes the compiled scoring kernel (the kernel itself is tested against the
plain reference in tests/test_scoring.py)."""

from __future__ import annotations

import datetime as dt
import itertools
import tomllib
from importlib import resources

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ceecore
from ceecore import indicators
from ceecore._kernels._indicators import INDICATOR_IDS, RAW_IDS, THRESHOLDS, ScoringContext, score_lines
from ceecore._kernels._tally import Tally
from ceecore.baselines import MOMENT_LEVELS, TALLIES, roll_up, uv_group
from ceecore.indicators.account import port_spread_evidence
from ceecore.indicators.unit_value import origin_mix, origin_price_variance, origin_prices
from ceecore.synth import generate_table
from scoring_reference import Reference, _ramp, _spread_evidence  # noqa: I001 (tests/ is on the path)


def _shipped_config() -> dict:
    return tomllib.loads((resources.files("ceecore") / "data" / "scoring.toml").read_text(encoding="utf-8"))


def test_the_registry_describes_the_kernel_and_the_shipped_config():
    assert indicators.INDICATORS == tuple(INDICATOR_IDS)  # scoring order is the kernel's order
    assert len(set(indicators.INDICATORS)) == len(indicators.REGISTRY)
    assert indicators.RAW_VALUES == tuple(RAW_IDS)
    declared = {key for indicator in indicators.REGISTRY for key in indicator.thresholds}
    assert set(THRESHOLDS) <= declared  # everything the kernel reads is declared by an indicator
    shipped = _shipped_config()
    assert tuple(shipped["weights"]) == indicators.INDICATORS
    assert set(shipped["thresholds"]) == declared
    for indicator in indicators.REGISTRY:
        assert set(indicator.tallies) <= set(TALLIES), indicator.name
        assert indicator.doc and indicator.describe()["name"] == indicator.name
    assert indicators.ACCOUNT_INDICATORS == ("port_spread", "new_importer")


def test_tables_derive_from_the_registry():
    assert indicators.tallies([]) == ("acct",)
    assert indicators.tallies(["unit_value_outlier", "unit_value_low"]) == ("acct", "uv_hist", "uv_moments", "ap_uv")
    assert indicators.raw_values(["unit_value_low", "duty_below_peers"]) == (
        "unit_value_z", "account_unit_value_z", "norm_level", "peer_duty_rate")
    config = ceecore.ScoringConfig.from_doc({"weights": {"origin_rare": 0.0, "volume_surge": 0.0}})
    assert "origin_lines" not in config.tallies and "acct_month" not in config.tallies
    assert indicators.by_name("origin_switch").tallies == ("ap_days", "ap_earliest", "duty")


def test_a_config_must_match_the_registry():
    with pytest.raises(ValueError, match="unknown key"):
        ceecore.ScoringConfig.from_doc({"thresholds": {"no_such_threshold": 1.0}})
    with pytest.raises(ValueError, match="not those the indicators declare"):
        indicators.check_thresholds({"duty_gap_from": 0.5}, "test")


def test_lookups_are_built_once_per_builder_and_only_for_enabled_indicators():
    table = generate_table(lines=5_000, accounts=100, seed=2)
    model = ceecore.fit(table)
    calls: list[str] = []
    unit_value = indicators.by_name("unit_value_low").lookups

    def counted(tallies, thresholds):  # noqa: ANN001, ANN202
        calls.append("unit_value")
        return unit_value(tallies, thresholds)

    both = [indicators.by_name("unit_value_low"), indicators.by_name("unit_value_outlier")]
    originals = [indicator.lookups for indicator in both]
    try:
        for indicator in both:
            object.__setattr__(indicator, "lookups", counted)
        built = indicators.lookups(["unit_value_low", "unit_value_outlier", "duty_below_peers"],
                                   model.baselines.tallies, model.config.thresholds)
    finally:
        for indicator, original in zip(both, originals):
            object.__setattr__(indicator, "lookups", original)
    assert calls == ["unit_value"]
    assert {"norm_index", "uv_moments", "origin_price", "duty"} <= set(built)
    assert "effective_ports" not in built and "typical_month" not in built


def test_the_kernel_refuses_malformed_columns_and_lookups():
    model = ceecore.fit(generate_table(lines=2_000, accounts=50, seed=3))
    with pytest.raises(TypeError, match="must be a Tally"):
        ScoringContext({"duty": np.zeros(3)}, model.config.thresholds, model.config.weights, 30, 0.05, 0)
    with pytest.raises(ValueError, match="one length"):
        ScoringContext({"norm_median": np.zeros(3), "norm_spread": np.zeros(2), "norm_lines": np.zeros(3, np.int64)},
                       model.config.thresholds, model.config.weights, 30, 0.05, 0)
    one = np.zeros(1, np.int64)
    fields = (np.zeros(1, np.uint64), np.zeros(1, np.uint64), one, one, one, one, one, one, one, one, np.zeros(1), one,
              one)
    with pytest.raises(ValueError, match="one length"):
        score_lines(model.context, *fields[:-1], np.zeros(2, np.int64))
    strengths, raw, score, top, fired = score_lines(model.context, *fields, 3)
    assert strengths.shape == (1, len(INDICATOR_IDS)) and raw.shape == (1, len(RAW_IDS)) and top.shape == (1, 3)


# ------------------------------------------------------------------ ranking: no clipping, value at stake


def _row(entry: str, importer: str, hts: str, port: str, rate: float, value: float = 100.0) -> dict:
    return {"entry_number": entry, "line_number": 1, "importer_id": importer, "port_code": port,
            "entry_date": dt.date(2025, 1, 1) + dt.timedelta(days=len(entry)), "hts_code": hts,
            "country_of_origin": "CN", "entered_value": value, "duty_rate": rate, "quantity": 10.0,
            "gross_weight_kg": 10.0, "manufacturer_id": "CNACMEWID1SHE", "spi": None}


def test_evidence_beyond_the_end_of_a_ramp_still_ranks_and_the_dearer_line_first():
    """Two importers declare a maker's heading under a cheaper number at one port than at
    another: a 30% and a 60% gap, both past the ramp's end (10%). A clipped ramp gave both
    1 (a tie); now the larger gap is stronger, both below 1. Of lines with the same
    evidence, the dearer scores higher, by less than 1%; lines without evidence score 0."""
    rows = []
    for importer, cheap in (("K", 3.5), ("L", 2.0)):
        rows += [_row(f"{importer}R{i}", importer, "7318150000", "2704", 5.0) for i in range(4)]
        rows += [_row(f"{importer}W{i}", importer, "7318160000", "4601", cheap, value=100.0 * (i + 1))
                 for i in range(4)]
    table = pa.Table.from_pylist(rows)
    config = ceecore.ScoringConfig.from_doc({"weights": {n: 0.9 if n == "classification_disparity" else 0.0
                                                         for n in indicators.INDICATORS}})
    scored = ceecore.score(table, ceecore.fit(table, config=config)).lines.to_pylist()
    by = {row["entry_number"]: row for row in scored}
    k, l = by["KW0"]["classification_disparity"], by["LW0"]["classification_disparity"]
    assert 0.95 < k < l < 1  # gaps 0.3 and 0.6 on the ramp to 0.1: past its end, not clipped
    for importer, strength in (("K", k), ("L", l)):
        scores = [by[f"{importer}W{i}"]["score"] for i in range(4)]
        assert scores == sorted(scores) and len(set(scores)) == 4  # dearer lines first, no ties
        assert all(0.99 * 0.9 * strength <= s < 0.9 * strength for s in scores)
        assert all(by[f"{importer}R{i}"]["score"] == 0 for i in range(4))


def test_a_new_origin_beside_the_old_one_is_a_switch_only_when_too_late_to_be_chance():
    """T files a product from CN (25% duty) every 10 days (days 0-200) and, from day 100
    on, from VN (5%) every 5 days: were VN's 21 lines spread over the 201 days, none would
    fall in the first 100 with chance (101/201)^21 ~ 5e-7, far past 1 in 10,000: a switch,
    the old origin going on. U's VN lines are two (days 100, 150): chance 0.25, no
    evidence, however late. W switches as T does, to a new supplier whose goods pay the
    old origin's 25%: no duty saved, so no transshipment's switch (diversification)."""
    def row(entry: str, importer: str, day: int, country: str, rate: float) -> dict:
        return {**_row(entry, importer, "8501100000", "2704", rate), "country_of_origin": country,
                "entry_date": dt.date(2025, 1, 1) + dt.timedelta(days=day)}
    rows = []
    for importer, new_days, new_rate in (("T", range(100, 201, 5), 5.0), ("U", (100, 150), 5.0),
                                         ("W", range(100, 201, 5), 25.0)):
        rows += [row(f"{importer}O{d}", importer, d, "CN", 25.0) for d in range(0, 201, 10)]
        rows += [row(f"{importer}N{d}", importer, d, "VN" if importer != "W" else "MX", new_rate) for d in new_days]
    table = pa.Table.from_pylist(rows)
    config = ceecore.ScoringConfig.from_doc({"weights": {n: 0.9 if n == "origin_switch" else 0.0
                                                         for n in indicators.INDICATORS}})
    scored = ceecore.score(table, ceecore.fit(table, config=config)).lines.to_pylist()
    strength = {row["entry_number"]: row["origin_switch"] for row in scored}
    # min(gap: 100 days on the ramp 30 -> 90, evidence: -log10 of the chance, on 2 -> 4); the gap is the smaller.
    assert strength["TN100"] == pytest.approx(1 - 0.01 / ((100 - 30) / 60 - 0.8), rel=1e-6)
    assert strength["UN100"] == 0 and strength["UN150"] == 0
    assert all(strength[f"WN{d}"] == 0 for d in range(100, 201, 5))
    assert all(strength[f"{importer}O{d}"] == 0 for importer in "TUW" for d in range(0, 201, 10))


def test_a_cheaper_number_beside_the_dearer_one_at_one_port_only_is_a_disparity():
    """K declares a maker's heading at Los Angeles as 7318.15 (5%) on 6 lines and 7318.16
    (2%) on 4, at Newark as 7318.15 on all 20: were 7318.16 4 in 10 of the heading's lines
    everywhere, none of Newark's 20 would have it with chance 0.6^20 ~ 4e-5. J declares
    7318.16 at Newark too (2 of 20): legitimate variety, no disparity."""
    rows = []
    for importer, newark_cheap in (("K", 0), ("J", 2)):
        rows += [_row(f"{importer}LR{i}", importer, "7318150000", "2704", 5.0) for i in range(6)]
        rows += [_row(f"{importer}LW{i}", importer, "7318160000", "2704", 2.0) for i in range(4)]
        rows += [_row(f"{importer}NR{i}", importer, "7318150000", "4601", 5.0) for i in range(20 - newark_cheap)]
        rows += [_row(f"{importer}NW{i}", importer, "7318160000", "4601", 2.0) for i in range(newark_cheap)]
    table = pa.Table.from_pylist(rows)
    config = ceecore.ScoringConfig.from_doc({"weights": {n: 0.9 if n == "classification_disparity" else 0.0
                                                         for n in indicators.INDICATORS}})
    scored = ceecore.score(table, ceecore.fit(table, config=config)).lines.to_pylist()
    strength = {row["entry_number"]: row["classification_disparity"] for row in scored}
    # min(gap 0.6 on the ramp to 0.1: r = 6; evidence -20 log10(0.6) = 4.44 on the ramp 2 -> 4: r = 1.22)
    late = -20 * np.log10(0.6)
    assert strength["KLW0"] == pytest.approx(1 - 0.01 / ((late - 2) / 2 - 0.8), rel=1e-6)
    assert all(strength[f"JLW{i}"] == 0 for i in range(4))
    assert all(v == 0 for entry, v in strength.items() if "R" in entry)  # the dearer number is no disparity


def test_goods_priced_like_the_dearer_number_of_their_maker_are_misclassified():
    """Twenty importers file 7318.15 (5%) at $10 a unit and 7318.16 (2%) at $2.5 (log-
    normal quantiles, sigma 0.3), 10 lines each, each from a maker of its own. M files
    one maker's heading at one port only: 7318.15 on 12 lines at $10, 7318.16 on 8 lines
    at $10 too: its cheaper number priced like its dearer one, some 4.6 spreads above
    the cheaper number's norm: misclassified, whatever the port. H files the same two
    numbers from one maker at their own prices: two products, nothing. The dearer
    number's lines are never flagged, nor lines without a dearer number in their heading."""
    quantiles = np.array([-1.64, -1.04, -0.67, -0.39, -0.13, 0.13, 0.39, 0.67, 1.04, 1.64])

    def row(entry: str, importer: str, hts: str, i: int, price: float, rate: float) -> dict:
        return {**_row(entry, importer, hts, "2704", rate), "manufacturer_id": f"CNMAKER{importer}1SHE",
                "entered_value": round(10 * price * np.exp(0.3 * quantiles[i % 10]), 2)}
    rows = [row(f"E{k}{h}-{i}", f"I{k}", hts, i, price, rate)
            for k in range(20) for h, (hts, price, rate) in enumerate((("7318150000", 10.0, 5.0),
                                                                       ("7318160000", 2.5, 2.0)))
            for i in range(10)]
    rows += [row(f"MR{i}", "M", "7318150000", i, 10.0, 5.0) for i in range(12)]
    rows += [row(f"MW{i}", "M", "7318160000", i, 10.0, 2.0) for i in range(8)]
    rows += [row(f"HR{i}", "H", "7318150000", i, 10.0, 5.0) for i in range(12)]
    rows += [row(f"HW{i}", "H", "7318160000", i, 2.5, 2.0) for i in range(8)]
    table = pa.Table.from_pylist(rows)
    config = ceecore.ScoringConfig.from_doc({"weights": {n: 0.9 if n == "classification_price" else 0.0
                                                         for n in indicators.INDICATORS}})
    scored = {r["entry_number"]: r for r in ceecore.score(table, ceecore.fit(table, config=config)).lines.to_pylist()}
    assert all(scored[f"MW{i}"]["classification_price"] > 0.95 for i in range(8))
    assert scored["MW0"]["dearer_price_evidence"] > 4
    assert all(scored[f"HW{i}"]["classification_price"] == 0 for i in range(8))
    assert scored["HW0"]["dearer_price_evidence"] < 0
    assert all(r["classification_price"] == 0 for entry, r in scored.items() if not entry.startswith("MW"))
    reference = Reference(rows, config)
    want = [reference.strengths(line)["classification_price"] for line in reference.lines]
    assert [scored[r["entry_number"]]["classification_price"] for r in rows] == pytest.approx(want, abs=1e-6)


def test_a_shallow_shortfall_counts_when_sustained_over_many_lines():
    """Twenty importers file a product from CN at $10 a unit, spread as log-normal
    quantiles (sigma 0.3), 10 lines each. S files 60 lines 20% lower (about 0.7 of a
    spread; S is 23% of the product's lines, too many for the median, which it would
    pull towards its own price: the other accounts' mean is its norm), inside the deep
    test's size ramp (0.5 -> 1.5) but, in the standard error of its mean and of the 200
    other lines', z = size / sqrt(1/60 + 1/200) ~ 4.9, past 1 in 1,000 one-sided: sustained. F files the same shortfall on 2 lines (against the
    median, z ~ 0.7: chance). Asking a larger shortfall than S's (0.3) leaves only the
    deep test."""
    quantiles = np.array([-1.64, -1.04, -0.67, -0.39, -0.13, 0.13, 0.39, 0.67, 1.04, 1.64])

    def row(entry: str, importer: str, i: int, price: float) -> dict:
        return {**_row(entry, importer, "8471300100", "2704", 5.0), "entered_value": round(
            10 * price * np.exp(0.3 * quantiles[i % 10]), 2), "entry_date": dt.date(2025, 1, 1) + dt.timedelta(i)}
    rows = [row(f"E{k}-{i}", f"I{k}", i, 10.0) for k in range(20) for i in range(10)]
    rows += [row(f"S{i}", "S", i, 8.0) for i in range(60)] + [row(f"F{i}", "F", i, 8.0) for i in (4, 5)]
    table = pa.Table.from_pylist(rows)

    def scored(shortfall: float) -> dict[str, dict]:
        config = ceecore.ScoringConfig.from_doc({
            "weights": {n: 0.9 if n == "unit_value_low" else 0.0 for n in indicators.INDICATORS},
            "thresholds": {"unit_value_low_shortfall": shortfall}})
        lines = ceecore.score(table, ceecore.fit(table, config=config)).lines.to_pylist()
        return {row["entry_number"]: row for row in lines}

    shipped, strict = scored(0.1), scored(0.3)
    size = -shipped["S0"]["account_unit_value_z"]
    assert 0.65 < size < 0.8 and shipped["S0"]["norm_level"] == 0  # against the same number and origin
    evidence = size / np.sqrt(1 / 60 + 1 / 200)
    assert shipped["S0"]["unit_value_low"] == pytest.approx(_ramp(evidence, 2.0, 3.09), rel=1e-4)  # size: float32
    assert strict["S0"]["unit_value_low"] == pytest.approx(size - 0.5, rel=1e-5)  # the deep test: size on 0.5 -> 1.5
    assert shipped["S0"]["unit_value_low"] > 0.9 > 0.3 > strict["S0"]["unit_value_low"]
    assert all(shipped[f"S{i}"]["unit_value_low"] == shipped["S0"]["unit_value_low"] for i in range(60))
    assert shipped["F4"]["unit_value_low"] == strict["F4"]["unit_value_low"] == 0  # two lines are no evidence
    assert all(shipped[f"E{k}-0"]["unit_value_low"] == 0 for k in range(20))


@pytest.mark.parametrize("stray", [0.0, 0.1, 0.2])
def test_how_far_origins_stray_from_their_price_index_is_measured_beyond_sampling(stray):
    """300 HTS numbers, each from 4 of 8 origins at 40 lines (log unit values in a
    spread of 0.3 about the number's price plus the origin's effect plus, per number and
    origin, a stray of ``stray``): the variance the norms across origins take in is
    ``stray``^2 (the means' sampling error, 0.3^2 / 40 each, taken out)."""
    rng = np.random.default_rng(5)
    keys, fields = [], []
    effect = rng.normal(0, 0.5, 8)
    for hts in range(300):
        price = rng.normal(3, 1)
        for origin in rng.choice(8, 4, replace=False):
            x = price + effect[origin] + rng.normal(0, stray) + rng.normal(0, 0.3, 40)
            keys.append(uv_group(0, np.array([0]), np.array([hts * 16 + 10]), np.array([origin]))[0])
            fields.append([40, round(x.sum() * 1e6), round((x * x).sum() * 1e6)])
    moments = Tally(*TALLIES["uv_moments"])
    moments.add(*roll_up(np.array(keys, np.uint64), np.array(fields, np.int64), levels=MOMENT_LEVELS))
    price = origin_prices(moments)
    variance = origin_price_variance(moments, price, origin_mix(moments, price), 10)
    assert variance == pytest.approx(stray**2, abs=0.003)


def test_a_few_deep_lines_count_where_the_account_scatters_too_widely_to_be_chance():
    """Twenty importers file a product from CN at $10 a unit, spread as log-normal
    quantiles (sigma 0.3), 10 lines each. D files 40 such lines and 6 at 40% of the price
    (-3 spreads): its lines scatter far too widely for the product's spread (chi-square,
    45 degrees of freedom), so its low lines fire. Its mean, 11% below the others', is
    some 2.4 standard errors low: a shallow shortfall at 1 in 120, but one its scatter
    explains: its usual lines carry it only as far as they are below the norm themselves
    (in full from 1.64 spreads), none above it, all far weaker than its low lines. An
    importer with one such low line among 10 usual ones is within chance: nothing fires."""
    quantiles = np.array([-1.64, -1.04, -0.67, -0.39, -0.13, 0.13, 0.39, 0.67, 1.04, 1.64])

    def row(entry: str, importer: str, i: int, price: float) -> dict:
        return {**_row(entry, importer, "8471300100", "2704", 5.0), "entered_value": round(
            10 * price * np.exp(0.3 * quantiles[i % 10]), 2), "entry_date": dt.date(2025, 1, 1) + dt.timedelta(i)}
    rows = [row(f"E{k}-{i}", f"I{k}", i, 10.0) for k in range(20) for i in range(10)]
    rows += [row(f"D{i}", "D", i, 10.0) for i in range(40)] + [row(f"DL{i}", "D", i, 4.0) for i in (4, 5) * 3]
    rows += [row(f"C{i}", "C", i, 10.0) for i in range(10)] + [row("CL", "C", 5, 4.0)]
    table = pa.Table.from_pylist(rows)
    config = ceecore.ScoringConfig.from_doc({"weights": {n: 0.9 if n == "unit_value_low" else 0.0
                                                         for n in indicators.INDICATORS}})
    lines = ceecore.score(table, ceecore.fit(table, config=config)).lines.to_pylist()
    scored = {row["entry_number"]: row for row in lines}
    low = scored["DL4"]
    assert low["unit_value_z"] < -3.09 and low["unit_value_low"] > 0.5  # deep, and the scatter past 1 in 1,000
    assert -low["account_unit_value_z"] < 0.5  # the account's mean alone is too shallow to tell
    usual = [scored[f"D{i}"] for i in range(40)]  # its usual lines: the account's mean, as far as they are low
    assert all(r["unit_value_low"] == 0 for r in usual if r["unit_value_z"] >= 0)
    assert all(0 < r["unit_value_low"] < 0.5 * low["unit_value_low"] for r in usual if r["unit_value_z"] < -0.1)
    assert scored["CL"]["unit_value_z"] < -2.5 and scored["CL"]["unit_value_low"] == 0  # one low line: chance
    assert all(scored[f"E{k}-0"]["unit_value_low"] == 0 for k in range(20))


def test_goods_declared_lower_away_from_the_main_port_are_port_shopping():
    """Twenty importers file two products from CN at $10 a unit (log-normal quantiles,
    sigma 0.3) at two ports, 10 lines each. P files both products 30 times at its main
    port at $10 and 8 times at each of three other ports at $7.5 (a quarter lower, about
    a spread): pooled over its two products the gap away from the main port is some 6
    standard errors, so its lines away fire and those at its main port do not. H files
    the same at a second port without a gap: nothing. Q files its lower prices at its
    main port (its most lines), its dearer ones elsewhere: the low side, its main port,
    fires. An account's test is one, pooled, per account, whatever its ports."""
    quantiles = np.array([-1.64, -1.04, -0.67, -0.39, -0.13, 0.13, 0.39, 0.67, 1.04, 1.64])

    def row(entry: str, importer: str, hts: str, port: str, i: int, price: float) -> dict:
        return {**_row(entry, importer, hts, port, 5.0), "entered_value": round(
            10 * price * np.exp(0.3 * quantiles[i % 10]), 2), "entry_date": dt.date(2025, 1, 1) + dt.timedelta(i)}
    products = ("8471300100", "8471410150")
    rows = [row(f"E{k}{h}-{i}", f"I{k}", hts, ("2704", "1001")[i % 2], i, 10.0)
            for k in range(20) for h, hts in enumerate(products) for i in range(10)]
    for h, hts in enumerate(products):
        rows += [row(f"P{h}-{i}", "P", hts, "2704", i, 10.0) for i in range(30)]
        rows += [row(f"PA{h}-{port}-{i}", "P", hts, port, i, 7.5) for port in ("1001", "3001", "5301") for i in range(8)]
        rows += [row(f"H{h}-{i}", "H", hts, ("2704", "1001")[i // 10 % 2], i, 10.0) for i in range(40)]
        rows += [row(f"Q{h}-{i}", "Q", hts, "2704", i, 7.5) for i in range(30)]
        rows += [row(f"QA{h}-{i}", "Q", hts, "1001", i, 10.0) for i in range(20)]
    table = pa.Table.from_pylist(rows)
    config = ceecore.ScoringConfig.from_doc({"weights": {n: 0.9 if n == "port_unit_value_low" else 0.0
                                                         for n in indicators.INDICATORS}})
    model = ceecore.fit(table, config=config)
    scored = {r["entry_number"]: r for r in ceecore.score(table, model).lines.to_pylist()}
    away = scored["PA0-3001-0"]
    assert away["port_unit_value_z"] < -5 and away["port_unit_value_low"] > 0.95
    assert all(scored[f"PA{h}-{port}-{i}"]["port_unit_value_low"] == away["port_unit_value_low"]
               for h in (0, 1) for port in ("1001", "3001", "5301") for i in range(8))
    # The main port: the high side against the others, at the norm against the country: not low either way.
    assert 0 < scored["P0-0"]["port_unit_value_z"] < -away["port_unit_value_z"]
    assert all(scored[f"P{h}-{i}"]["port_unit_value_low"] == 0 for h in (0, 1) for i in range(30))
    assert all(scored[f"H{h}-{i}"]["port_unit_value_low"] == 0 for h in (0, 1) for i in range(40))
    assert abs(scored["H0-0"]["port_unit_value_z"]) < 0.1
    assert scored["Q0-0"]["port_unit_value_low"] > 0.9 and scored["QA0-0"]["port_unit_value_low"] == 0
    # The lookup is keyed as the account's ports are (acct_port), one row per port of a judged account.
    port_price = model.lookups["port_price"]
    assert set(port_price.items()[0]) <= set(ceecore.fit(table).baselines.tallies["acct_port"].items()[0])
    assert len(port_price) == 4 + 2 + 2 + 20 * 2  # P's four ports, H's two, Q's two, each I's two


def test_ports_declared_lower_than_the_country_and_the_accounts_dearest_port_are_port_shopping():
    """Sixty importers file a product from CN at $10 a unit (log-normal quantiles, sigma
    0.3), 10 lines each, at one port. S files 6 lines at its own port at $10 and 20 at
    each of three others at $7.5: its honest port holds a tenth of its lines, too few to
    be its main port, so against its main port (a cheap one) nothing is low. Against the
    country each cheap port is about 0.9 spreads low over 20 lines (z < -3) and a quarter
    below its dearest port: port shopping. U files the same ports, all at $7.5: low
    everywhere, no dearer port to shop from, no port shopping (unit_value_low's to tell).
    H files the same ports at $10: nothing."""
    quantiles = np.array([-1.64, -1.04, -0.67, -0.39, -0.13, 0.13, 0.39, 0.67, 1.04, 1.64])

    def row(entry: str, importer: str, port: str, i: int, price: float) -> dict:
        return {**_row(entry, importer, "8471300100", port, 5.0), "entered_value": round(
            10 * price * np.exp(0.3 * quantiles[i % 10]), 2), "entry_date": dt.date(2025, 1, 1) + dt.timedelta(i)}
    rows = [row(f"E{k}-{i}", f"I{k}", "2704", i, 10.0) for k in range(60) for i in range(10)]
    for importer, cheap in (("S", 7.5), ("U", 7.5), ("H", 10.0)):
        rows += [row(f"{importer}A{i}", importer, "1001", i, 7.5 if importer == "U" else 10.0) for i in range(2, 8)]
        rows += [row(f"{importer}{port}-{i}", importer, port, i, cheap) for port in ("3001", "5301", "4601")
                 for i in range(20)]
    table = pa.Table.from_pylist(rows)
    config = ceecore.ScoringConfig.from_doc({"weights": {n: 0.9 if n == "port_unit_value_low" else 0.0
                                                         for n in indicators.INDICATORS}})
    scored = {r["entry_number"]: r for r in ceecore.score(table, ceecore.fit(table, config=config)).lines.to_pylist()}
    cheap = [scored[f"S{port}-{i}"] for port in ("3001", "5301", "4601") for i in range(20)]
    assert all(r["port_unit_value_z"] < -3 and r["port_unit_value_low"] > 0.5 for r in cheap)
    assert all(scored[f"SA{i}"]["port_unit_value_low"] == 0 for i in range(2, 8))
    assert all(r["port_unit_value_low"] == 0 for entry, r in scored.items() if entry[0] in "UHE")
    reference = Reference(rows, config)
    want = [reference.strengths(line)["port_unit_value_low"] for line in reference.lines]
    assert [scored[r["entry_number"]]["port_unit_value_low"] for r in rows] == pytest.approx(want, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1), st.integers(0, 3), st.floats(0.5, 2.0)),
                     min_size=1, max_size=120),
       cut=st.integers(0, 120))
def test_port_prices_merge_exactly_and_match_the_reference(data, cut):
    """Random lines of four importers, two products and four ports at random prices:
    fitted whole or in two parts merged, the port prices are the same, and every line's
    port_unit_value_low is the plain reference's (to the float32 it is written as)."""
    rows = [{**_row(f"E{i}", f"I{imp}", ("8471300100", "8471410150")[prod], f"{1001 + 100 * port}", 5.0),
             "entered_value": round(100 * price, 2)} for i, (imp, prod, port, price) in enumerate(data)]
    table = pa.Table.from_pylist(rows)
    config = ceecore.ScoringConfig.from_doc({
        "weights": {n: 0.9 if n == "port_unit_value_low" else 0.0 for n in indicators.INDICATORS},
        "thresholds": {"others_min_lines": 1, "port_unit_value_from": 0.5, "port_unit_value_to": 1.5,
                       "unit_value_low_shortfall": 0.02}})
    whole = ceecore.fit(table, config=config)
    parts = [ceecore.fit(part, config=config) for part in (table.slice(0, cut), table.slice(cut)) if part.num_rows]
    merged = ceecore.merge_models(parts)
    want = whole.lookups.get("port_price")
    got = merged.lookups.get("port_price")
    assert (want is None) == (got is None)
    if want is not None:
        assert [a.tolist() for a in want.items()] == [a.tolist() for a in got.items()]
    reference = Reference(rows, config)
    scored = ceecore.score(table, whole).lines.to_pylist()
    for row, line in zip(scored, reference.lines):
        assert row["port_unit_value_low"] == pytest.approx(reference.strengths(line)["port_unit_value_low"], abs=1e-6)


# ------------------------------------------------------------------ port spread, given the account's lines


def _tail(lines: int, ports: int, usual: list[float]) -> float:
    """P(at least ``ports`` of the ports reached), each port k reached independently
    with chance 1 - exp(-lines * usual[k]): every subset of ports summed over."""
    hits = [1 - np.exp(-lines * share) for share in usual]
    total = 0.0
    for reached in itertools.product((0, 1), repeat=len(usual)):
        if sum(reached) >= ports:
            total += float(np.prod([h if r else 1 - h for h, r in zip(hits, reached)]))
    return total


@settings(max_examples=60, deadline=None)
@given(usual=st.lists(st.floats(1e-4, 1.0), min_size=1, max_size=8),
       accounts=st.lists(st.tuples(st.integers(1, 2_000), st.integers(0, 9)), min_size=1, max_size=12))
def test_port_spread_evidence_is_the_exact_tail_of_the_ports_reached(usual, accounts):
    """-log10 of the chance that an account of the usual concentration, with these
    lines, reaches at least its ports: every subset of ports summed over, and the plain
    reference, agree (accounts of equal lines share one computation)."""
    usual = [share / max(sum(usual), 1.0) for share in sorted(usual, reverse=True)]
    lines, ports = (np.array(column) for column in zip(*accounts))
    got = port_spread_evidence(lines, ports, np.array(usual))
    for n, k, evidence in zip(lines, ports, got):
        want = -np.log10(max(_tail(int(n), int(k), usual), 1e-300)) if k <= len(usual) else 300.0
        assert evidence == pytest.approx(want, rel=1e-9, abs=1e-9)
        assert evidence == pytest.approx(_spread_evidence(int(n), int(k), usual), rel=1e-9, abs=1e-9)
        assert evidence >= 0


def test_port_spread_evidence_is_conservative_for_accounts_of_the_usual_concentration():
    """20,000 accounts of 1 to 100 entries drawn at the industry's usual concentration,
    an entry's 1 to 5 lines at one port: the share whose evidence reaches x is at most
    10^-x, as a calibrated test's is. Lines drawn one by one, the test is near its
    level (4% of the accounts reach 1 in 10, a discrete count being conservative), not
    far below it: it is not blunt."""
    rng = np.random.default_rng(5)
    usual = np.array([0.62, 0.2, 0.09, 0.045, 0.025, 0.012, 0.005, 0.002, 0.001])
    entries = rng.integers(1, 101, size=20_000)
    reached = np.array([(rng.multinomial(n, usual) > 0).sum() for n in entries])
    lines = np.array([rng.integers(1, 6, size=n).sum() for n in entries])
    evidence = port_spread_evidence(lines, reached, usual)
    for x in (1.0, 2.0, 3.0):
        assert (evidence >= x).mean() <= 10**-x, x
    one_by_one = np.array([(rng.multinomial(n, usual) > 0).sum() for n in lines])
    share = (port_spread_evidence(lines, one_by_one, usual) >= 1).mean()
    assert 0.02 < share <= 0.1, share


def test_a_small_account_over_many_ports_is_judged_on_the_scale_of_a_big_one():
    """Sixty importers of 50 lines each, most at their first port (30, 10, 5, 3, 2 over
    five ports; three of them 43 at one and one line at each of seven others): the
    industry's usual concentration. S files 24 lines over 8 ports, 3 at each: its
    effective ports (8) are 2.5 times the industry's 95th percentile (3.18), which alone
    gives 0.68, but 8 ports for 24 lines at the usual concentration have a chance of 1
    in 170,000 (evidence 5.23): 0.99. B files 2,400 lines over 7 ports at about the
    usual shares: its volume explains its ports, nothing. T files 24 lines over 3 ports:
    nothing."""
    ports = ["2704", "1001", "4601", "3001", "5301", "2709", "1703", "3901"]
    rows = []

    def file(importer: str, counts: list[int]) -> None:
        rows.extend(_row(f"{importer}-{p}-{i}", importer, "8471300100", ports[p], 5.0)
                    for p, count in enumerate(counts) for i in range(count))
    for k in range(57):
        file(f"I{k}", [30, 10, 5, 3, 2])
    for k in range(3):
        file(f"W{k}", [43, 1, 1, 1, 1, 1, 1, 1])
    file("S", [3] * 8)
    file("B", [1400, 500, 250, 150, 80, 15, 5])
    file("T", [16, 6, 2])
    table = pa.Table.from_pylist(rows)
    config = ceecore.ScoringConfig.from_doc({"weights": {n: 0.8 if n == "port_spread" else 0.0
                                                         for n in indicators.INDICATORS}})
    scored = {r["importer_id"]: r for r in ceecore.score(table, ceecore.fit(table, config=config)).lines.to_pylist()}
    usual = [(57 * c / 50 + 3 * w / 50 + b / 2400) / 61  # B is big too
             for c, w, b in zip([30, 10, 5, 3, 2, 0, 0, 0], [43, 1, 1, 1, 1, 1, 1, 1], [1400, 500, 250, 150, 80, 15, 5, 0])]
    s, b, t = scored["S"], scored["B"], scored["T"]
    assert s["effective_ports"] == pytest.approx(8.0)
    assert s["port_spread_evidence"] == pytest.approx(round(_spread_evidence(24, 8, usual) * 1000) / 1000, rel=1e-6)
    assert s["port_spread_evidence"] == pytest.approx(5.23, abs=1e-6)
    assert _ramp(8.0 / 3.178, 1.5, 3.0) == pytest.approx(0.68, abs=0.01)
    assert s["port_spread"] == pytest.approx(_ramp(5.23, 2.0, 4.0), rel=1e-6)  # 0.99
    assert b["port_spread_evidence"] < 1 and t["port_spread_evidence"] < 1
    assert b["port_spread"] == 0 and t["port_spread"] == 0


@settings(max_examples=25, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 11)), min_size=1, max_size=150),
       cut=st.integers(0, 150))
def test_port_spreads_merge_exactly_and_match_the_reference(data, cut):
    """Random lines of six importers over twelve ports: fitted whole or in two parts
    merged, the port spreads (effective ports, evidence) are the same, and every line's
    port_spread is the plain reference's."""
    rows = [_row(f"E{i}", f"I{importer}", "8471300100", f"{1001 + 100 * port}", 5.0)
            for i, (importer, port) in enumerate(data)]
    table = pa.Table.from_pylist(rows)
    config = ceecore.ScoringConfig.from_doc({
        "weights": {n: 0.8 if n == "port_spread" else 0.0 for n in indicators.INDICATORS},
        "thresholds": {"account_min_lines": 10, "port_spread_evidence_from": 0.5, "port_spread_evidence_to": 2.0}})
    whole = ceecore.fit(table, config=config)
    parts = [ceecore.fit(part, config=config) for part in (table.slice(0, cut), table.slice(cut)) if part.num_rows]
    merged = ceecore.merge_models(parts)
    assert [a.tolist() for a in whole.lookups["effective_ports"].items()] == [
        a.tolist() for a in merged.lookups["effective_ports"].items()]
    assert whole.lookups["ports_norm"] == merged.lookups["ports_norm"]
    reference = Reference(rows, config)
    scored = ceecore.score(table, whole).lines.to_pylist()
    for row, line in zip(scored, reference.lines):
        assert row["port_spread"] == pytest.approx(reference.strengths(line)["port_spread"], abs=1e-6)
