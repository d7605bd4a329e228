"""The jobs on a Dask cluster give the results of one process: the same model file to the
byte, the same accounts, line scores, worklist, rejects and counts, whatever the
partitioning; a worker killed mid-job changes nothing; a cluster that goes away is a
clear error with no output."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

distributed = pytest.importorskip("distributed")

import ceecore  # noqa: E402
from ceecore import cluster, synth  # noqa: E402
from ceecore.pipeline import TooManyRejects  # noqa: E402
from tests.processes import cli_env  # noqa: E402

LINES = 24_000


@pytest.fixture(scope="module")
def client() -> Any:
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=50) as local, distributed.Client(local) as c:
        yield c


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same kind of lines laid out three ways: one Parquet file of many row groups,
    a directory of Parquet files, a directory of CSV files; each with rejected rows."""
    root = tmp_path_factory.mktemp("cluster")
    config = synth.SynthConfig(lines=LINES, seed=11, dirty=60)
    synth.write(root / "one.parquet", config, batch_rows=2_000, threads=1)
    synth.write(root / "many", config, batch_rows=2_000, file_rows=6_000, threads=1)
    (root / "csv").mkdir()
    for seed in (1, 2):
        synth.write(root / "csv" / f"part{seed}.csv", synth.SynthConfig(lines=LINES // 3, seed=seed, dirty=20),
                    threads=1)
    return {"one": root / "one.parquet", "many": root / "many", "csv": root / "csv"}


LAYOUTS = [("one", 3_000), ("one", 10**9), ("many", 1), ("csv", 1)]


def _lines(path: Path) -> pa.Table:
    """A scored-lines output, a file or a dataset directory of part files (in name order)."""
    if path.is_dir():
        return pa.concat_tables(pq.read_table(p) for p in sorted(path.glob("part-*.parquet")))
    return pq.read_table(path)


# The period views a run writes beside its scores (pipeline.PeriodViews): merged from the workers.
VIEWS = ("trends.parquet", "shifts.parquet", "uniformity.parquet")

def _same_tables(a: Path, b: Path) -> None:
    left, right = _lines(a), _lines(b)
    assert left.schema.remove_metadata() == right.schema.remove_metadata()
    assert left.num_rows == right.num_rows
    assert left.equals(right.cast(left.schema)), a.name


@pytest.mark.parametrize("layout,rows", LAYOUTS)
def test_run_is_the_run_of_one_process(client: Any, inputs: dict[str, Path], tmp_path: Path, layout: str,
                                       rows: int) -> None:
    one = ceecore.run(inputs[layout], tmp_path / "one", threads=1)
    on = cluster.Cluster(client)
    spread = cluster.run(inputs[layout], tmp_path / "cluster", client=on, fragment_rows=rows)
    assert (tmp_path / "one" / "model.arrow").read_bytes() == (tmp_path / "cluster" / "model.arrow").read_bytes()
    for name in ("accounts.parquet", "worklist.parquet", *VIEWS, "rejects.parquet", "lines.parquet"):
        _same_tables(tmp_path / "one" / name, tmp_path / "cluster" / name)
    assert (tmp_path / "cluster" / "lines.parquet").is_dir()
    assert spread.stats == one.stats or (spread.stats.rows_read, spread.stats.by_reason) == \
        (one.stats.rows_read, one.stats.by_reason)
    assert spread.stats.accepted + spread.stats.rejected == spread.stats.rows_read
    assert sorted(os.listdir(tmp_path)) == ["cluster", "one"]  # (no staging, no part files of rejects left)
    assert sum(w.partitions for w in on.report.workers.values()) == 2 * len(cluster.fragments(inputs[layout], rows))


def test_rejects_keep_their_source_rows(client: Any, inputs: dict[str, Path], tmp_path: Path) -> None:
    """A row group's rejects are numbered as rows of their file, as one process numbers them."""
    cluster.fit(inputs["one"], client=client, rejects=tmp_path / "r.parquet", fragment_rows=2_000)
    ceecore.fit(inputs["one"], rejects=tmp_path / "r1.parquet", threads=1)
    spread, one = pq.read_table(tmp_path / "r.parquet"), pq.read_table(tmp_path / "r1.parquet")
    assert spread.equals(one) and spread.num_rows == 60
    assert max(spread.column("row").to_pylist()) > 2_000


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1_000, 30_000))
def test_fit_gives_the_same_model_file_whatever_the_partitions(client: Any, inputs: dict[str, Path],
                                                                tmp_path: Path, rows: int) -> None:
    one = ceecore.fit(inputs["one"], threads=1)
    spread = cluster.fit(inputs["one"], client=client, fragment_rows=rows)
    one.save(tmp_path / "a.arrow")
    spread.save(tmp_path / "b.arrow")
    assert (tmp_path / "a.arrow").read_bytes() == (tmp_path / "b.arrow").read_bytes()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_partitions_merged_in_any_tree_are_one_pass(data: Any, lines: Any, splits: Any,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    """The tasks themselves, in this process: lines (dirty ones among them) cut into any
    partitions, each folded apart, merged in a tree of any fan-in, give the account
    state, the model file and the counts of one pass over all of them."""
    table = data.draw(lines(min_rows=0, max_rows=60, dirty=True, layouts=False), label="lines").table
    folder = tmp_path_factory.mktemp("parts")
    job = cluster._Job(ceecore.ColumnMapping(), ceecore.CenterMap.default(), ceecore.ScoringConfig.default(),
                       consolidate=True, fit=True, scratch=str(folder))
    runs = []
    for i, (start, stop) in enumerate(data.draw(splits(table.num_rows, max_parts=6), label="parts")):
        pq.write_table(table.slice(start, stop - start), folder / f"p{i}.parquet")
        runs.append(cluster._fold_part(i, cluster.Fragment("p", str(folder / f"p{i}.parquet")), None, job))
    fan_in = data.draw(st.integers(2, 4), label="fan-in")
    while len(runs) > 1:
        runs = [cluster._merge_folded(runs[i:i + fan_in], job) for i in range(0, len(runs), fan_in)]
    one = ceecore.run_consolidation(table, threads=1)
    assert cluster._table(runs[0].accounts).equals(one.book.to_arrow())
    assert (runs[0].stats.rows_read, runs[0].stats.accepted, runs[0].stats.by_reason) == \
        (one.stats.rows_read, one.stats.accepted, dict(sorted(one.stats.by_reason.items())))
    cluster._model_of(runs[0], job).save(folder / "a.arrow")
    ceecore.fit(table, threads=1).save(folder / "b.arrow")
    assert (folder / "a.arrow").read_bytes() == (folder / "b.arrow").read_bytes()


@pytest.mark.parametrize("layout,rows", LAYOUTS)
def test_consolidate_is_the_consolidation_of_one_process(client: Any, inputs: dict[str, Path], tmp_path: Path,
                                                         layout: str, rows: int) -> None:
    one = ceecore.run_consolidation(inputs[layout], threads=1, rejects=tmp_path / "r1.parquet")
    spread = ceecore.run_consolidation(inputs[layout], client=client, rejects=tmp_path / "r2.parquet")
    assert spread.accounts.equals(one.accounts)
    assert spread.book.to_arrow().equals(one.book.to_arrow())
    assert (spread.stats.rows_read, spread.stats.accepted, spread.stats.by_reason) == \
        (one.stats.rows_read, one.stats.accepted, one.stats.by_reason)
    _same_tables(tmp_path / "r1.parquet", tmp_path / "r2.parquet")


def test_score_writes_a_dataset_of_the_same_lines(client: Any, inputs: dict[str, Path], tmp_path: Path) -> None:
    model = ceecore.fit(inputs["many"], threads=1)
    model.save(tmp_path / "model.arrow")
    one = ceecore.score(inputs["one"], model, output=tmp_path / "one.parquet", rejects=tmp_path / "r1.parquet")
    spread = cluster.score(inputs["one"], tmp_path / "model.arrow", client=client, output=tmp_path / "lines.parquet",
                           rejects=tmp_path / "r2.parquet", fragment_rows=5_000)
    _same_tables(tmp_path / "one.parquet", tmp_path / "lines.parquet")
    _same_tables(tmp_path / "r1.parquet", tmp_path / "r2.parquet")
    assert len(list((tmp_path / "lines.parquet").iterdir())) == len(cluster.fragments(inputs["one"], 5_000))
    assert spread.top.picks(10).equals(one.top.picks(10))  # (the worklist's lines)
    assert spread.accounts_top.summary(model)[1].tolist() == one.accounts_top.summary(model)[1].tolist()
    assert spread.stats.rows_read == one.stats.rows_read == LINES + 60


def test_a_dask_dataframe_is_an_input(client: Any, inputs: dict[str, Path], tmp_path: Path) -> None:
    dd = pytest.importorskip("dask.dataframe")
    table = pq.read_table(inputs["one"])
    frame = dd.from_pandas(table.to_pandas(types_mapper=pd_arrow_types()), npartitions=5)
    spread = ceecore.fit(frame, client=client)
    one = ceecore.fit(table, threads=1)
    spread.save(tmp_path / "a.arrow")
    one.save(tmp_path / "b.arrow")
    assert (tmp_path / "a.arrow").read_bytes() == (tmp_path / "b.arrow").read_bytes()
    ceecore.run(frame, tmp_path / "cluster", client=client)  # (each partition read twice, from the cluster's memory)
    ceecore.run(table, tmp_path / "one", threads=1)
    for name in ("model.arrow", "accounts.parquet", "worklist.parquet", "lines.parquet"):
        if name.endswith(".arrow"):
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "cluster" / name).read_bytes()
        else:
            _same_tables(tmp_path / "one" / name, tmp_path / "cluster" / name)
    rejected = pq.read_table(tmp_path / "cluster" / "rejects.parquet")
    assert rejected.num_rows == 60 and set(rejected.column("source").to_pylist()) <= {
        f"<dask partition {i}>" for i in range(5)}


