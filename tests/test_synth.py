"""The generator (ceecore.synth): its statistical promises, formats, determinism, dirt."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
from importlib import resources

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import ceecore
from ceecore import synth
from ceecore.centers import CenterMap
from ceecore.schema import CANONICAL, arrow_schema
from ceecore_cli.main import cli

LINES = 400_000
SIGMA = 0.35
SCALE = float(os.environ.get("CEECORE_HYPOTHESIS_SCALE", "1"))  # 10: a longer hunt for bugs


def _table(name: str) -> list[dict[str, str]]:
    text = (resources.files("ceecore") / "data" / "synth" / name).read_text()
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


ORIGINS = {r["country"]: r for r in _table("origins.csv")}
PORTS = {r["port"] for r in _table("ports.csv")}
HUBS = {c for c, r in ORIGINS.items() if r["hub"]}


@pytest.fixture(scope="module")
def world() -> synth.Synthesizer:
    return synth.Synthesizer(synth.SynthConfig(lines=LINES, seed=11, unit_value_sigma=SIGMA))


@pytest.fixture(scope="module")
def table(world: synth.Synthesizer) -> pa.Table:
    return world.table()


@pytest.fixture(scope="module")
def df(table: pa.Table) -> pl.DataFrame:
    return pl.from_arrow(table)


@pytest.fixture(scope="module")
def consolidated(table: pa.Table) -> ceecore.Consolidation:
    return ceecore.run_consolidation(table)


@pytest.fixture(scope="module")
def accounts(consolidated: ceecore.Consolidation, world: synth.Synthesizer) -> pl.DataFrame:
    return pl.from_arrow(consolidated.accounts).join(pl.from_arrow(world.accounts()), on="importer_id")


# ------------------------------------------------------------------ the data contract


def test_schema_is_canonical_plus_truth(table):
    assert table.schema.equals(arrow_schema(CANONICAL).append(pa.field("scheme", pa.string()))
                               .append(pa.field("duty_lost", pa.float64())))
    assert table.num_rows == LINES
    required = [c for c in CANONICAL if c not in ("quantity", "spi", "violation", "revenue_recovered")]
    assert all(table[c].null_count == 0 for c in required)


def test_passes_the_contract_with_zero_rejects(consolidated, world):
    assert consolidated.stats.rejected == 0
    assert consolidated.stats.accepted == LINES
    assert consolidated.accounts.num_rows <= world.n_accounts


@pytest.mark.parametrize("fmt", ["lines.parquet", "lines.csv", "lines.csv.gz", "lines.arrow", "dataset"])
def test_every_output_format_reads_back_to_the_same_accounts(tmp_path, fmt):
    config = synth.SynthConfig(lines=30_000, seed=4, dirty=5)
    written = synth.write(tmp_path / fmt, config, batch_rows=4_000, file_rows=10_000)
    assert written.lines == 30_005 and written.dirty == 5
    assert sum(written.schemes.values()) == pl.from_arrow(synth.generate_table(config))["scheme"].is_not_null().sum()
    if fmt == "dataset":  # files of whole batches: 3 of 4,000 rows make 12,000 >= 10,000 rows a file
        assert sorted(p.name for p in (tmp_path / fmt).iterdir()) == [f"part-0000{i}.parquet" for i in range(3)]
        assert [pq.ParquetFile(p).metadata.num_rows for p in sorted((tmp_path / fmt).iterdir())] == [12_000, 12_000, 6_005]
    assert sorted(p.name for p in tmp_path.iterdir()) == [fmt]  # no temporary files left
    run = ceecore.run_consolidation(tmp_path / fmt)
    want = ceecore.run_consolidation(synth.generate_table(config))
    assert run.stats.rejected == want.stats.rejected == 5
    assert run.accounts.equals(want.accounts)
    if "csv" not in fmt:  # (Parquet takes the small vocabularies' columns coded: they read back as text)
        back = pads.dataset(tmp_path / fmt, format="ipc" if fmt.endswith(".arrow") else "parquet").to_table()
        assert back.equals(synth.generate_table(config))


def test_dirty_rows_are_rejected_for_their_known_reason_and_nothing_else_changes():
    n, dirty = 50_000, 2 * len(synth.DIRTY_REASONS) + 3
    clean = synth.generate_table(lines=n, seed=8)
    messy = synth.generate_table(lines=n, seed=8, dirty=dirty)
    assert messy.num_rows == n + dirty
    run = ceecore.run_consolidation(messy)
    want = {reason: dirty // len(synth.DIRTY_REASONS) + (i < dirty % len(synth.DIRTY_REASONS))
            for i, reason in enumerate(synth.DIRTY_REASONS)}
    assert run.stats.by_reason == want
    assert run.stats.accepted == n
    assert run.accounts.equals(ceecore.consolidate(clean))  # the good lines are the clean data's


def test_a_failed_write_leaves_no_output(tmp_path, monkeypatch):
    def broken(self, *args):
        yield from []
        raise RuntimeError("disk gone")

    monkeypatch.setattr(synth.Synthesizer, "tables", broken)
    for name in ("lines.parquet", "lines.csv", "dataset"):
        with pytest.raises(RuntimeError):
            synth.write(tmp_path / name, lines=1_000)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_byte_identical_files(tmp_path):
    digests = set()
    for i in range(2):
        synth.write(tmp_path / f"{i}.parquet", lines=40_000, seed=3, batch_rows=10_000)
        digests.add(hashlib.sha256((tmp_path / f"{i}.parquet").read_bytes()).hexdigest())
    assert len(digests) == 1
    synth.write(tmp_path / "other.parquet", lines=40_000, seed=4, batch_rows=10_000)
    assert hashlib.sha256((tmp_path / "other.parquet").read_bytes()).hexdigest() not in digests


def test_batch_size_and_threads_do_not_change_the_lines():
    world = synth.Synthesizer(synth.SynthConfig(lines=150_000, seed=5, dirty=7))
    want = world.table(threads=1)
    assert want.num_rows == 150_007
    for batch_rows, threads in ((1_000, 2), (65_537, 1), (1 << 20, 3)):
        batches = list(world.batches(batch_rows, threads))
        assert all(b.num_rows == batch_rows for b in batches[:-1])
        assert pa.Table.from_batches(batches).equals(want)


@settings(max_examples=int(15 * SCALE), deadline=None)
@given(lines=st.integers(1, 3_000), seed=st.integers(0, 2**63 - 1), batch_rows=st.integers(1, 4_000),
       days=st.integers(1, 400), dirty=st.integers(0, 20))
def test_any_batching_gives_the_same_lines(lines, seed, batch_rows, days, dirty):
    config = synth.SynthConfig(lines=lines, seed=seed, end=dt.date(2025, 1, 1) + dt.timedelta(days=days - 1),
                               dirty=dirty)
    want = synth.generate_table(config)
    assert want.num_rows == lines + dirty
    got = pa.Table.from_batches(list(synth.generate(config, batch_rows=batch_rows)))
    assert got.equals(want)


# ------------------------------------------------------------------ statistical promises


def test_scheme_rates_within_tolerance(df):
    shares = df.group_by("scheme").len().drop_nulls()
    got = dict(zip(shares["scheme"], shares["len"] / LINES))
    for scheme, rate in synth.DEFAULT_SCHEME_RATES.items():
        assert got[scheme] == pytest.approx(rate, rel=0.25), scheme


def test_scheme_rates_follow_the_configuration():
    rates = {"undervaluation": 0.03, "transshipment": 0.0, "misclassification": 0.01,
             "preference_misuse": 0.0, "port_shopping": 0.006, "new_importer": 0.004}
    df = pl.from_arrow(synth.generate_table(lines=300_000, seed=2, scheme_rates=rates))
    got = dict(zip(*df.group_by("scheme").len().drop_nulls().to_dict().values()))
    for scheme, rate in rates.items():
        assert got.get(scheme, 0) / 300_000 == pytest.approx(rate, rel=0.25, abs=1e-9), scheme
    none = synth.generate_table(lines=50_000, seed=2, scheme_rates=dict.fromkeys(synth.SCHEMES, 0.0))
    assert none["scheme"].null_count == 50_000
    assert pl.from_arrow(none)["duty_lost"].sum() == 0


def test_accounts_mostly_in_their_home_center(accounts):
    home = accounts["center"] == accounts["home_center"]
    assert home.mean() > 0.95
    assert accounts.filter(home)["lines"].sum() / accounts["lines"].sum() > 0.97
    # ... but not all of them trivially: some import a good share outside their industry.
    assert (accounts["center_share"] < 0.8).mean() > 0.05


def test_account_sizes_are_heavy_tailed(accounts):
    lines = accounts["lines"].sort(descending=True)
    assert lines[: len(lines) // 100].sum() / lines.sum() > 0.25  # the top 1% file over a quarter
    assert lines.median() < lines.mean() / 2


def test_unit_value_spread_per_hts_and_origin_is_as_set(df):
    for sigma, data in ((SIGMA, df), (0.8, pl.from_arrow(synth.generate_table(lines=200_000, seed=3, unit_value_sigma=0.8)))):
        clean = data.filter(pl.col("scheme").is_null() & pl.col("quantity").is_not_null() & (pl.col("entered_value") >= 200)
                            & (pl.col("quantity") >= 5))
        spread = (clean.with_columns((pl.col("entered_value") / pl.col("quantity")).log().alias("log_uv"))
                  .group_by("hts_code", "country_of_origin").agg(pl.col("log_uv").std(), pl.len())
                  .filter(pl.col("len") >= 30))
        assert len(spread) > 100
        assert spread["log_uv"].median() == pytest.approx(sigma, rel=0.1)


def test_seasonality_and_weekdays(df):
    month = df.group_by(pl.col("entry_date").dt.month().alias("m")).len()
    by_month = dict(zip(month["m"], month["len"]))
    assert by_month[10] > 1.3 * by_month[4]  # the pre-holiday peak over the spring trough
    weekday = df.group_by(pl.col("entry_date").dt.weekday().alias("d")).len()
    by_day = dict(zip(weekday["d"], weekday["len"]))
    assert by_day[7] < 0.2 * by_day[3]


def test_inspections_target_risk_and_outcomes_are_known_only_when_inspected(df):
    inspected = df.filter(pl.col("inspected"))
    assert len(inspected) / LINES == pytest.approx(0.05, rel=0.1)
    assert inspected["violation"].mean() > 1.5 * df["scheme"].is_not_null().mean()
    assert (inspected["violation"] == inspected["scheme"].is_not_null()).all()
    assert (inspected["revenue_recovered"] == inspected["duty_lost"]).all()
    rest = df.filter(~pl.col("inspected"))
    assert rest["violation"].null_count() == len(rest) and rest["revenue_recovered"].null_count() == len(rest)


# ------------------------------------------------------------------ formats


def _luhn_ok(number: str) -> bool:
    """Plain check of an entry number's mod-10 check digit (letters: A, J, S -> 1, ...)."""
    values = [(ord(ch) - 65) % 9 + 1 if ch.isalpha() else int(ch) for ch in number]
    total = 0
    for i, v in enumerate(reversed(values)):
        if i % 2 == 1:
            v = 2 * v
            v = v - 9 if v > 9 else v
        total += v
    return total % 10 == 0


