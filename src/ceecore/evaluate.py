"""Measuring detection: the field's metrics for scored lines with known outcomes.

For the lines whose label is known (a null label, or an ``inspected`` flag that is
false, means "not inspected": such lines are counted and left out), ranked by score
(ties: the earlier line first, so tied scores are ranked in file order):

- ``precision@n%``: the share of violations among the top n% of lines;
- ``recall@n%``: the share of all violations found in the top n%;
- ``revenue@n%``: the share of all revenue recovered found in the top n%;
- ``auc``: the chance that a random violation outscores a random clean line (ties
  count a half);
- ``random``: what picking n% of the lines at random would give, on average
  (precision: the violation rate; recall and revenue: n%).

Each n% of N lines is the top ``max(1, round(n% * N))`` lines. The metrics are given
overall and per Center (or per any column named by ``by``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceecore.io import open_sources
from ceecore.schema import ContractError, parse_column

__all__ = ["SHARES", "evaluate", "metrics"]

SHARES: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10)


def evaluate(source: Any, label: str = "violation", revenue: str | None = None, score: str = "score",
             by: str | None = "center", shares: tuple[float, ...] = SHARES) -> dict[str, Any]:
    """The metrics of the scored lines in ``source`` (files or Arrow data; see the module
    docstring), overall and per value of ``by`` (skipped when the column is absent)."""
    table = _read(source, label, revenue, score, by)
    y = table.column("label").to_numpy(zero_copy_only=False)
    known = ~np.isnan(y)
    scores = table.column("score").to_numpy(zero_copy_only=False)[known]
    y = y[known]
    money = table.column("revenue").to_numpy(zero_copy_only=False)[known] if revenue else None
    report: dict[str, Any] = {
        "label": label, "revenue": revenue, "score": score, "lines": int(known.sum()),
        "unlabelled": int((~known).sum()), "overall": metrics(scores, y, money, shares),
    }
    if "by" in table.column_names:
        encoded = pc.dictionary_encode(table.column("by")).combine_chunks()
        names = encoded.dictionary.to_pylist() + ["(none)"]
        group = pc.fill_null(encoded.indices, len(names) - 1).to_numpy(zero_copy_only=False)[known]
        report["by"] = by
        report["groups"] = {names[g]: metrics(scores[group == g], y[group == g],
                                              None if money is None else money[group == g], shares)
                            for g in sorted(set(group.tolist()), key=lambda g: names[g])}
    return report


def metrics(scores: np.ndarray, y: np.ndarray, revenue: np.ndarray | None = None,
            shares: tuple[float, ...] = SHARES) -> dict[str, Any]:
    """The metrics of one set of labelled lines (``y`` 1 for a violation, else 0)."""
    n = len(y)
    positives = float(y.sum())
    order = np.argsort(-scores, kind="stable")
    out: dict[str, Any] = {"lines": n, "violations": int(positives),
                           "violation_rate": positives / n if n else None}
    if revenue is not None:
        out["revenue_total"] = float(revenue.sum())
    for share in shares:
        name = f"{share * 100:g}%"
        k = max(1, int(round(share * n))) if n else 0
        top = order[:k]
        found = float(y[top].sum())
        at = {"lines": k, "precision": found / k if k else None,
              "recall": found / positives if positives else None}
        if revenue is not None:
            total = float(revenue.sum())
            at["revenue"] = float(revenue[top].sum()) / total if total else None
        out[name] = at
    out["auc"] = auc(scores, y)
    out["random"] = {f"{share * 100:g}%": {"precision": out["violation_rate"], "recall": share,
                                           **({"revenue": share} if revenue is not None else {})}
                     for share in shares}
    return out


def auc(scores: np.ndarray, y: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties a half); None without both classes."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    values, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    mean_rank = first_rank + (counts - 1) / 2.0  # ties share the mean of their ranks
    rank_sum = float(mean_rank[inverse][y == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _read(source: Any, label: str, revenue: str | None, score: str, by: str | None) -> pa.Table:
    """The score, label (1.0, 0.0 or NaN when unknown), revenue and group of every line."""
    wanted = [c for c in (score, label, revenue, by, "inspected") if c]
    sources, chunks = open_sources(source, text_columns=[c for c in (label, by) if c], columns=wanted)
    parts = []
    for chunk in chunks:
        names = chunk.batch.schema.names
        where = chunk.source
        for column in (score, label, revenue):
            if column and column not in names:
                raise ContractError(where, f"no column {column!r} (scored lines keep the outcome columns "
                                    "inspected, violation and revenue_recovered when the input had them)", column)
        values, bad = parse_column(chunk.batch.column(names.index(score)), "number", where, score)
        truth, bad_label = parse_column(chunk.batch.column(names.index(label)), "bool", where, label)
        for column, mask in ((score, bad), (label, bad_label)):
            if mask is not None:
                raise ContractError(where, f"{int(mask.sum())} value(s) that do not parse", column)
        if pc.any(pc.is_null(values)).as_py() or not np.isfinite(values.to_numpy(zero_copy_only=False)).all():
            raise ContractError(where, "scores must be finite numbers", score)
        if "inspected" in names and label != "inspected":  # a label on a line not inspected is not an outcome
            flag, bad_flag = parse_column(chunk.batch.column(names.index("inspected")), "bool", where, "inspected")
            if bad_flag is not None:
                raise ContractError(where, f"{int(bad_flag.sum())} value(s) that do not parse", "inspected")
            truth = pc.if_else(pc.fill_null(flag, True), truth, pa.scalar(None, pa.bool_()))
        part = {"score": values, "label": pc.cast(truth, pa.float64())}
        if revenue:
            money, bad_money = parse_column(chunk.batch.column(names.index(revenue)), "number", where, revenue)
            if bad_money is not None:
                raise ContractError(where, f"{int(bad_money.sum())} value(s) that do not parse", revenue)
            part["revenue"] = pc.fill_null(money, 0.0)
        if by and by in names:
            groups = chunk.batch.column(names.index(by))
            try:
                part["by"] = pc.cast(groups, pa.string())
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as exc:
                raise ContractError(where, f"cannot group by a column of type {groups.type} (give a column of "
                                    "text, numbers or dates)", by) from exc
        parts.append(pa.table(part))
    if not parts:
        raise ContractError(os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<input>",
                            "holds no scored lines")
    table = pa.concat_tables(parts, promote_options="default")
    return table.set_column(1, "label", pc.fill_null(table.column("label"), float("nan")))
