"""Scoring a new period against a model fitted on the history (issue 13, part 1).

``ceecore score NEW --model MODEL -o DIR`` writes the set ``run`` writes (but the
model): fitted on nine months, it finds the schemes injected into the last three; it
scores a period as ``run`` on the history and the period together would; scoring the
history itself gives ``run``'s set; any batching or thread count gives the same set; and
a failed job leaves the previous set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from ceecore_cli.main import cli
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ceecore
from ceecore import synth
from ceecore.pipeline import SET_OUTPUTS
from tests.processes import cli_env

LINES = 300_000
CUT = dt.date(2025, 10, 1)  # nine months of history, three new
SCALE = float(os.environ.get("CEECORE_HYPOTHESIS_SCALE", "1"))


def split(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The history (before :data:`CUT`) and the new period."""
    new = pc.greater_equal(table.column("entry_date"), pa.scalar(CUT))
    return table.filter(pc.invert(new)), table.filter(new)


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, pa.Table, pa.Table]:
    """20,000 lines as history and new period files, and their tables."""
    d = tmp_path_factory.mktemp("small")
    history, new = split(synth.Synthesizer(synth.SynthConfig(lines=20_000, seed=7)).table())
    pq.write_table(history, d / "history.parquet")
    pq.write_table(new, d / "new.parquet")
    return d, history, new


@pytest.mark.parametrize("variants", [False, True], ids=["default", "variants"])
def test_fitted_on_nine_months_score_finds_the_schemes_of_the_last_three(tmp_path, variants):
    history, new = split(synth.Synthesizer(synth.SynthConfig(lines=LINES, seed=31, variants=variants)).table())
    pq.write_table(history, tmp_path / "history.parquet")
    pq.write_table(new.drop_columns(["scheme", "duty_lost"]), tmp_path / "new.parquet")  # (no labels to read)
    runner = CliRunner()
    fitted = runner.invoke(cli, ["fit", str(tmp_path / "history.parquet"), "-o", str(tmp_path / "model.arrow"), "-q"])
    assert fitted.exit_code == 0, fitted.output
    out = tmp_path / "q4"
    scored = runner.invoke(cli, ["score", str(tmp_path / "new.parquet"), "--model", str(tmp_path / "model.arrow"),
                                 "-o", str(out), "-q"])
    assert scored.exit_code == 0, scored.output
    assert sorted(p.name for p in out.iterdir()) == sorted(SET_OUTPUTS)  # the model is not rewritten

    lines = pq.read_table(out / "lines.parquet")
    assert lines.num_rows == new.num_rows
    recall, precision, tied = synth.detection_measures(lines, new)
    print(f"\n{'variants' if variants else 'default'} shapes, {new.num_rows:,} new lines: recall@5% "
          + ", ".join(f"{k} {v:.3f}" for k, v in recall.items()) + f"; precision {precision:.3f}, tied {tied:.3f}")
    assert set(recall) == set(pc.unique(new.column("scheme").drop_null()).to_pylist())
    # Against the model alone (-o FILE.parquet: the lines, as before) an account the
    # history never saw is not new, and the period's own evidence is not there.
    alone = runner.invoke(cli, ["score", str(tmp_path / "new.parquet"), "--model", str(tmp_path / "model.arrow"),
                                "-o", str(tmp_path / "alone.parquet"), "-q"])
    assert alone.exit_code == 0, alone.output
    before = synth.scheme_recall(pq.read_table(tmp_path / "alone.parquet"), new)
    print("against the model alone: " + ", ".join(f"{k} {v:.3f}" for k, v in before.items()))
    assert recall["new_importer"] > before["new_importer"] + 0.1
    assert all(value >= 0.60 for value in recall.values()), recall

    accounts = pq.read_table(out / "accounts.parquet")
    assert accounts.num_rows == len(pc.unique(new.column("importer_id")))  # consolidated over the period
    assert {"score", "reasons", "rank_in_center", "facilitation", "facilitation_reasons"} <= set(accounts.column_names)
    worklist = pq.read_table(out / "worklist.parquet")
    assert set(worklist.column("kind").to_pylist()) == {"account", "line"}
    assert set(pc.unique(worklist.column("center")).to_pylist()) == set(pc.unique(accounts.column("center")).to_pylist())
    assert "exploration" in worklist.column("pick").to_pylist()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["path"] == str(tmp_path / "model.arrow")
    assert (summary["model"]["first_date"], summary["model"]["last_date"]) == ("2025-01-01", "2025-09-30")
    assert summary["period"] == {"first_date": "2025-10-01", "last_date": "2025-12-31"}
    assert summary["lines_scored"] == new.num_rows and summary["accounts"] == accounts.num_rows


def test_a_period_is_scored_as_run_on_the_history_and_the_period_would_score_it(tmp_path, small):
    d, history, _ = small
    ceecore.run([str(d / "history.parquet"), str(d / "new.parquet")], tmp_path / "run")
    whole = pq.read_table(tmp_path / "run" / "lines.parquet").slice(history.num_rows)  # (in input order)
    ceecore.score_period(str(d / "new.parquet"), ceecore.fit(str(d / "history.parquet")), tmp_path / "period")
    period = pq.read_table(tmp_path / "period" / "lines.parquet")
    assert period.equals(whole)


