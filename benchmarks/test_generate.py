"""The generator: lines per second (the bar: 1M lines/s) and peak memory writing Parquet.

In memory, the world is built and the lines streamed as record batches on 1 and 2
threads; to a file, a fresh process writes a Parquet file row group by row group, so
its peak RSS (VmHWM) is the generator's own. There is no peer: these are absolutes,
reported as lines per second in the summary.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.conftest import ACCOUNTS, LINES, ROUNDS
from ceecore import synth


@pytest.mark.benchmark(group="generate in memory")
@pytest.mark.parametrize("threads", [2, 1])
def test_generate(benchmark, threads):  # noqa: ANN001
    def run() -> int:
        return sum(b.num_rows for b in synth.generate(lines=LINES, accounts=ACCOUNTS, seed=7, threads=threads))

    benchmark.name = f"test_generate[ceecore {threads} thread{'s' if threads > 1 else ''}]"
    benchmark.extra_info["lines"] = LINES
    assert benchmark.pedantic(run, rounds=ROUNDS, iterations=1) == LINES


_WRITE_SCRIPT = """
import json, sys, time
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
from ceecore import synth
imported = peak_mb()
written = synth.write(sys.argv[1], lines=int(sys.argv[2]), accounts=int(sys.argv[3]), seed=7)
print(json.dumps({"seconds": written.seconds, "lines": written.lines, "import_mb": imported, "peak_mb": peak_mb()}))
"""


@pytest.mark.benchmark(group="generate to parquet")
def test_generate_parquet_file(benchmark, tmp_path_factory):  # noqa: ANN001
    """Writing LINES lines to one Parquet file in a fresh process: time and peak RSS."""
    path = tmp_path_factory.mktemp("bench") / "generated.parquet"

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", _WRITE_SCRIPT, str(path), str(LINES), str(ACCOUNTS)],
                             check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    benchmark.name = "test_generate_parquet[ceecore]"
    benchmark.extra_info["lines"] = LINES
    report = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(peak_rss_mb=round(report["peak_mb"], 1), import_rss_mb=round(report["import_mb"], 1),
                                parquet_mb=round(path.stat().st_size / 2**20, 1), seconds=report["seconds"])
    print(f"\ngenerate to Parquet: {LINES:,} lines in {report['seconds']:.2f} s "
          f"({LINES / report['seconds']:,.0f} lines/s), peak RSS {report['peak_mb']:.0f} MB "
          f"({report['import_mb']:.0f} MB after import), file {path.stat().st_size / 2**20:.0f} MB")
    assert report["lines"] == LINES