def pd_arrow_types() -> Any:
    import pandas as pd
    return pd.ArrowDtype


def _killer(client: Any, at: int) -> tuple[Any, list[int]]:
    """A progress callback that kills a worker process (SIGKILL) at its ``at``-th call:
    as a partition is done, the others still running or waiting."""
    calls: list[int] = []
    killed: list[int] = []

    def progress(rows: int) -> None:
        calls.append(rows)
        if len(calls) == at:
            pids = client.run(os.getpid)
            killed.append(pids[min(pids)])
            os.kill(killed[0], signal.SIGKILL)

    return progress, killed


def _survived(client: Any, killed: list[int]) -> None:
    assert killed
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in client.run(os.getpid).values()


def test_a_worker_killed_during_a_fit_changes_nothing(client: Any, inputs: dict[str, Path], tmp_path: Path) -> None:
    progress, killed = _killer(client, 1)
    spread = cluster.fit(inputs["one"], client=client, fragment_rows=2_000, progress=progress,
                         rejects=tmp_path / "r.parquet")
    _survived(client, killed)
    one = ceecore.fit(inputs["one"], threads=1, rejects=tmp_path / "r1.parquet")
    spread.save(tmp_path / "a.arrow")
    one.save(tmp_path / "b.arrow")
    assert (tmp_path / "a.arrow").read_bytes() == (tmp_path / "b.arrow").read_bytes()
    _same_tables(tmp_path / "r1.parquet", tmp_path / "r.parquet")


