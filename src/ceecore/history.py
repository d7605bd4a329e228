"""Outcome history: how often inspections of each party and product found a violation.

Research on customs selection (the DATE model, KDD 2020; the KCS dataset paper) finds
the strongest signal in the history of each importer, declarant, product and their
pairs. :class:`History` keeps, per key, the inspected lines, the violations found and
the revenue recovered, for the keys of :data:`KINDS`, any extra categorical columns
a user declares, and any combinations of those a user declares (the product with the
country of departure, say: a pair's history can hold a signal that neither key's
does). It is state like the baselines: exact integer sums in one compiled
tally, updated batch by batch, merged in any order, saved as Arrow.

Rates are smoothed towards the overall rate (empirical Bayes, a beta prior worth
``prior`` inspected lines)::

    rate = (violations + prior * overall_rate) / (inspected + prior)

so a key seen once is not judged on one outcome. Revenue per inspected line is smoothed
the same way.

**No leakage.** Every line falls in one of :data:`FOLDS` folds, by a hash of its entry
(the lines of one entry share a fold), and the tally keeps each fold's sums apart. A
line being learned from gets the rates of the other folds only (:meth:`features` with
``out_of_fold``), so its own outcome, or any from its entry, never reaches its
features; new lines being scored get the rates of all folds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceecore._checks import get, json_metadata
from ceecore._kernels._tally import Tally, combine, hash_strings
from ceecore.accounts import Intake
from ceecore.fields import LineFields

__all__ = ["FOLDS", "KINDS", "PRIOR", "SINGLE_KINDS", "History", "Outcomes", "outcomes"]

KINDS: tuple[str, ...] = (
    "importer", "manufacturer", "filer", "port", "hts10", "hts6", "hts4", "origin",
    "importer_hts6", "filer_importer", "hts6_origin", "port_hts6",
)
# The keys that may be combined with each other and with extra columns (see History).
SINGLE_KINDS: tuple[str, ...] = KINDS[:8]
FOLDS = 5
PRIOR = 10.0   # the prior is worth this many inspected lines
FORMAT = "ceecore.history/1"
MAX_EXTRA = 64  # extra key columns (and combinations) a history may keep
MAX_PARTS = 4  # the most keys a combination may join
_OVERALL = np.uint64(0)  # the key of every line's sums


class Outcomes(NamedTuple):
    """The known outcomes of a batch's accepted lines: which were inspected (their label is
    known), which found a violation, the revenue recovered (cents), and each line's fold."""

    inspected: np.ndarray
    violation: np.ndarray
    revenue_cents: np.ndarray
    fold: np.ndarray


def outcomes(intake: Intake, f: LineFields, label: str = "violation", revenue: str | None = "revenue_recovered"
             ) -> Outcomes:
    """The outcomes of ``f``'s lines: a line counts as inspected where its ``label`` is
    known (and its ``inspected`` flag, if the input has one, is not false)."""
    batch = intake.canonical
    names = batch.schema.names
    take = pa.array(f.rows)
    n = len(f)
    if label in names:
        truth = pc.cast(batch.column(label).take(take), pa.bool_())
        known = pc.is_valid(truth).to_numpy(zero_copy_only=False)
        violation = pc.fill_null(truth, False).to_numpy(zero_copy_only=False)
    else:
        known = violation = np.zeros(n, bool)
    if "inspected" in names:
        flag = pc.fill_null(batch.column("inspected").take(take), True).to_numpy(zero_copy_only=False)
        known &= flag
    money = np.zeros(n, np.int64)
    if revenue and revenue in names:
        dollars = pc.fill_null(pc.cast(batch.column(revenue).take(take), pa.float64()), 0.0)
        values = dollars.to_numpy(zero_copy_only=False)
        money = np.where(np.isfinite(values) & (values > 0), np.round(values * 100), 0).astype(np.int64)
    return Outcomes(known, violation & known, np.where(known, money, 0),
                    (intake.parsed["entry_hash"] % np.uint64(FOLDS)).astype(np.int64))


