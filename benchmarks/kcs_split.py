"""Learning from outcomes on KCS, measured on the train file alone, split by time.

    python -m benchmarks.kcs_split [--train PATH] [--set learning_rate=0.05 ...]

Valid (2021 Q1) is where the README's KCS figures are measured, so no choice may be
made on it. This is where they are made instead: the train file (2020) is cut by date,
and for each split a model is fitted (``--preset kcs --labels violation``, as the
README's commands do) on the months before and scored on the quarter after: Jan-Jun ->
Jul-Sep and Jan-Sep -> Oct-Dec, each the shape of train -> valid (a year of history,
then the next quarter) as far as one year allows. Printed per split and on average:
precision at the top 1, 2, 5 and 10% of the scored lines, and AUC.

``--set name=value`` overrides a LightGBM setting of :data:`ceecore.learn.TRAINING`
for this run (for trying one; what ships is what ``TRAINING`` says).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np

import ceecore
from ceecore import learn
from ceecore.pipeline import Labels
from ceecore.schema import ColumnMapping
from tests.kcs import KCS_TRAIN

__all__ = ["SPLITS", "main", "measure"]

# (fitted on dates before, scored on dates from .. before)
SPLITS: tuple[tuple[str, str, str], ...] = (("2020-07-01", "2020-07-01", "2020-10-01"),
                                            ("2020-10-01", "2020-10-01", "2021-01-01"))
MEASURES = ("P@1%", "P@2%", "P@5%", "P@10%", "AUC")


def measure(train: Path, folder: Path, threads: int = 1) -> list[dict[str, float]]:
    """The measures of each split of :data:`SPLITS` (the CSV rows cut by their Date)."""
    with open(train, newline="") as handle:
        rows = list(csv.reader(handle))
    header, rows = rows[0], rows[1:]
    date = header.index("Date")
    mapping = ColumnMapping.preset("kcs")
    labels = Labels("violation", None, mapping.history_keys, mapping.history_combined)
    results = []
    for until, start, end in SPLITS:
        fitted, scoring = folder / f"fit-{until}.csv", folder / f"score-{until}.csv"
        for path, chosen in ((fitted, [r for r in rows if r[date] < until]),
                             (scoring, [r for r in rows if start <= r[date] < end])):
            with open(path, "w", newline="") as handle:
                csv.writer(handle).writerows([header, *chosen])
        model = ceecore.fit(str(fitted), mapping=mapping, labels=labels, threads=threads)
        scored = ceecore.score(str(scoring), model, mapping=mapping, threads=threads).lines
        overall = ceecore.evaluate(scored, label="violation", by=None)["overall"]
        results.append({**{f"P@{n}": overall[n]["precision"] for n in ("1%", "2%", "5%", "10%")},
                        "AUC": overall["auc"]})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, default=KCS_TRAIN, help="df_syn_train_eng.csv (default: $CEECORE_KCS_DIR's)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a LightGBM setting of ceecore.learn.TRAINING (a JSON value)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for pair in args.set:
        name, _, value = pair.partition("=")
        learn.TRAINING[name] = json.loads(value)
    with tempfile.TemporaryDirectory(prefix="ceecore-kcs-") as folder:
        results = measure(args.train, Path(folder), args.threads)
    print(f"{'split':<26}" + "".join(f"{m:>9}" for m in MEASURES))
    for (until, start, end), result in zip(SPLITS, results):
        print(f"{'< ' + until + ' -> ' + start[:7]:<26}" + "".join(f"{result[m]:>9.3f}" for m in MEASURES))
    print(f"{'mean':<26}" + "".join(f"{np.mean([r[m] for r in results]):>9.3f}" for m in MEASURES))


if __name__ == "__main__":
    main()