def test_a_worker_killed_while_scoring_a_run_changes_nothing(client: Any, inputs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    partitions = len(cluster.fragments(inputs["one"], 2_000))
    progress, killed = _killer(client, partitions + 1)  # (the first pass reports each partition, then the second)
    cluster.run(inputs["one"], tmp_path / "cluster", client=client, fragment_rows=2_000, progress=progress)
    _survived(client, killed)
    ceecore.run(inputs["one"], tmp_path / "one", threads=1)
    assert (tmp_path / "one" / "model.arrow").read_bytes() == (tmp_path / "cluster" / "model.arrow").read_bytes()
    for name in ("accounts.parquet", "worklist.parquet", *VIEWS, "rejects.parquet", "lines.parquet"):
        _same_tables(tmp_path / "one" / name, tmp_path / "cluster" / name)
    assert sorted(p.name for p in (tmp_path / "cluster" / "lines.parquet").iterdir()) == \
        [f"part-{i:06d}.parquet" for i in range(partitions)]  # (no staging of the killed worker left)


def test_a_cluster_that_goes_away_is_a_clear_error_and_no_output(inputs: dict[str, Path], tmp_path: Path) -> None:
    with distributed.LocalCluster(processes=True, n_workers=1, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=50) as local, distributed.Client(local) as c:
        def close(rows: int) -> None:
            local.close()

        with pytest.raises(cluster.ClusterError, match="went away.*no output written"):
            cluster.run(inputs["one"], tmp_path / "out", client=c, fragment_rows=2_000, progress=close)
    assert os.listdir(tmp_path) == []


def test_bad_input_is_the_error_of_one_process_and_no_output(client: Any, inputs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    pq.write_table(pq.read_table(inputs["one"]).drop_columns(["importer_id"]), tmp_path / "bad.parquet")
    with pytest.raises(ValueError) as one:
        ceecore.run(tmp_path / "bad.parquet", tmp_path / "out", threads=1)
    with pytest.raises(ValueError) as spread:
        ceecore.run(tmp_path / "bad.parquet", tmp_path / "out", client=client)
    assert type(spread.value) is type(one.value) and str(spread.value) == str(one.value)
    assert sorted(os.listdir(tmp_path)) == ["bad.parquet"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_running_scheduler_by_address_and_its_loss(inputs: dict[str, Path], tmp_path: Path) -> None:
    """``tcp://HOST:PORT``: a scheduler and workers started as a user starts them (``dask
    scheduler``, ``dask worker``); the CLI's run there is one process's; a scheduler
    killed mid-job ends the job with a clear error and no output."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    dask = [sys.executable, "-m", "distributed.cli"]
    scheduler = subprocess.Popen([*dask[:2], "distributed.cli.dask_scheduler", "--port", address.rsplit(":", 1)[1],
                                  "--no-dashboard"], env=cli_env(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    workers = subprocess.Popen([*dask[:2], "distributed.cli.dask_worker", address, "--nworkers", "2", "--nthreads", "1",
                                "--no-dashboard"], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with distributed.Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        done = subprocess.run([sys.executable, "-m", "ceecore", "fit", str(inputs["many"]), "-q", "--cluster", address,
                               "-o", str(tmp_path / "a.arrow")], capture_output=True, text=True, env=cli_env(),
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        ceecore.fit(inputs["many"], threads=1).save(tmp_path / "b.arrow")
        assert (tmp_path / "a.arrow").read_bytes() == (tmp_path / "b.arrow").read_bytes()
        with distributed.Client(address, timeout="30s") as c, pytest.raises(cluster.ClusterError, match="went away"):
            cluster.run(inputs["one"], tmp_path / "out", client=c, fragment_rows=2_000,
                        progress=lambda rows: scheduler.kill())
        assert sorted(os.listdir(tmp_path)) == ["a.arrow", "a.rejects.parquet", "b.arrow"]  # (no out, no staging)
    finally:
        for process in (workers, scheduler):
            process.terminate()
            process.wait(timeout=30)


def test_too_many_rejects_write_nothing(client: Any, inputs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(TooManyRejects):
        cluster.run(inputs["one"], tmp_path / "out", client=client, max_reject_share=0.0001)
    assert os.listdir(tmp_path) == []


def test_learning_from_labels_is_the_learning_of_one_process(client: Any, inputs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """Outcome histories merged, the training rows computed by the workers and joined in
    input order, the trees trained on the client: the same model and out-of-fold scores."""
    pytest.importorskip("lightgbm")
    labels = ceecore.Labels("violation", "revenue_recovered", ("entry_type",), (("hts6", "entry_type"),))
    one = ceecore.run(inputs["many"], tmp_path / "one", labels=labels, threads=1)
    spread = ceecore.run(inputs["many"], tmp_path / "cluster", labels=labels, threads=1, client=client)
    assert spread.model.learned is not None and spread.model.learned.training == one.model.learned.training
    assert (tmp_path / "one" / "model.arrow").read_bytes() == (tmp_path / "cluster" / "model.arrow").read_bytes()
    for name in ("accounts.parquet", "worklist.parquet", *VIEWS, "lines.parquet"):
        _same_tables(tmp_path / "one" / name, tmp_path / "cluster" / name)


def test_the_cli_runs_on_a_local_cluster_with_the_same_outputs(inputs: dict[str, Path], tmp_path: Path) -> None:
    def ceecore_cli(*args: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ceecore", *map(str, args)], capture_output=True, text=True,
                              env=cli_env(), timeout=300)

    spread = ceecore_cli("run", inputs["many"], "--cluster", "local:2", "-o", tmp_path / "a")
    assert spread.returncode == 0, spread.stderr
    assert "partition tasks" in spread.stdout  # the per-worker summary
    assert ceecore_cli("run", inputs["many"], "-q", "-o", tmp_path / "b").returncode == 0
    assert (tmp_path / "a" / "model.arrow").read_bytes() == (tmp_path / "b" / "model.arrow").read_bytes()
    _same_tables(tmp_path / "a" / "accounts.parquet", tmp_path / "b" / "accounts.parquet")
    _same_tables(tmp_path / "a" / "lines.parquet", tmp_path / "b" / "lines.parquet")
    bad = ceecore_cli("fit", inputs["many"], "--cluster", "local:x", "-o", tmp_path / "m.arrow")
    assert bad.returncode == 2 and "local:N" in bad.stderr and "Traceback" not in bad.stderr
    gone = ceecore_cli("fit", inputs["many"], "--cluster", "tcp://127.0.0.1:9", "-o", tmp_path / "m.arrow")
    assert gone.returncode == 2 and "cannot reach" in gone.stderr and "Traceback" not in gone.stderr
    assert not (tmp_path / "m.arrow").exists()


def test_without_a_cluster_dask_is_not_imported(inputs: dict[str, Path], tmp_path: Path) -> None:
    code = ("import sys, ceecore; from ceecore_cli import main; "
            f"ceecore.run({str(inputs['many'])!r}, {str(tmp_path / 'out')!r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("learned", [False, True], ids=["plain", "learned"])
def test_a_period_scored_into_a_set_is_the_set_of_one_process(client: Any, tmp_path: Path, learned: bool) -> None:
    """``score -o DIR`` on a cluster: a period judged against a history's model (its
    baselines run on with the period's lines, an account the history never saw is new)
    gives the set one process writes, views included."""
    import datetime as dt

    import pyarrow.compute as pc

    table = synth.Synthesizer(synth.SynthConfig(lines=LINES, seed=12)).table()
    later = pc.greater_equal(table.column("entry_date"), pa.scalar(dt.date(2025, 10, 1)))
    history, period = table.filter(pc.invert(later)), table.filter(later)
    pq.write_table(period, tmp_path / "period.parquet", row_group_size=2_000)
    model = ceecore.fit(history, labels="violation" if learned else None, threads=1)
    model.save(tmp_path / "model.arrow")
    one = ceecore.score_period(tmp_path / "period.parquet", tmp_path / "model.arrow", tmp_path / "one", threads=1)
    spread = cluster.score_period(tmp_path / "period.parquet", tmp_path / "model.arrow", tmp_path / "cluster",
                                  client=cluster.Cluster(client), fragment_rows=5_000)
    assert (tmp_path / "cluster" / "lines.parquet").is_dir()
    for name in ("accounts.parquet", "worklist.parquet", *VIEWS, "rejects.parquet", "lines.parquet"):
        _same_tables(tmp_path / "one" / name, tmp_path / "cluster" / name)
    assert spread.stats.rows_read == one.stats.rows_read == period.num_rows
    assert spread.accounts == one.accounts