def test_entry_and_party_formats(df):
    entries = df["entry_number"].unique()
    assert entries.str.contains(r"^[A-Z][A-Z0-9]{2}\d{8}$").all()
    assert all(_luhn_ok(e) for e in entries.sample(5_000, seed=1))
    assert (df["filer_code"] == df["entry_number"].str.slice(0, 3)).all()
    importers = df["importer_id"].unique()
    irs = importers.str.contains(r"^\d{2}-\d{9}$")
    cbp = importers.str.contains(r"^\d{6}-\d{5}$")
    assert (irs | cbp).all() and irs.mean() > 0.7 and cbp.sum() > 0
    assert df["manufacturer_id"].str.contains(r"^[A-Z]{8}\d{1,4}[A-Z]{3}$").all()
    assert (df["manufacturer_id"].str.slice(0, 2) == df["country_of_origin"]).all()
    assert df["port_code"].is_in(list(PORTS)).all()
    assert df["country_of_origin"].is_in(list(ORIGINS)).all()
    assert set(df["entry_type"].unique()) == {"01", "03", "11"}
    lines = df.group_by("entry_number").agg(pl.len(), pl.col("line_number").max().alias("last"),
                                            pl.col("entry_type").first(), pl.col("port_code").n_unique(),
                                            pl.col("entry_date").n_unique().alias("dates"))
    assert (lines["len"] == lines["last"]).all() and (lines["port_code"] == 1).all() and (lines["dates"] == 1).all()
    assert (lines.filter(pl.col("entry_type") == "11")["len"] == 1).all()
    assert lines["len"].max() > 10


