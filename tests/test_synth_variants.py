"""The generator's variant scheme shapes (``SynthConfig(variants=True)``, issue 12).

Each family's variant shape holds as described, every family is labelled, a seed gives
the same lines, the default shapes are untouched, and detection tuned on the default
shapes is measured (not judged) on the variants.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import ceecore
from ceecore import synth
from ceecore_cli.main import cli

LINES = 400_000
HUBS = {"VN", "TH", "MY", "ID", "KH"}  # the hub column of data/synth/origins.csv
ITEM = ["importer_id", "hts_code"]  # an account's product: the generator's catalogue item
SCALE = float(os.environ.get("CEECORE_HYPOTHESIS_SCALE", "1"))  # 10: a longer hunt for bugs


@pytest.fixture(scope="module")
def world() -> synth.Synthesizer:
    return synth.Synthesizer(synth.SynthConfig(lines=LINES, seed=11, variants=True))


@pytest.fixture(scope="module")
def table(world: synth.Synthesizer) -> pa.Table:
    return world.table()


@pytest.fixture(scope="module")
def df(table: pa.Table) -> pl.DataFrame:
    return pl.from_arrow(table)


@pytest.fixture(scope="module")
def accounts(world: synth.Synthesizer) -> pl.DataFrame:
    return pl.from_arrow(world.accounts())


def _labelled_share(df: pl.DataFrame, scheme: str, keys: list[str]) -> pl.DataFrame:
    """Per group of ``keys``: its lines and the share of them labelled ``scheme``."""
    return df.group_by(keys).agg((pl.col("scheme") == scheme).fill_null(False).mean().alias("share"), pl.len().alias("lines"))


def _digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue()).hexdigest()


# ------------------------------------------------------------------ labels, determinism, the default


def test_every_family_is_labelled_at_its_rate(df):
    counts = dict(df["scheme"].drop_nulls().value_counts().iter_rows())
    assert set(counts) == set(synth.SCHEMES)
    for name, rate in synth.DEFAULT_SCHEME_RATES.items():
        assert counts[name] / LINES == pytest.approx(rate, rel=0.35), (name, counts[name])
    # Item schemes lose duty on (nearly) every line; account schemes also cover duty-free goods.
    item_schemes = ["undervaluation", "transshipment", "misclassification", "preference_misuse"]
    lost = df.filter(pl.col("scheme").is_in(item_schemes)).group_by("scheme").agg((pl.col("duty_lost") > 0).mean())
    assert lost["duty_lost"].min() > 0.95


def test_same_seed_same_lines_whatever_the_batching():
    config = synth.SynthConfig(lines=60_000, seed=5, variants=True, dirty=3)
    want = synth.Synthesizer(config).table(threads=1)
    world = synth.Synthesizer(config)
    assert pa.Table.from_batches(list(world.batches(7_001, threads=3))).equals(want)
    assert not synth.generate_table(config, seed=6).equals(want)


@settings(max_examples=int(15 * SCALE), deadline=None)
@given(lines=st.integers(1, 5_000), seed=st.integers(0, 2**63 - 1), batch_rows=st.integers(1, 6_000),
       days=st.integers(1, 400), rate=st.sampled_from([0.0, 0.001, 0.05]))
def test_any_small_world_gives_the_same_labelled_lines_in_any_batching(lines, seed, batch_rows, days, rate):
    config = synth.SynthConfig(lines=lines, seed=seed, end=dt.date(2025, 1, 1) + dt.timedelta(days=days - 1),
                               scheme_rates=dict.fromkeys(synth.SCHEMES, rate), variants=True)
    want = synth.generate_table(config)
    assert want.num_rows == lines
    labels = want.column("scheme").drop_null().to_pylist()
    assert set(labels) <= set(synth.SCHEMES) and (rate > 0 or not labels)
    assert pa.Table.from_batches(list(synth.generate(config, batch_rows=batch_rows))).equals(want)


def test_the_variants_change_the_schemes_not_the_products():
    default = synth.Synthesizer(synth.SynthConfig(lines=60_000, seed=5))
    variant = synth.Synthesizer(synth.SynthConfig(lines=60_000, seed=5, variants=True))
    assert np.array_equal(default.product_hts, variant.product_hts)  # drawn before any scheme
    assert not default.table().equals(variant.table())


def test_default_lines_are_as_before_the_variants():
    """Lines of seed 3 as the generator made them before the variants existed (digest
    from that code): with ``variants`` off nothing may change. A deliberate change of the
    default lines must update this digest, and say so."""
    table = synth.generate_table(lines=30_000, seed=3)
    assert _digest(table) == "6b6ff7e987727990ed97f078114b1f032b0e8ee508999936d562de0a48547827"
    assert table.equals(synth.generate_table(lines=30_000, seed=3, variants=False))


# ------------------------------------------------------------------ the shapes


def test_undervaluation_is_shallow_on_many_lines_and_deep_on_a_few(df):
    lines = df.filter(pl.col("quantity").is_not_null()).with_columns(
        (pl.col("entered_value") / pl.col("quantity")).log().alias("log_uv"))
    norm = lines.filter(pl.col("scheme").is_null()).group_by("hts_code", "country_of_origin").agg(
        pl.col("log_uv").median().alias("norm"), pl.len().alias("n")).filter(pl.col("n") >= 20)
    items = (lines.filter(pl.col("scheme") == "undervaluation").join(norm, on=["hts_code", "country_of_origin"])
             .group_by(ITEM).agg((pl.col("log_uv") - pl.col("norm")).median().exp().alias("ratio"), pl.len().alias("under"))
             .join(_labelled_share(df, "undervaluation", ITEM), on=ITEM))
    shallow = items.filter(pl.col("share") == 1)  # every line of the item
    deep = items.filter(pl.col("share") < 1)
    assert shallow["under"].sum() > 1000 and deep["under"].sum() > 1000  # about half the lines each
    assert shallow["lines"].min() >= 10 and shallow["lines"].median() >= 25  # sustained over many lines
    assert shallow["ratio"].quantile(0.1) > 0.65 and shallow["ratio"].quantile(0.9) < 0.9  # 70-85% of the norm
    assert deep["share"].quantile(0.9) < 0.4  # a few of the item's lines...
    assert deep["ratio"].median() < 0.6  # ... deeply


def test_transshipment_keeps_the_old_origin_going_in_part(df, world):
    moved = df.filter(pl.col("scheme") == "transshipment")
    assert moved["country_of_origin"].is_in(list(HUBS)).all() and (moved["duty_lost"] > 0).all()
    switch = moved.group_by(ITEM).agg(pl.col("entry_date").min().alias("switch"),
                                      pl.col("manufacturer_id").unique().alias("new_mids"))
    item = df.join(switch, on=ITEM)
    after = item.filter(pl.col("entry_date") >= pl.col("switch")).group_by(ITEM).agg(
        (pl.col("country_of_origin") == "CN").mean().alias("old_after"))
    assert len(after) > 50
    assert (after["old_after"] > 0).mean() > 0.8  # the old origin goes on after the switch...
    assert 0.15 < after["old_after"].median() < 0.65  # ... for a share of the lines
    before = item.filter(pl.col("entry_date") < pl.col("switch")).group_by(ITEM).agg(
        pl.col("manufacturer_id").unique().alias("old_mids"), (pl.col("country_of_origin") == "CN").mean().alias("cn"))
    assert before["cn"].mean() > 0.9
    kept = [bool(set(a) & set(b)) for a, b in switch.join(before, on=ITEM).select("new_mids", "old_mids").iter_rows()]
    assert 0.1 < np.mean(kept) < 0.55  # often, not always, a new manufacturer
    # The new origin is the product's most common hub origin where it has one, so not rare nationally.
    chosen = np.flatnonzero(world.item_scheme == synth._TRANSSHIPMENT)
    hub = world._national_hub(world.item_product[chosen])
    national = hub >= 0
    assert national.mean() > 0.3
    assert np.array_equal(world.item_new_country[chosen][national], hub[national])


def test_misclassification_at_one_port_and_only_in_part_there(df):
    heading = pl.col("hts_code").str.slice(0, 4).alias("heading")
    keys = ["importer_id", "manufacturer_id", "heading"]
    wrong = df.filter(pl.col("scheme") == "misclassification").with_columns(heading).group_by(keys).agg(
        pl.col("port_code").n_unique().alias("ports"), pl.col("port_code").first().alias("port"),
        pl.col("hts_code").first().alias("declared"), pl.col("duty_rate").max().alias("declared_rate"))
    assert len(wrong) > 50 and (wrong["ports"] == 1).all()  # one port only
    right = df.filter(pl.col("scheme").is_null()).with_columns(heading).join(wrong, on=keys).filter(
        pl.col("hts_code") != pl.col("declared"))
    goods = right.group_by(keys).agg((pl.col("port_code") == pl.col("port")).any().alias("there"),
                                     (pl.col("duty_rate") >= pl.col("declared_rate")).all().alias("dearer"))
    assert len(goods) > 0.9 * len(wrong)
    assert goods["there"].mean() > 0.9  # at that port, a share is declared under the dearer number
    assert goods["dearer"].mean() > 0.9


def test_preference_claimed_on_part_of_the_lines(df):
    misuse = df.filter(pl.col("scheme") == "preference_misuse")
    assert len(misuse) > 500 and (misuse["duty_paid"] == 0).all() and (misuse["duty_lost"] > 0).all()
    items = misuse.select(*ITEM, "country_of_origin").unique()
    claimed = df.join(items, on=[*ITEM, "country_of_origin"]).group_by(ITEM).agg(pl.col("spi").is_not_null().mean())
    assert claimed["spi"].max() < 1 and 0.25 < claimed["spi"].median() < 0.65


def test_port_shopping_moves_a_share_of_the_entries_to_a_few_other_ports(df, accounts):
    shoppers = df.join(accounts.filter(pl.col("scheme") == "port_shopping").select("importer_id"), on="importer_id")
    per = shoppers.group_by("importer_id").agg(
        pl.col("port_code").filter(pl.col("scheme").is_not_null()).unique().alias("shopped"),
        pl.col("port_code").filter(pl.col("scheme").is_null()).unique().alias("usual"),
        pl.col("scheme").is_not_null().mean().alias("share"), pl.col("port_code").n_unique().alias("ports"))
    assert len(per) >= 10
    assert all(not set(a) & set(b) for a, b in per.select("shopped", "usual").iter_rows())  # other ports
    assert 0.3 < per["share"].median() < 0.7  # a share of the lines
    assert per["ports"].max() <= 14 and per["ports"].median() < 12  # fewer ports than the default 12-30


def test_new_importers_file_few_lines_of_great_value(df, accounts):
    new = df.filter(pl.col("scheme") == "new_importer")
    per_account = new.group_by("importer_id").len()
    assert len(per_account) >= 20 and per_account["len"].median() <= 40  # few lines each
    started = accounts.filter(pl.col("scheme") == "new_importer")["active_from"]
    assert (started >= dt.date(2025, 8, 1)).all()
    usual = df.filter(pl.col("scheme").is_null()).group_by("hts_code").agg(
        pl.col("entered_value").median().alias("value"), pl.col("quantity").median().alias("quantity"),
        pl.len().alias("n")).filter(pl.col("n") >= 20)
    ratio = new.join(usual, on="hts_code").select(pl.col("entered_value") / pl.col("value"),
                                                  pl.col("quantity") / pl.col("quantity_right"))
    assert len(ratio) > 300
    assert ratio["entered_value"].median() > 4 and ratio["quantity"].median() > 8  # far above a usual line


# ------------------------------------------------------------------ the CLI


def test_cli_generate_and_demo_take_variants(tmp_path):
    runner = CliRunner()
    for variants in ((), ("--variants",)):
        out = tmp_path / f"{len(variants)}.parquet"
        result = runner.invoke(cli, ["generate", "-n", "20000", "--seed", "4", "-o", str(out), "-q", *variants])
        assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "0.parquet").equals(synth.generate_table(lines=20_000, seed=4))
    assert pq.read_table(tmp_path / "1.parquet").equals(synth.generate_table(lines=20_000, seed=4, variants=True))
    result = runner.invoke(cli, ["demo", "-n", "20000", "--seed", "4", "-o", str(tmp_path / "demo"), "--variants"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "demo" / "input.parquet").equals(pq.read_table(tmp_path / "1.parquet"))


# ------------------------------------------------------------------ detection on shapes it was not tuned on


def test_detection_tuned_on_default_shapes_measured_on_the_variants():
    """The scoring configuration is the default one, tuned on the default shapes; it is
    measured here on variant lines, never tuned on them. Three measures, printed:

    - as the issue asks: ``fit`` on default-shape lines of seed 21, ``score`` variant
      lines of seed 22. A seed builds its own world (other HTS numbers, importers), so
      the model's baselines hardly meet the lines it scores: this measures transfer
      across worlds more than the variants;
    - ``fit`` and ``score`` on the variant lines of seed 22 (as ``run`` does, no labels):
      the same world, the variant shapes;
    - the same on the default lines of seed 22: the reference the variants fall from.
    """
    n = 300_000
    history = synth.generate_table(lines=n, seed=21)
    variant = synth.generate_table(lines=n, seed=22, variants=True)
    default = synth.generate_table(lines=n, seed=22)
    runs = {
        "fit default seed 21, score variants seed 22": (ceecore.fit(history), variant),
        "fit+score variants seed 22": (ceecore.fit(variant), variant),
        "fit+score default seed 22 (reference)": (ceecore.fit(default), default),
    }
    for name, (model, lines) in runs.items():
        scored = ceecore.score(lines, model).lines
        assert scored is not None and scored.num_rows == n
        recall, precision, tied = synth.detection_measures(scored, lines)
        print(f"\n{name}: precision@5% {precision:.3f}, tied in top 1% {tied:.3f}")
        for family, value in recall.items():
            print(f"  recall@5% {family:<18} {value:.3f}")
        assert set(recall) == set(synth.SCHEMES)
        assert all(0 <= v <= 1 for v in recall.values()) and 0 <= precision <= 1 and 0 <= tied <= 1
        if name.endswith("(reference)"):  # the bar on ties, reached on the default shapes (was 0.71)
            assert tied <= 0.05
        if name == "fit+score variants seed 22":  # the bars these shapes reach (were .085 and .214)
            assert precision >= 0.20 and tied <= 0.05
            for family in synth.SCHEMES:  # every family at the bar (undervaluation was .287, then .674
                assert recall[family] >= 0.70, family  # before session 19's norms; README, Detection, session 19)
        if name.endswith("(reference)"):  # the default shapes keep what the variants' work added (was .849)
            assert recall["undervaluation"] >= 0.85
