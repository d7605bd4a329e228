"""Trends per Center: the series against a plain reference, the state's exactness under any
batching and merge order, its validation on load, the tests' calibration, and the bar:
an injected trade diversion is flagged, data without one flags nothing."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ceecore
from ceecore import synth
from ceecore.accounts import AccountBook, Intake
from ceecore.centers import CenterMap
from ceecore._fdr import benjamini_hochberg
from ceecore.trends import PIECE_TALLIES, SERIES_SCHEMA, SHIFTS_SCHEMA, WHOLE_TALLIES, Trends, _step_test, read_pieces
from ceecore_cli.main import cli


@pytest.fixture(scope="module")
def small() -> pa.Table:
    return synth.generate_table(synth.SynthConfig(lines=20_000, seed=7))


def _state(batches: list[pa.Table], centers: CenterMap | None = None) -> Trends:
    state = Trends(centers)
    book = AccountBook(centers, threads=1)
    for batch in batches:
        for b in batch.to_batches():
            state.update(book.parse(b, columns=Trends.columns))
    return state


def _reference(table: pa.Table, by_account: bool = False) -> pl.DataFrame:
    """The Center-wide monthly series computed plainly with polars (the line's Center from
    the map); ``by_account``: the distinct (Center, month, account) of the lines instead."""
    cmap = CenterMap.default()
    df = pl.from_arrow(table.select(["entry_number", "importer_id", "hts_code", "entry_date", "entered_value",
                                     "duty_paid", "inspected", "violation"]))
    pairs = df.select("hts_code", "entry_date").unique()
    centers = [cmap.center_of(h, d) for h, d in zip(pairs["hts_code"], pairs["entry_date"])]
    df = df.join(pairs.with_columns(pl.Series("center", centers, pl.String)), on=["hts_code", "entry_date"])
    df = df.filter(pl.col("center").is_not_null()).with_columns(pl.col("entry_date").dt.truncate("1mo").alias("month"))
    if by_account:
        return df.select("center", "month", "importer_id").unique()
    return (df.group_by("center", "month")
            .agg(pl.len().alias("lines"), pl.col("entry_number").n_unique().alias("entries"),
                 pl.col("entered_value").sum().alias("entered_value"), pl.col("duty_paid").sum().alias("duty"),
                 pl.col("importer_id").n_unique().alias("active_accounts"),
                 pl.col("inspected").mean().alias("inspection_rate"),
                 pl.col("violation").drop_nulls().mean().alias("violation_rate"))
            .sort("center", "month"))


def test_series_match_a_plain_reference(small):
    series, _ = _state([small]).result()
    assert series.schema == SERIES_SCHEMA
    got = pl.from_arrow(series).filter(pl.col("key") == "").pivot("measure", index=["center", "month"],
                                                                  values="value").sort("center", "month")
    want = _reference(small)
    assert got.height == want.height
    for name in ("lines", "entries", "active_accounts"):
        assert got[name].cast(pl.Int64).to_list() == want[name].to_list(), name
    for name in ("entered_value", "duty", "inspection_rate", "violation_rate"):
        np.testing.assert_allclose(got[name].to_numpy(), want[name].to_numpy(), rtol=1e-9, err_msg=name)
    rate = got["duty"].to_numpy() / got["entered_value"].to_numpy() * 100
    np.testing.assert_allclose(got["duty_rate"].to_numpy(), rate, rtol=1e-9)


def test_new_accounts_are_first_months_or_unknown_to_the_model(small):
    series, _ = _state([small]).result()
    got = pl.from_arrow(series).filter(pl.col("measure") == "new_accounts").select("center", "month", "value")
    lines = _reference(small, by_account=True)
    first = lines.group_by("importer_id").agg(pl.col("month").min().alias("first"))
    want = (lines.join(first, on="importer_id").filter(pl.col("month") == pl.col("first"))
            .group_by("center", "month").agg(pl.len().alias("new")))
    joined = got.join(want, on=["center", "month"], how="left").fill_null(0)
    assert joined["value"].cast(pl.Int64).to_list() == joined["new"].to_list() and want["new"].sum() > 0
    model = ceecore.fit(small, threads=1)
    state = Trends.for_model(model)
    book = AccountBook(threads=1)
    for b in small.to_batches():
        state.update(book.parse(b, columns=Trends.columns))
    series, _ = state.result()
    assert pl.from_arrow(series).filter(pl.col("measure") == "new_accounts")["value"].sum() == 0


def test_origin_shares_add_up_per_product_and_month(small):
    series, _ = _state([small]).result()
    shares = pl.from_arrow(series).filter(pl.col("measure") == "origin_share")
    assert shares.height > 0
    per = shares.with_columns(pl.col("key").str.slice(0, 6).alias("hts6")).group_by("center", "hts6", "month") \
        .agg(pl.col("value").sum(), pl.col("lines").n_unique().alias("denominators"))
    assert per["value"].max() <= 1 + 1e-12 and per["denominators"].max() == 1


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, 19_999), max_size=6), parts=st.integers(1, 4), order=st.randoms())
def test_same_state_whatever_the_batching_and_merge_order(small, cuts, parts, order):
    whole = _state([small]).to_arrow()
    edges = sorted({0, *cuts, small.num_rows})
    pieces = [small.slice(a, b - a) for a, b in itertools.pairwise(edges)]
    states = [_state(pieces[k::parts]) for k in range(parts)]
    order.shuffle(states)
    merged = states[0]
    for other in states[1:]:
        merged.merge(other)
    assert merged.to_arrow().equals(whole)
    assert Trends.from_arrow(whole).to_arrow().equals(whole)


def test_state_round_trips_and_refuses_tampering(small, tmp_path):
    state = _state([small.slice(0, 5000)])
    table = state.to_arrow()
    assert [t.equals(u) for t, u in zip(Trends.from_arrow(table).result(), state.result())] == [True, True]
    state.write(tmp_path / "t.parquet", tmp_path / "s.arrow")
    series, shifts = state.result()
    assert pq.read_table(tmp_path / "t.parquet").replace_schema_metadata(None).equals(series)
    assert pa.ipc.open_file(tmp_path / "s.arrow").read_all().equals(shifts)
    with pytest.raises(ValueError, match="not a ceecore trends state"):
        Trends.from_arrow(table.replace_schema_metadata({}))
    values = table.column("value").to_numpy().copy()
    values[0] = -5  # a month's lines below 1
    with pytest.raises(ValueError, match="no lines could give"):
        Trends.from_arrow(table.set_column(3, "value", pa.array(values)))
    keys = table.column("key").to_numpy().copy()
    keys[1] = keys[0]
    with pytest.raises(ValueError, match="distinct and sorted|same keys"):
        Trends.from_arrow(table.set_column(2, "key", pa.array(keys, pa.uint64())))
    with pytest.raises(ValueError, match="columns"):
        Trends.from_arrow(table.drop_columns(["text"]))


@pytest.fixture(scope="module")
def shifted() -> pa.Table:
    """A small world with a trade diversion (a shift is flagged in it)."""
    return synth.Synthesizer(synth.SynthConfig(lines=60_000, seed=1, trend=True)).table()


def _of_centers(intake: Intake, centers: list[int]) -> Intake:
    """The lines of an intake whose Center index is among ``centers``."""
    rows = np.flatnonzero(np.isin(intake.parsed["center"], centers))
    return Intake(intake.canonical, intake.codes, {k: v[rows] for k, v in intake.parsed.items()})


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_read_in_pieces_gives_the_whole_states_tables(shifted, data):
    """A state kept in pieces (the monthly totals and spans of every line; origins,
    entries and accounts by disjoint sets of Centers), any grouping, batching and order
    of the pieces, with or without a history's accounts: the whole state's tables."""
    importers = np.unique(AccountBook(threads=1).parse(shifted.to_batches()[0]).parsed["importer_hash"])
    known = importers[::3] if data.draw(st.booleans(), label="history") else None
    expected = Trends(known=known)
    book = AccountBook(threads=1)
    n_centers = len(CenterMap.default().codes)
    groups = data.draw(st.lists(st.integers(0, 3), min_size=n_centers, max_size=n_centers), label="groups")
    cuts = data.draw(st.lists(st.integers(1, shifted.num_rows - 1), max_size=5), label="cuts")
    whole, pieces = Trends(known=known), {g: Trends(known=known) for g in set(groups)}
    for a, b in itertools.pairwise([0, *sorted(set(cuts)), shifted.num_rows]):
        intake = book.parse(shifted.slice(a, b - a).combine_chunks().to_batches()[0], columns=Trends.columns)
        expected.update(intake)
        whole.update(intake, WHOLE_TALLIES)
        for g, piece in pieces.items():
            piece.update(_of_centers(intake, [c for c, k in enumerate(groups) if k == g]), PIECE_TALLIES)
    order = data.draw(st.permutations(sorted(pieces)), label="order")
    series, shifts = read_pieces(whole, (pieces.pop(g) for g in order))
    want = expected.result()
    assert want[1].num_rows > 0
    assert series.equals(want[0]) and shifts.equals(want[1])


def test_period_views_read_in_pieces_write_the_same_set(shifted, tmp_path):
    """A run's views (kept by Center in a scratch directory while scoring, from several
    threads, read a Center per thread at a time) write the tables the views folded whole
    write, and leave no file behind; asked for their state, they give the same as folded whole."""
    from concurrent.futures import ThreadPoolExecutor

    from ceecore.pipeline import PeriodViews

    book, centers = AccountBook(threads=1), CenterMap.default()
    intakes = [book.parse(b, columns=Trends.columns) for b in shifted.to_batches(max_chunksize=7_000)]
    for name in ("kept", "sent", "folded_out", "kept_out"):
        (tmp_path / name).mkdir()
    folded, kept, sent = (PeriodViews.of(centers, scratch=tmp_path / name if name else None, threads=threads)
                          for name, threads in ((None, 1), ("kept", 3), ("sent", 1)))
    with ThreadPoolExecutor(3) as pool:
        for views in (folded, kept, sent):
            list(pool.map(views.update, intakes))
    assert ".views-0.arrow" in {p.name for p in (tmp_path / "kept").iterdir()}
    folded.write(tmp_path / "folded_out")
    kept.write(tmp_path / "kept_out")
    for name in ("trends.parquet", "shifts.parquet", "uniformity.parquet"):
        assert pq.read_table(tmp_path / "kept_out" / name).equals(pq.read_table(tmp_path / "folded_out" / name))
    assert [t.equals(u) for t, u in zip(sent.to_arrow(), folded.to_arrow())] == [True, True]
    assert not list((tmp_path / "kept").iterdir()) and not list((tmp_path / "sent").iterdir())


def test_period_views_that_fail_keep_the_centers_not_read(shifted, tmp_path, monkeypatch):
    """A Center whose read fails stops the views' write with that error; the Centers not
    started yet stay kept (their files are still the views' to remove), none is lost."""
    from ceecore.pipeline import PeriodViews

    book = AccountBook(threads=1)
    views = PeriodViews.of(CenterMap.default(), scratch=tmp_path, threads=1)
    for batch in shifted.to_batches(max_chunksize=7_000):
        views.update(book.parse(batch, columns=Trends.columns))
    centers = set(views._kept)
    assert len(centers) > 2
    largest = max(centers, key=lambda c: views._kept[c].lines)

    def fail(self, kept, view):
        raise RuntimeError("boom")

    monkeypatch.setattr(PeriodViews, "_read", fail)
    (tmp_path / "out").mkdir()
    with pytest.raises(RuntimeError, match="boom"):
        views.write(tmp_path / "out")
    assert set(views._kept) == centers - {largest}  # (the largest is read first; one thread)


def test_period_views_read_at_most_twice_the_largest_center_at_once():
    """The views read Centers side by side, the most lines first, never more lines in
    flight than twice the largest Center's (their memory), and every Center once."""
    import threading
    import time
    from types import SimpleNamespace

    from ceecore.pipeline import PeriodViews

    sizes = {0: 100, 1: 90, 2: 80, 3: 30, 4: 20, 5: 10, 6: 5}
    views = PeriodViews.of(CenterMap.default(), threads=4)
    views._kept.update({c: SimpleNamespace(lines=n) for c, n in sizes.items()})
    lock, flight, most, started, done = threading.Lock(), [], [0], [], []

    def work(kept):
        with lock:
            flight.append(kept.lines)
            started.append(kept.lines)
            most[0] = max(most[0], sum(flight))
        time.sleep(0.02)
        with lock:
            flight.remove(kept.lines)
        return kept.lines

    views._side_by_side(work, done.append)
    assert sorted(done) == sorted(sizes.values()) and not views._kept
    assert started[0] == 100 and most[0] <= 200
    assert most[0] > 100  # (side by side: more than the largest alone at some point)


def test_state_refuses_tallies_that_disagree(small):
    """Tallies that no lines could give together: an account's month outside its span, a
    span of an account with no lines in the month tally's months, no span at all."""
    table = _state([small.slice(0, 3000)]).to_arrow()
    rows = table.to_pylist()

    def altered(change) -> pa.Table:
        return pa.Table.from_pylist([change(dict(r)) for r in rows], table.schema).replace_schema_metadata(
            table.schema.metadata)

    def later_span(r: dict) -> dict:  # every account's first month a year later
        if r["tally"] == "span":
            r["value"] += 12
        return r

    with pytest.raises(ValueError, match="span"):
        Trends.from_arrow(altered(later_span))
    first = next(i for i, r in enumerate(rows) if r["tally"] == "span" and r["field"] == 0 and r["value"] > 0)

    def earlier_first(r: dict) -> dict:  # one account's first month a month before its first line
        if r == rows[first]:
            r["value"] -= 1
        return r

    with pytest.raises(ValueError, match="first and last month"):
        Trends.from_arrow(altered(earlier_first))
    no_span = table.filter(pa.compute.not_equal(table.column("tally"), "span"))
    with pytest.raises(ValueError, match="span"):
        Trends.from_arrow(no_span)
    no_months = table.filter(pa.compute.not_equal(table.column("tally"), "month"))
    with pytest.raises(ValueError, match="month tally"):
        Trends.from_arrow(no_months)


def test_bh_matches_the_definition():
    rng = np.random.default_rng(1)
    p = rng.random(50) ** 3
    p[[3, 9]] = np.nan
    q = benjamini_hochberg(p)
    tested = ~np.isnan(p)
    k = tested.sum()
    for i in np.flatnonzero(tested):
        want = min(1.0, min(p[j] * k / (np.sum(p[tested] <= p[j])) for j in np.flatnonzero(tested) if p[j] >= p[i]))
        assert q[i] == pytest.approx(want)
    assert np.isnan(q[~tested]).all()


def test_step_test_holds_its_level_under_overdispersed_noise_and_finds_a_step():
    """Shares with month-to-month noise well beyond the binomial: at most 5% of the
    series without a step get p < 0.05; a step of 20 points is found at its month."""
    rng = np.random.default_rng(3)
    n, m = 4000, 12
    w = rng.integers(200, 2000, size=(n, m)).astype(float)
    p = np.clip(0.3 + rng.normal(0, 0.03, size=(n, m)), 0, 1)
    y = rng.binomial(w.astype(np.int64), p) / w
    step = _step_test(y, w, np.ones((n, m), bool), 0.05, relative=False, up=True, down=True, share=True)
    null_rate = float(np.mean(step.p < 0.05))
    print(f"\nstep test: share of null series with p < 0.05: {null_rate:.4f}")
    assert null_rate <= 0.05
    y[:, 7:] += 0.2
    found = _step_test(y, w, np.ones((n, m), bool), 0.05, relative=False, up=True, down=True, share=True)
    print(f"step of 20 points: found (p < 0.05) in {np.mean(found.p < 0.05):.4f}, "
          f"at its month in {np.mean(found.split == 7):.4f}")
    assert np.mean(found.p < 0.05) > 0.98 and np.mean(found.split == 7) > 0.95


def test_the_injected_diversion_is_flagged():
    for seed in (1, 2):
        world = synth.Synthesizer(synth.SynthConfig(lines=200_000, seed=seed, trend=True))
        truth = world.trend
        shifts = ceecore.trends(world.table(), threads=2).shifts
        assert shifts.schema == SHIFTS_SCHEMA
        rows = [r for r in shifts.to_pylist()
                if r["measure"] == "origin_share" and r["key"] == f"{truth.hts6} {truth.to}"]
        print(f"\nseed {seed}: {truth}; {shifts.num_rows} flagged; " + (rows[0]["finding"] if rows else "NOT FOUND"))
        assert rows and rows[0]["after"] > rows[0]["before"] and rows[0]["q_value"] < 0.01
        month = rows[0]["month"]
        assert abs((month.year - truth.start.year) * 12 + month.month - truth.start.month) <= 1
        assert any(r["key"] == f"{truth.hts6} {truth.origin}" and r["after"] < r["before"] for r in shifts.to_pylist())


def test_nothing_is_flagged_without_a_shift():
    """Without a trend nor transshipment (which moves real origins), nothing is flagged;
    with the default schemes, every flag is an HTS6 whose origin a transshipment moved."""
    for seed in (11, 12, 13):
        table = synth.generate_table(synth.SynthConfig(lines=200_000, seed=seed, scheme_rates={"transshipment": 0}))
        shifts = ceecore.trends(table, threads=2).shifts
        print(f"\nseed {seed}, no shift injected: {shifts.num_rows} flagged {shifts.column('finding').to_pylist()}")
        assert shifts.num_rows == 0
    table = synth.generate_table(synth.SynthConfig(lines=1_000_000, seed=3))
    shifts = ceecore.trends(table, threads=2).shifts
    moved = pl.from_arrow(table.select(["hts_code", "scheme"])).filter(pl.col("scheme") == "transshipment") \
        ["hts_code"].str.slice(0, 6).unique().to_list()
    print(f"default schemes: {shifts.num_rows} flagged, all in HTS6 a transshipment moved: "
          f"{[r['key'] for r in shifts.to_pylist()]}")
    assert shifts.num_rows > 0 and all(r["key"].split()[0] in moved for r in shifts.to_pylist())


def test_cli_writes_the_set_and_refuses_bad_input(tmp_path, small):
    source = tmp_path / "in.parquet"
    pq.write_table(small, source)
    out = tmp_path / "out" / "trends.parquet"
    result = CliRunner().invoke(cli, ["trends", str(source), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    series, shifts = pq.read_table(out), pq.read_table(tmp_path / "out" / "shifts.parquet")
    assert series.schema.remove_metadata() == SERIES_SCHEMA and shifts.schema.remove_metadata() == SHIFTS_SCHEMA
    assert series.num_rows > 0
    pq.write_table(small.drop_columns(["hts_code"]), tmp_path / "bad.parquet")
    bad = CliRunner().invoke(cli, ["trends", str(tmp_path / "bad.parquet"), "-o", str(tmp_path / "t.parquet")])
    assert bad.exit_code == 2 and "hts_code" in bad.output and "Traceback" not in bad.output
    clash = CliRunner().invoke(cli, ["trends", str(source), "-o", str(out), "--shifts", str(out)])
    assert clash.exit_code == 2


def test_generate_trend_option(tmp_path):
    result = CliRunner().invoke(cli, ["generate", "-n", "5000", "--trend", "-o", str(tmp_path / "t.parquet")])
    assert result.exit_code == 0 and "trend: from 2025-07-01" in result.output
    world = synth.Synthesizer(synth.SynthConfig(lines=5000, trend=True))
    assert world.trend.start == dt.date(2025, 7, 1) and world.trend.origin != world.trend.to


def test_threads_and_missing_outcomes(small):
    one = ceecore.trends(small, threads=1)
    two = ceecore.trends(small, threads=2)
    assert one.state.to_arrow().equals(two.state.to_arrow()) and one.series.equals(two.series)
    bare = ceecore.trends(small.drop_columns(["inspected", "violation", "revenue_recovered"]), threads=1).series
    measures = set(bare.column("measure").to_pylist())
    assert "inspection_rate" not in measures and "violation_rate" not in measures and "entries" in measures
    assert ceecore.trends(small.slice(0, 0), threads=1).series.num_rows == 0


def test_a_runs_replayed_lines_give_the_same_state(small, tmp_path):
    """The hook in ``run``: the lines its second pass replays (parsed once, kept in the
    spill) fold to the same state as the input's batches."""
    from ceecore.scoring import scoring_input_types
    from ceecore.spill import LineSpill

    spill = LineSpill(tmp_path / "lines.arrow", scoring_input_types(None))
    book, direct = AccountBook(threads=1), Trends()
    for b in small.to_batches(max_chunksize=7000):
        intake = book.parse(b, columns=Trends.columns)
        direct.update(intake)
        spill.write(spill.batch(intake))
    spill.close()
    replayed = Trends()
    for intake in spill.intakes():
        replayed.update(intake)
    assert replayed.to_arrow().equals(direct.to_arrow())


def test_volume_steps_and_a_falling_duty_rate_are_flagged():
    """From July: one of the biggest accounts files twice its lines; a Center's lines
    (chapters 28-40) double; 40% of Apparel's lines (chapters 50-67) pay no duty. Each
    is flagged at July, and nothing else is."""
    table = synth.generate_table(synth.SynthConfig(lines=200_000, seed=21, scheme_rates={"transshipment": 0}))
    df = pl.from_arrow(table)
    july = dt.date(2025, 7, 1)
    chapter = pl.col("hts_code").str.slice(0, 2).cast(pl.Int32)
    account = df.group_by("importer_id").len().sort("len", descending=True)["importer_id"][3]
    again = df.filter((pl.col("importer_id") == account) & (pl.col("entry_date") >= july))
    chemicals = df.filter(chapter.is_between(28, 40) & (pl.col("entry_date") >= july))
    free = chapter.is_between(50, 67) & (pl.col("entry_date") >= july) & \
        pl.Series(np.random.default_rng(0).random(df.height) < 0.4)
    df = df.with_columns(pl.when(free).then(0.0).otherwise(pl.col("duty_paid")).alias("duty_paid"))
    shifts = ceecore.trends(pl.concat([df, again.with_columns(pl.col("entry_number") + "A"),
                                       chemicals.with_columns(pl.col("entry_number") + "C")]).to_arrow(),
                            threads=2).shifts
    print("\n" + "\n".join(f"q={r['q_value']:.2g} {r['finding']}" for r in shifts.to_pylist()))
    code = {c.name.split(",")[0]: c.code for c in CenterMap.default().centers}
    found = {(r["center"], r["measure"], r["key"]) for r in shifts.to_pylist()}
    assert found == {(code["Pharmaceuticals"], "lines", ""), (code["Pharmaceuticals"], "lines", account),
                     (code["Apparel"], "duty_rate", "")}
    assert set(shifts.column("month").to_pylist()) == {july}


def _plain_step(y: np.ndarray, w: np.ndarray, valid: np.ndarray, margin: float, relative: bool, up: bool,
                down: bool, share: bool) -> tuple[int, float]:
    """The two-period test of one series, written out plainly (the reference)."""
    from scipy.stats import t as student_t

    months = [j for j in range(len(y)) if valid[j]]
    n = len(months)
    pooled = sum(w[j] * y[j] for j in months) / sum(w[j] for j in months)
    best, best_p, tried = -1, 1.0, 0
    for k in range(3, n - 2):
        sides = (months[:k], months[k:])
        wb, wa = (sum(w[j] for j in side) for side in sides)
        b, a = (sum(w[j] * y[j] for j in side) / sum(w[j] for j in side) for side in sides)
        rss = sum(w[j] * (y[j] - b) ** 2 for j in sides[0]) + sum(w[j] * (y[j] - a) ** 2 for j in sides[1])
        sigma2 = max(rss / (n - 2), pooled * (1 - pooled) if share else 0.0)
        for d, on in ((1, up), (-1, down)):
            if not on:
                continue
            tried += 1
            lam = 1 + d * margin if relative else 1.0
            contrast = (a - lam * b if d == 1 else lam * b - a) - (0.0 if relative else margin)
            p = student_t.sf(contrast / np.sqrt(sigma2 * (1 / wa + lam * lam / wb)), n - 2)
            if p < best_p:
                best, best_p = months[k], p
    return best, min(1.0, tried * best_p)


@pytest.mark.parametrize("relative, up, down, share", [(False, True, True, True), (True, True, False, True),
                                                       (True, False, True, False)])
def test_step_test_matches_the_plain_reference(relative, up, down, share):
    rng = np.random.default_rng(5)
    n, m = 40, 12
    w = rng.integers(50, 500, size=(n, m)).astype(float)
    y = np.clip(0.2 + rng.normal(0, 0.05, size=(n, m)) + np.where(np.arange(m) >= 6, rng.normal(0, 0.1, (n, 1)), 0),
                0, 1)
    valid = rng.random((n, m)) > 0.1
    margin = 0.1 if relative else 0.05
    step = _step_test(y, w, valid, margin, relative=relative, up=up, down=down, share=share)
    for i in range(n):
        split, p = _plain_step(y[i], w[i], valid[i], margin, relative, up, down, share)
        assert step.split[i] == split and step.p[i] == pytest.approx(p, rel=1e-7, abs=1e-12), i


# ---------------------------------------------------------------- the compiled fold against a plain one


def test_month_index_as_numpys_calendar():
    """The fold's month of a day is numpy's datetime64 month, over four centuries either side."""
    from ceecore._kernels._views import months

    days = np.r_[np.arange(-150_000, 150_000, 7), np.arange(-800, 800), [-719468, -719469, 0, 59, 60, 11016, 11017]]
    want = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) + 840
    assert np.array_equal(months(days.astype(np.int64)), want)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_the_trends_fold_against_plain_keys(data):
    """Each tally the compiled fold fills, against the same keys and values made with
    numpy and added to a tally plainly, for any subset of the tallies."""
    from ceecore._kernels._tally import Tally, combine
    from ceecore._kernels._views import fold_trends
    from ceecore.trends import TALLIES

    n = data.draw(st.integers(0, 300), label="lines")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    center = rng.integers(-1, 10, n)
    day = rng.integers(19_000, 21_000, n)
    hts6, country = rng.integers(0, 1 << 20, n), rng.integers(0, 1000, n)
    importer = rng.integers(0, 6, n).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # (a few, of any bits)
    entry = rng.integers(0, 40, n).astype(np.uint64) * np.uint64(0x632BE59BD9B4E019)
    value, duty = rng.integers(0, 1 << 40, n), rng.integers(0, 1 << 30, n)
    keep = np.flatnonzero(center >= 0)
    outcomes = [rng.integers(0, 2, len(keep)) for _ in range(4)]
    wanted = data.draw(st.sets(st.sampled_from(list(TALLIES))), label="tallies")

    got = {name: Tally(*folds) for name, folds in TALLIES.items()}
    fold_trends(*[got[name] if name in wanted else None for name in TALLIES], keep, center, day, hts6, country,
                importer, entry, value, duty, outcomes if "month" in wanted else [])

    cm = ((center[keep] + 1) << 12) | (day[keep].astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) + 840)
    one, who = np.ones(len(keep), np.int64), importer[keep]
    packed = (cm << 30) | (hts6[keep] << 10) | country[keep]
    plain = {"month": (cm.astype(np.uint64), np.column_stack([one, value[keep], duty[keep], *outcomes])),
             "origin": (combine(3, who, packed), np.column_stack([one, packed, who.view(np.int64)])),
             "entry": (combine(1, entry[keep], cm), cm.reshape(-1, 1)),
             "account": (combine(2, who, cm), np.column_stack([one, cm, who.view(np.int64)])),
             "span": (who, np.column_stack([cm & 4095] * 2))}
    for name, folds in TALLIES.items():
        want = Tally(*folds)
        if name in wanted:
            want.add(plain[name][0], np.ascontiguousarray(plain[name][1], np.int64).reshape(len(keep), len(folds)))
        (gk, gv), (wk, wv) = got[name].items(), want.items()
        assert np.array_equal(gk, wk) and np.array_equal(gv, wv), name


def test_the_trends_fold_refuses_rows_out_of_bounds():
    """The compiled fold reads lines by index and packs their fields into keys: a row, a
    Center, a day, an HTS6 number or an origin out of range is refused before any fold."""
    from ceecore._kernels._tally import Tally
    from ceecore._kernels._views import fold_trends

    z, u = np.zeros(3, np.int64), np.zeros(3, np.uint64)
    tallies = [Tally(*["sum"] * 7), Tally("sum", "max", "max"), Tally("max"), Tally("sum", "max", "max"),
               Tally("min", "max")]
    outcomes = [np.zeros(1, np.int64)] * 4
    for rows, center in (([3], z), ([-1], z), ([0], np.array([-1, 0, 0]))):
        with pytest.raises(ValueError):
            fold_trends(*tallies, np.array(rows, np.int64), center, z, z, z, u, u, z, z, outcomes)

    def line(value: int) -> np.ndarray:
        return np.array([value, 0, 0], np.int64)

    before_1900, far, after_2240 = line(-30_000), line(2**62), line(100_000)  # (months 0 to 4095: 1900 to 2241)
    for day, hts6, country in ((before_1900, z, z), (far, z, z), (after_2240, z, z), (z, line(-1), z),
                               (z, line(1 << 20), z), (z, z, line(-1)), (z, z, line(1024))):
        with pytest.raises(ValueError, match="past what the keys hold"):
            fold_trends(*tallies, np.zeros(1, np.int64), z, day, hts6, country, u, u, z, z, outcomes)
    assert all(len(tally) == 0 for tally in tallies)
    with pytest.raises(ValueError):  # (a tally of another width than its fields)
        fold_trends(None, Tally("sum"), None, None, None, np.zeros(1, np.int64), z, z, z, z, u, u, z, z, [])
    fold_trends(*tallies, np.zeros(1, np.int64), z, z, z, z, u, u, z, z, outcomes)
    assert len(tallies[0]) == 1