def test_hts_numbers_belong_to_the_center_map(df, world):
    centers = CenterMap.default()
    hts = df["hts_code"].unique()
    assert hts.str.contains(r"^\d{10}$").all()
    assert all(centers.center_of(h, dt.date(2025, 6, 1)) is not None for h in hts)
    assert set(hts.str.slice(0, 4)) >= {"8511", "9018", "7415"}  # heading exceptions appear too


def test_values_quantities_and_duty(df):
    assert (df["quantity"].is_null() == (df["quantity_unit"] == "X")).all()
    assert df["quantity_unit"].is_in(["NO", "KG", "DOZ", "PRS", "M2", "L", "X"]).all()
    assert (df["entered_value"] >= 1).all() and (df["entered_value"] == df["entered_value"].round()).all()
    expected = (df["entered_value"] * df["duty_rate"] / 100).round(2)
    assert ((df["duty_paid"] - expected).abs() < 0.011).all()  # rounding ties may go either way
    assert (df["duty_rate"] == 0).mean() > 0.3 and (df["duty_rate"] >= 15).mean() > 0.02
    claims = df.filter(pl.col("spi").is_not_null() & pl.col("scheme").ne_missing("preference_misuse"))
    assert len(claims) > 1_000
    assert all(ORIGINS[c]["program"] == s for c, s in claims.select("country_of_origin", "spi").unique().iter_rows())
    assert (claims["duty_rate"] == 0).all()


