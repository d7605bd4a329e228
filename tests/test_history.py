"""Outcome history: rates against a plain reference, no leakage, merge and partition invariance."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceecore import synth
from ceecore.accounts import AccountBook
from ceecore.fields import SCORING_COLUMNS, line_fields
from ceecore.history import FOLDS, KINDS, PRIOR, History, outcomes

EXTRA = ("entry_type",)
COLUMNS = SCORING_COLUMNS + ("filer_code", "manufacturer_id") + EXTRA
TABLE = synth.generate_table(lines=12_000, seed=21, inspect_share=0.3)


def _batches(table: pa.Table, rows: int):  # noqa: ANN202
    for batch in table.to_batches(max_chunksize=rows):
        intake = AccountBook().ingest(batch, columns=COLUMNS)
        f = line_fields(intake)
        yield intake, f


def _state(table: pa.Table, rows: int) -> History:
    history = History(EXTRA)
    for intake, f in _batches(table, rows):
        history.update(history.keys(intake, f), outcomes(intake, f))
    return history


def _reference(table: pa.Table, out_of_fold: bool) -> np.ndarray:
    """The features, from the rows as Python dicts: plain counting and smoothing."""
    intake, f = next(_batches(table, table.num_rows))
    keys = History(EXTRA).keys(intake, f)
    o = outcomes(intake, f)
    sums: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    overall: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for i in range(len(f)):
        if o.inspected[i]:
            for j in range(keys.shape[1]):
                s = sums[(int(keys[i, j]), int(o.fold[i]))]
                s[0] += 1
                s[1] += bool(o.violation[i])
                s[2] += int(o.revenue_cents[i])
            g = overall[int(o.fold[i])]
            g[0] += 1
            g[1] += bool(o.violation[i])
            g[2] += int(o.revenue_cents[i])
    out = np.zeros((len(f), 3 * keys.shape[1]))
    for i in range(len(f)):
        folds = [d for d in range(FOLDS) if not (out_of_fold and d == o.fold[i])]
        base = [sum(overall[d][c] for d in folds) for c in range(3)]
        rate0, revenue0 = base[1] / max(base[0], 1), base[2] / 100 / max(base[0], 1)
        for j in range(keys.shape[1]):
            n, v, cents = (sum(sums[(int(keys[i, j]), d)][c] for d in folds if (int(keys[i, j]), d) in sums)
                           for c in range(3))
            out[i, 3 * j:3 * j + 3] = [(v + PRIOR * rate0) / (n + PRIOR), np.log1p(n),
                                       (cents / 100 + PRIOR * revenue0) / (n + PRIOR)]
    return out


@pytest.mark.parametrize("out_of_fold", [False, True])
def test_features_match_the_plain_reference(out_of_fold):
    small = TABLE.slice(0, 3_000)
    history = _state(small, 700)
    intake, f = next(_batches(small, small.num_rows))
    keys = history.keys(intake, f)
    got = history.features(keys, outcomes(intake, f).fold if out_of_fold else None)
    assert got.shape == (3_000, 3 * (len(KINDS) + len(EXTRA)))
    np.testing.assert_allclose(got, _reference(small, out_of_fold), rtol=1e-12, atol=1e-12)
    assert history.feature_names()[:3] == ["rate:importer", "inspected:importer", "revenue:importer"]


def _fit_features(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold features of every line (as when learning from them) and their folds."""
    history = _state(table, 1_000)
    intake, f = next(_batches(table, table.num_rows))
    o = outcomes(intake, f)
    return history.features(history.keys(intake, f), o.fold), o.fold


SMALL = TABLE.slice(0, 3_000)
SMALL_FEATURES, SMALL_FOLDS = _fit_features(SMALL)


@settings(max_examples=25, deadline=None)
@given(fold=st.integers(0, FOLDS - 1), picks=st.lists(st.integers(0, 2_999), min_size=1, max_size=30))
def test_no_line_learns_from_its_own_outcome(fold, picks):
    """Change the outcomes of some lines of one fold (their own entries' folds): no line
    of that fold sees any difference, and the lines of other folds do."""
    members = np.flatnonzero(SMALL_FOLDS == fold)
    flips = sorted({int(members[p % len(members)]) for p in picks})
    violation = np.array(SMALL.column("violation").to_pylist(), dtype=object)
    inspected = SMALL.column("inspected").to_numpy(zero_copy_only=False).copy()
    for i in flips:
        inspected[i] = True
        violation[i] = not violation[i] if violation[i] is not None else True
    changed = SMALL.set_column(SMALL.schema.get_field_index("violation"), "violation", pa.array(violation, pa.bool_()))
    changed = changed.set_column(changed.schema.get_field_index("inspected"), "inspected", pa.array(inspected))
    after, folds = _fit_features(changed)
    assert (folds == SMALL_FOLDS).all()
    own = SMALL_FOLDS == fold
    assert (after[own] == SMALL_FEATURES[own]).all()
    assert not (after[~own] == SMALL_FEATURES[~own]).all()  # the change is seen from the other folds


def test_state_is_partition_invariant_and_round_trips():
    whole = _state(TABLE, 1 << 20).to_arrow()
    assert _state(TABLE, 1_234).to_arrow().equals(whole)
    parts = [_state(TABLE.slice(a, b - a), 999) for a, b in ((0, 4_000), (4_000, 9_000), (9_000, 12_000))]
    for order in ((0, 1, 2), (2, 1, 0)):
        merged = History(EXTRA)
        for i in order:
            merged.merge(parts[i])
        assert merged.to_arrow().equals(whole)
    assert History.from_arrow(whole).to_arrow().equals(whole)
    with pytest.raises(ValueError, match="not a ceecore history"):
        History.from_arrow(whole.replace_schema_metadata({}))
    with pytest.raises(ValueError, match="cannot merge"):
        History().merge(parts[0])
    doubled = pa.concat_tables([whole.slice(0, 1), whole.slice(0, 1), whole.slice(1)])
    with pytest.raises(ValueError, match="twice"):
        History.from_arrow(doubled)