class History:
    """Inspected lines, violations and revenue per key and fold (see the module docstring).

    ``extra`` names categorical input columns (as the input calls them) to keep
    histories of too, beside :data:`KINDS`; ``combined`` lists combinations to keep
    histories of, each of 2 to :data:`MAX_PARTS` keys, each key one of
    :data:`SINGLE_KINDS` or of ``extra`` (a combination's kind is its keys joined by
    "+": ``hts6+Country of Departure``).
    """

    def __init__(self, extra: Sequence[str] = (), prior: float = PRIOR,
                 combined: Sequence[Sequence[str]] = ()) -> None:
        self.extra = tuple(extra)
        self.combined = tuple(tuple(parts) for parts in combined)
        for parts in self.combined:
            unknown = [p for p in parts if p not in SINGLE_KINDS and p not in self.extra]
            if unknown or not 2 <= len(parts) <= MAX_PARTS or len(set(parts)) != len(parts):
                raise ValueError(f"a combined history key joins 2 to {MAX_PARTS} distinct keys, each one of "
                                 f"{', '.join(SINGLE_KINDS)} or an extra history key; not {list(parts)}")
        if len(set(self.combined)) != len(self.combined) or len(self.extra) + len(self.combined) > MAX_EXTRA:
            raise ValueError(f"combined history keys must be distinct, with the extra keys at most {MAX_EXTRA}")
        self.kinds = KINDS + tuple(f"extra:{name}" for name in self.extra) + tuple("+".join(p) for p in self.combined)
        self.prior = float(prior)
        self.tally = Tally(*["sum"] * (3 * FOLDS))

    # ------------------------------------------------------------ keys

    def keys(self, intake: Intake, f: LineFields) -> np.ndarray:
        """The (lines, kinds) key of every line and kind of :attr:`kinds`."""
        batch = intake.canonical

        def text(column: str) -> np.ndarray:  # every row hashed, then the lines' kept: no take (views have none)
            if column not in batch.schema.names:
                return np.zeros(len(f), np.uint64)
            return hash_strings(pa.record_batch({"v": batch.column(column)}), "v")[f.rows]

        manufacturer, filer = text("manufacturer_id"), text("filer_code")
        parts = {
            "importer": (f.importer,), "manufacturer": (manufacturer,), "filer": (filer,), "port": (f.port,),
            "hts10": (f.hts10,), "hts6": (f.hts6,), "hts4": (f.hts4,), "origin": (f.country,),
            "importer_hts6": (f.importer, f.hts6), "filer_importer": (filer, f.importer),
            "hts6_origin": (f.hts6, f.country), "port_hts6": (f.port, f.hts6),
        }
        for name in self.extra:
            parts[f"extra:{name}"] = (text(name),)
        for keys in self.combined:  # (a built-in kind before an extra column of its name)
            parts["+".join(keys)] = tuple(parts[key if key in SINGLE_KINDS else f"extra:{key}"][0] for key in keys)
        return np.stack([combine(_tag(kind), *parts[kind]) for kind in self.kinds], axis=1)

    # ------------------------------------------------------------ state

    def update(self, keys: np.ndarray, outcome: Outcomes) -> None:
        """Folds in the inspected lines of a batch (``keys`` from :meth:`keys`)."""
        seen = np.flatnonzero(outcome.inspected)
        if len(seen) == 0:
            return
        values = np.zeros((len(seen), 3 * FOLDS), np.int64)
        column = outcome.fold[seen] * 3
        rows = np.arange(len(seen))
        values[rows, column] = 1
        values[rows, column + 1] = outcome.violation[seen]
        values[rows, column + 2] = outcome.revenue_cents[seen]
        every = np.c_[np.full(len(seen), _OVERALL), keys[seen]]
        self.tally.add(every.reshape(-1), np.repeat(values, every.shape[1], axis=0))

    def merge(self, other: History) -> None:
        """Adds another state's outcomes (exact: order does not matter; a sum saturates at
        the int64 limit, as one fit of all the lines would)."""
        if other.kinds != self.kinds:
            raise ValueError(f"cannot merge histories of keys {other.kinds} into one of {self.kinds}")
        self.tally.merge(other.tally)

    def to_arrow(self, names: list[str] | None = None) -> pa.Table:
        """The state as a table (tally "history", field, key, value) in the baselines'
        layout (so one model file holds both), sorted by field then key. The fields are the
        inspected lines, violations and revenue cents of fold 0, then fold 1, ...; only
        values other than 0 are kept (most keys were inspected in one or two folds).

        ``names``: the tally dictionary of the file it goes into (default: "history" alone).
        """
        names = names or ["history"]
        keys, values = self.tally.items()
        field, row = np.nonzero(values.T)  # field-major: sorted by field, then key
        table = pa.table({
            "tally": pa.DictionaryArray.from_arrays(np.full(len(row), names.index("history"), np.int8),
                                                    pa.array(names, pa.string())),
            "field": pa.array(field.astype(np.int8), pa.int8()),
            "key": pa.array(keys[row], pa.uint64()),
            "value": pa.array(values[row, field], pa.int64()),
        })
        return table.replace_schema_metadata(self.metadata())

    def metadata(self) -> dict[bytes, bytes]:
        return {b"ceecore.history": json.dumps({"format": FORMAT, "extra": list(self.extra), "prior": self.prior,
                                                "combined": [list(p) for p in self.combined]}).encode()}

    @classmethod
    def from_arrow(cls, table: pa.Table) -> History:
        """Rebuilds the state from :meth:`to_arrow` output (untrusted: its form, each key's
        fields given once, counts >= 0 with no more violations than inspected lines, no
        sum past 64 bits, are checked)."""
        meta = json_metadata(table.schema.metadata, b"ceecore.history")
        found = meta.get("format") if isinstance(meta, dict) else meta
        if found != FORMAT:
            raise ValueError(f"not a ceecore history of format {FORMAT} (found {str(found)[:40]!r})")
        extra = get(meta, "extra", "list", "history metadata", default=[])
        if not all(isinstance(name, str) and name for name in extra) or len(set(extra)) != len(extra) \
                or len(extra) > MAX_EXTRA:
            raise ValueError(f"history metadata: 'extra' must be at most {MAX_EXTRA} distinct column names")
        combined = get(meta, "combined", "list", "history metadata", default=[])
        if not all(isinstance(parts, list) and all(isinstance(p, str) for p in parts) for parts in combined):
            raise ValueError("history metadata: 'combined' must be a list of lists of key names")
        try:
            state = cls(extra, get(meta, "prior", "number", "history metadata", default=PRIOR, low=1e-9, high=1e9),
                        combined)
        except ValueError as exc:
            raise ValueError(f"history metadata: {exc}") from exc
        columns = ["tally", "field", "key", "value"]
        if table.column_names != columns or any(table.column(c).null_count for c in columns):
            raise ValueError(f"history table must have non-null columns {', '.join(columns)}")
        field = table.column("field").to_numpy().astype(np.int64)
        keys = table.column("key").to_numpy().astype(np.uint64)
        values = table.column("value").to_numpy().astype(np.int64)
        if len(field) and (field.min() < 0 or field.max() >= 3 * FOLDS or values.min() < 0):
            raise ValueError("history table holds fields outside the folds' or negative counts")
        unique, row = np.unique(keys, return_inverse=True)
        cells = row * (3 * FOLDS) + field
        if len(np.unique(cells)) != len(cells):
            raise ValueError("history table holds a key's field twice")
        dense = np.zeros((len(unique), 3 * FOLDS), np.int64)
        dense[row, field] = values
        folds = dense.reshape(len(unique), FOLDS, 3)
        if (folds[..., 1] > folds[..., 0]).any():
            raise ValueError("history table holds more violations than inspected lines")
        if (folds.astype(np.float64).sum(axis=1) >= 2.0**63).any():
            raise ValueError("history table holds sums past 64 bits over the folds")
        state.tally.add(unique, dense)
        return state

    def of_importers(self, importers: np.ndarray) -> np.ndarray:
        """Per importer hash, over all folds: inspected lines, violations, revenue cents (n, 3)."""
        keys = combine(_tag("importer"), np.ascontiguousarray(importers, np.uint64))
        return self.tally.get_folded(keys, 3)

    # ------------------------------------------------------------ features

    def feature_names(self) -> list[str]:
        return [f"{stat}:{kind}" for kind in self.kinds for stat in ("rate", "inspected", "revenue")]

    def features(self, keys: np.ndarray, fold: np.ndarray | None = None) -> np.ndarray:
        """Per line and kind: the smoothed violation rate, log(1 + inspected lines) and the
        smoothed revenue per inspected line (dollars); (lines, 3 * kinds).

        With ``fold`` (each line's fold: learning from these lines), each line gets the
        sums of the other folds only; a fold of -1 leaves all folds in (a line whose
        outcome is unknown, so not in the sums).
        """
        n, k = keys.shape
        skip = None if fold is None else np.ascontiguousarray(fold, np.int64)
        totals = self.tally.get_folded(np.ascontiguousarray(keys.reshape(-1)), 3,
                                       None if skip is None else np.repeat(skip, k)).reshape(n, k, 3).astype(np.float64)
        overall = self.tally.get(np.array([_OVERALL], np.uint64)).reshape(FOLDS, 3).astype(np.float64)
        base = np.broadcast_to(overall.sum(axis=0), (n, 3)).copy()
        if fold is not None:
            base -= np.where((fold >= 0)[:, None], overall[np.maximum(fold, 0)], 0.0)
        inspected, violations, cents = totals[..., 0], totals[..., 1], totals[..., 2]
        rate0 = base[:, 1] / np.maximum(base[:, 0], 1)
        revenue0 = base[:, 2] / 100 / np.maximum(base[:, 0], 1)
        m = self.prior
        out = np.empty((n, k, 3))
        out[..., 0] = (violations + m * rate0[:, None]) / (inspected + m)
        out[..., 1] = np.log1p(inspected)
        out[..., 2] = (cents / 100 + m * revenue0[:, None]) / (inspected + m)
        return out.reshape(n, 3 * k)


def _tag(kind: str) -> int:
    """A stable tag per kind of key (so kinds never collide)."""
    return 1000 + KINDS.index(kind) if kind in KINDS else int(_hash_text(kind))


def _hash_text(text: str) -> np.uint64:
    return hash_strings(pa.record_batch({"v": pa.array([text])}), "v")[0]