def test_scoring_the_history_itself_gives_the_run_set(tmp_path, small):
    d, _, _ = small
    ceecore.run(str(d / "history.parquet"), tmp_path / "run")
    summary = ceecore.score_period(str(d / "history.parquet"), tmp_path / "run" / "model.arrow", tmp_path / "again")
    for name in ("lines.parquet", "accounts.parquet", "worklist.parquet", "rejects.parquet"):
        assert pq.read_table(tmp_path / "again" / name).equals(pq.read_table(tmp_path / "run" / name)), name
    ran = json.loads((tmp_path / "run" / "summary.json").read_text())
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    for doc in (ran, again):
        doc.pop("seconds")
        doc.pop("outputs")
    assert again.pop("model").pop("path") == str(tmp_path / "run" / "model.arrow")
    ran.pop("model")
    assert again == ran
    assert summary.outputs == {name: str(tmp_path / "again" / name) for name in SET_OUTPUTS}


@settings(max_examples=int(4 * SCALE), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(700, 9_000), threads=st.integers(1, 3))
def test_any_batching_or_thread_count_gives_the_same_set(tmp_path_factory, small, rows, threads):
    _, history, new = small
    model = ceecore.fit(history)
    runs = []
    for chunk, workers in ((1 << 16, 1), (rows, threads)):
        out = tmp_path_factory.mktemp("set") / "out"
        ceecore.score_period(pa.Table.from_batches(new.to_batches(max_chunksize=chunk)), model, out, threads=workers)
        runs.append({name: pq.read_table(out / name) for name in SET_OUTPUTS if name.endswith(".parquet")})
    for name, table in runs[0].items():
        assert runs[1][name].equals(table), name


def test_a_failed_score_leaves_the_previous_set(tmp_path, small, monkeypatch):
    d, _, _ = small
    out = tmp_path / "out"
    ceecore.score_period(str(d / "new.parquet"), ceecore.fit(str(d / "history.parquet")), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = ceecore.fit(str(d / "new.parquet"))
    monkeypatch.setattr(ceecore.pipeline, "account_scores", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        ceecore.score_period(str(d / "history.parquet"), other, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert hidden(tmp_path) == []  # (nor any staging)


def test_score_stopped_by_a_signal_leaves_the_old_or_the_new_set(tmp_path):
    """SIGTERM (as Ctrl-C) or SIGKILL at any moment of ``ceecore score -o DIR``: the
    directory holds the whole previous set or the whole new one."""
    history, new = split(synth.Synthesizer(synth.SynthConfig(lines=150_000, seed=3)).table())
    ceecore.fit(history).save(tmp_path / "model.arrow")
    pq.write_table(new, tmp_path / "new.parquet")
    pq.write_table(new.slice(0, 2_000), tmp_path / "small.parquet")
    out = tmp_path / "jobs" / "out"

    def score(source: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "ceecore", "score", str(tmp_path / source), "--model",
                                 str(tmp_path / "model.arrow"), "-o", str(out), "-q"], env=cli_env(),
                                stderr=subprocess.PIPE)

    def state() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in out.iterdir() if p.name != "summary.json"}

    assert score("new.parquet").wait(120) == 0
    big = state()
    started = time.perf_counter()
    assert score("small.parquet").wait(120) == 0
    small, took = state(), time.perf_counter() - started
    rng = random.Random(4)
    for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGTERM):
        before = state()
        job = score("new.parquet" if before == small else "small.parquet")
        time.sleep(rng.uniform(0.3, 1.0) * took)
        job.send_signal(sig)
        _, err = job.communicate(timeout=120)
        assert b"Traceback" not in err, err.decode()
        assert state() in (before, big if before == small else small), (sig, job.returncode)
        if job.returncode == 128 + signal.SIGTERM:  # (caught: its staging is gone)
            assert hidden(out.parent) == []


def test_score_refuses_what_would_lose_a_file(tmp_path, small):
    d, _, _ = small
    ceecore.fit(str(d / "history.parquet")).save(tmp_path / "model.arrow")
    runner = CliRunner()

    def score(*args: object) -> tuple[int, str]:
        result = runner.invoke(cli, ["score", str(d / "new.parquet"), "--model", *map(str, args), "-q"])
        return result.exit_code, result.output

    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "notes.txt").write_text("mine")
    code, output = score(tmp_path / "model.arrow", "-o", tmp_path / "mixed")
    assert code == 2 and "notes.txt" in output
    (tmp_path / "inside").mkdir()
    (tmp_path / "model.arrow").rename(tmp_path / "inside" / "model.arrow")
    code, output = score(tmp_path / "inside" / "model.arrow", "-o", tmp_path / "inside")
    assert code == 2 and "inside the output directory" in output
    code, output = score(tmp_path / "inside" / "model.arrow", "-o", tmp_path / "set", "--rejects", tmp_path / "r.parquet")
    assert code == 2 and "--rejects" in output
    # A .parquet name is the scored lines alone, as before.
    code, output = score(tmp_path / "inside" / "model.arrow", "-o", tmp_path / "lines.parquet")
    assert code == 0, output
    assert pq.read_table(tmp_path / "lines.parquet").num_rows == pq.read_metadata(d / "new.parquet").num_rows
    assert not (tmp_path / "set").exists() and (tmp_path / "lines.rejects.parquet").exists()


def test_scoring_a_period_keeps_the_models_pseudonyms(tmp_path, small):
    _, history, new = small
    key = ceecore.Pseudonymiser(b"k" * 32)
    model = ceecore.fit(history, pseudonyms=key)
    ceecore.score_period(new, model, tmp_path / "out", pseudonyms=key)
    accounts = pq.read_table(tmp_path / "out" / "accounts.parquet")
    assert all(i.startswith("pn-") for i in accounts.column("importer_id").to_pylist())
    assert set(accounts.column("importer_id").to_pylist()) == set(key.batch(
        pa.record_batch({"importer_id": pc.unique(new.column("importer_id"))}), ("importer_id",)
    ).column(0).to_pylist())
    with pytest.raises(ValueError, match="pseudonymised"):
        ceecore.score_period(new, model, tmp_path / "clear")