# ------------------------------------------------------------------ each scheme looks like itself


def _log_uv(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("quantity").is_not_null()).with_columns(
        (pl.col("entered_value") / pl.col("quantity")).log().alias("log_uv"))


def test_undervaluation_declares_a_fraction_of_the_norm(df):
    lines = _log_uv(df)
    norm = lines.filter(pl.col("scheme").is_null()).group_by("hts_code", "country_of_origin").agg(
        pl.col("log_uv").median().alias("norm"), pl.len().alias("n")).filter(pl.col("n") >= 20)
    under = lines.filter(pl.col("scheme") == "undervaluation").join(norm, on=["hts_code", "country_of_origin"])
    ratio = (under["log_uv"] - under["norm"]).exp()
    assert len(under) > 500
    assert 0.25 < ratio.median() < 0.6
    assert (df.filter(pl.col("scheme") == "undervaluation")["duty_lost"] > 0).mean() > 0.9


def test_transshipment_switches_origin_and_manufacturer_after_a_date(df):
    moved = df.filter(pl.col("scheme") == "transshipment")
    assert moved["country_of_origin"].is_in(list(HUBS)).all()
    assert (moved["duty_lost"] > 0).all()
    keys = moved.select("importer_id", "hts_code", pl.col("entry_date").min().over("importer_id", "hts_code")
                        .alias("switch"), "manufacturer_id").unique(["importer_id", "hts_code"])
    before = df.join(keys.drop("manufacturer_id"), on=["importer_id", "hts_code"]).filter(
        pl.col("entry_date") < pl.col("switch"))
    assert len(before) > 100
    assert (before["country_of_origin"] == "CN").mean() > 0.9  # other items of the product may come from elsewhere
    old_mfrs = set(before["manufacturer_id"])
    assert not old_mfrs & set(moved["manufacturer_id"])


def test_misclassification_differs_across_ports_for_identical_goods(df):
    wrong = df.filter(pl.col("scheme") == "misclassification").with_columns(pl.col("hts_code").str.slice(0, 4).alias("heading"))
    right = df.filter(pl.col("scheme").is_null()).with_columns(pl.col("hts_code").str.slice(0, 4).alias("heading"))
    keys = ["importer_id", "manufacturer_id", "heading"]
    pairs = (wrong.group_by(keys).agg(pl.col("hts_code").first().alias("declared"), pl.col("port_code").unique().alias("wrong_ports"),
                                      pl.col("duty_rate").max().alias("declared_rate"))
             .join(right.group_by(keys + ["hts_code"]).agg(pl.col("port_code").unique().alias("right_ports"),
                                                           pl.col("duty_rate").max().alias("right_rate")), on=keys))
    pairs = pairs.filter(pl.col("hts_code") != pl.col("declared"))
    groups = wrong.select(keys).unique().height
    assert pairs.select(keys).unique().height > 0.8 * groups  # the same goods also appear correctly declared
    disjoint = [not set(a) & set(b) for a, b in zip(pairs["wrong_ports"], pairs["right_ports"])]
    assert np.mean(disjoint) > 0.8  # ... at other ports
    assert (pairs["declared_rate"] <= pairs["right_rate"]).mean() > 0.9  # ... and under a lower duty


