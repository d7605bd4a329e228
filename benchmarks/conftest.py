"""Benchmark sizes, shared data, and a ratio summary (peer time / ceecore time) per group.

CI runs the suite at a small size so it cannot rot; the full-size run is

    CEECORE_BENCH_LINES=10000000 CEECORE_BENCH_ACCOUNTS=200000 python3 -m pytest benchmarks
"""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from ceecore.synth import generate_table

LINES = int(os.environ.get("CEECORE_BENCH_LINES", "200000"))
ACCOUNTS = int(os.environ.get("CEECORE_BENCH_ACCOUNTS", str(max(LINES // 50, 10))))
ROUNDS = int(os.environ.get("CEECORE_BENCH_ROUNDS", "3"))
# The ceecore benchmark a group's ratios are taken to (else its fastest ceecore one).
REFERENCE = {"run, fresh process (parquet)": "test_run[ceecore run]"}


@pytest.fixture(scope="session")
def lines_table() -> pa.Table:
    """LINES generated entry lines (all valid) from ACCOUNTS importers, in memory."""
    return generate_table(lines=LINES, accounts=ACCOUNTS, seed=7)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ANN001 (pytest hook)
    session = getattr(config, "_benchmarksession", None)
    benchmarks = [b for b in getattr(session, "benchmarks", []) if b is not None and b.stats]
    groups: dict[str, dict[str, float]] = {}
    rates: dict[str, str] = {}
    for bench in benchmarks:
        groups.setdefault(bench.group or "", {})[bench.name] = bench.stats.min
        if bench.extra_info.get("lines"):
            seconds = bench.extra_info.get("seconds", bench.stats.min)  # a subprocess's own time, start-up excluded
            rates[bench.name] = f"   {bench.extra_info['lines'] / seconds:>12,.0f} lines/s"
        if bench.extra_info.get("peak_rss_mb"):
            rates[bench.name] = rates.get(bench.name, "") + f"   peak RSS {bench.extra_info['peak_rss_mb']:>7,.0f} MB"
    lines = []
    for group, times in sorted(groups.items()):
        own = {name: t for name, t in times.items() if "[ceecore" in name}
        if not own:
            continue
        best_name, best = min(own.items(), key=lambda kv: kv[1])
        if REFERENCE.get(group) in times:  # ratios to the whole job, not to a lighter variant of it
            best_name, best = REFERENCE[group], times[REFERENCE[group]]
        for name, t in sorted(times.items(), key=lambda kv: kv[1]):
            lines.append(f"{group:<28} {name:<48} {t:9.3f} s   {t / best:6.2f}x of {best_name.split('[')[1][:-1]}"
                         + rates.get(name, ""))
    if lines:
        terminalreporter.section(f"ratios to ceecore (min of rounds; {LINES:,} lines, {ACCOUNTS:,} accounts)")
        for line in lines:
            terminalreporter.write_line(line)