def test_preference_misuse_claims_from_ineligible_origins(df):
    misuse = df.filter(pl.col("scheme") == "preference_misuse")
    assert len(misuse) > 500 and misuse["spi"].null_count() == 0
    assert all(ORIGINS[c]["program"] != s for c, s in misuse.select("country_of_origin", "spi").unique().iter_rows())
    assert (misuse["duty_paid"] == 0).all() and (misuse["duty_lost"] > 0).all()


def test_port_shopping_spreads_goods_over_many_ports(df, accounts):
    ports = df.group_by("importer_id").agg(pl.col("port_code").n_unique().alias("n_ports"), pl.len())
    shopping = ports.join(accounts.filter(pl.col("scheme") == "port_shopping").select("importer_id"), on="importer_id")
    assert len(shopping) > 0
    assert set(df.filter(pl.col("scheme") == "port_shopping")["importer_id"]) <= set(shopping["importer_id"])
    assert shopping["n_ports"].median() >= 8
    others = ports.join(accounts.filter(pl.col("scheme").is_null()).select("importer_id"), on="importer_id")
    assert others.filter(pl.col("len") >= 40)["n_ports"].median() <= 4


def test_new_importers_start_late_with_a_large_volume(df, accounts):
    new = accounts.filter(pl.col("scheme") == "new_importer")
    assert len(new) > 0
    assert (new["first_entry_date"] >= dt.date(2025, 8, 1)).all()
    assert new["importer_id"].str.contains(r"^25\d{4}-\d{5}$").all()  # numbers assigned this year
    per_day = accounts.with_columns(
        (pl.col("lines") / ((pl.col("last_entry_date") - pl.col("first_entry_date")).dt.total_days() + 1)).alias("rate"))
    regular = per_day.filter(pl.col("scheme").is_null())["rate"]
    assert per_day.filter(pl.col("scheme") == "new_importer")["rate"].min() > regular.quantile(0.95)
    assert set(df.filter(pl.col("scheme") == "new_importer")["importer_id"]) == set(new["importer_id"])


# ------------------------------------------------------------------ configuration and CLI


@pytest.mark.parametrize("params, message", [
    ({"scheme_rates": {"smuggling": 0.1}}, "unknown scheme smuggling"),
    ({"scheme_rates": {"undervaluation": -0.1}}, "scheme rate"),
    ({"lines": -1}, "lines"),
    ({"accounts": 0}, "accounts"),
    ({"start": dt.date(2025, 2, 1), "end": dt.date(2025, 1, 1)}, "end"),
    ({"inspect_share": 1.5}, "inspect_share"),
    ({"lines": 0, "dirty": 3}, "dirty"),
])
def test_bad_configuration_is_refused_clearly(params, message):
    with pytest.raises(ValueError, match=message):
        synth.SynthConfig(**params)


def test_cli_generate_then_consolidate(tmp_path):
    runner = CliRunner()
    out = tmp_path / "lines.parquet"
    result = runner.invoke(cli, ["generate", "-n", "20000", "--seed", "9", "--dirty", "16", "-o", str(out),
                                 "--truth", str(tmp_path / "truth.parquet"), "--scheme-rate", "undervaluation=0.05"])
    assert result.exit_code == 0, result.output
    assert "generated 20,016 lines" in result.output and "undervaluation" in result.output
    assert pq.read_table(out).equals(synth.generate_table(lines=20_000, seed=9, dirty=16,
                                                          scheme_rates={"undervaluation": 0.05}))
    assert pq.read_table(tmp_path / "truth.parquet").num_rows > 0
    result = runner.invoke(cli, ["consolidate", str(out), "-o", str(tmp_path / "acc.parquet")])
    assert result.exit_code == 0 and "16 rejected" in result.output


@pytest.mark.parametrize("args, message", [
    (["--scheme-rate", "undervaluation"], "expected SCHEME=RATE"),
    (["--scheme-rate", "smuggling=0.1"], "unknown scheme"),
    (["--start", "2025-05-01", "--end", "2025-01-01"], "end must not be before start"),
])
def test_cli_generate_bad_options(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["generate", "-n", "100", "-o", str(tmp_path / "x.parquet"), *args])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "x.parquet").exists()


def test_a_dataset_output_never_replaces_a_directory_of_other_files(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="other than a generated dataset"):
        synth.write(target, lines=1_000)
    assert (target / "notes.txt").read_text() == "keep me"
    synth.write(tmp_path / "ds", lines=1_000, batch_rows=300)
    synth.write(tmp_path / "ds", lines=2_000, batch_rows=300)  # a dataset replaces a dataset
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in (tmp_path / "ds").iterdir()) == 2_000
