"""Outcome history: rates against a plain reference, combined keys, no leakage, merge and
partition invariance, the saved state's checks."""

from __future__ import annotations

import itertools
import json
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
COMBINED = (("hts6", "entry_type"), ("importer", "origin", "port"))
COLUMNS = SCORING_COLUMNS + ("filer_code", "manufacturer_id") + EXTRA
TABLE = synth.generate_table(lines=12_000, seed=21, inspect_share=0.3)


def _batches(table: pa.Table, rows: int):  # noqa: ANN202
    for batch in table.to_batches(max_chunksize=rows):
        intake = AccountBook().ingest(batch, columns=COLUMNS)
        f = line_fields(intake)
        yield intake, f


def _state(table: pa.Table, rows: int) -> History:
    history = History(EXTRA, combined=COMBINED)
    for intake, f in _batches(table, rows):
        history.update(history.keys(intake, f), outcomes(intake, f))
    return history


def _reference(table: pa.Table, out_of_fold: bool) -> np.ndarray:
    """The features, from the rows as Python dicts: plain counting and smoothing."""
    intake, f = next(_batches(table, table.num_rows))
    keys = History(EXTRA, combined=COMBINED).keys(intake, f)
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
    assert got.shape == (3_000, 3 * (len(KINDS) + len(EXTRA) + len(COMBINED)))
    np.testing.assert_allclose(got, _reference(small, out_of_fold), rtol=1e-12, atol=1e-12)
    assert history.feature_names()[:3] == ["rate:importer", "inspected:importer", "revenue:importer"]
    assert history.feature_names()[-3:] == ["rate:importer+origin+port", "inspected:importer+origin+port",
                                            "revenue:importer+origin+port"]


def _groups(*columns: np.ndarray) -> np.ndarray:
    """Each row's group, numbered by first appearance of its values across ``columns``."""
    _, first, group = np.unique(np.stack(columns, axis=1), axis=0, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[group.reshape(-1)]


def test_a_combined_key_groups_lines_as_its_parts_do():
    """Two lines share a combination's key exactly when they share every part's key (the
    parts read from the input here, not from the history's own hashing)."""
    history = History(EXTRA, combined=COMBINED)
    intake, f = next(_batches(SMALL, SMALL.num_rows))
    keys = history.keys(intake, f)
    rows = SMALL.take(pa.array(f.rows))
    entry_type = np.array(rows.column("entry_type").to_pylist(), dtype=object)
    hts6 = np.array([code[:6] for code in rows.column("hts_code").to_pylist()], dtype=object)
    importer, origin, port = (np.array(rows.column(c).to_pylist(), dtype=object)
                              for c in ("importer_id", "country_of_origin", "port_code"))
    kind = history.kinds.index
    assert (_groups(keys[:, kind("hts6+entry_type")]) == _groups(hts6.astype(str), entry_type.astype(str))).all()
    assert (_groups(keys[:, kind("importer+origin+port")])
            == _groups(importer.astype(str), origin.astype(str), port.astype(str))).all()
    assert len(np.unique(keys[:, kind("hts6+entry_type")])) > len(np.unique(keys[:, kind("hts6")]))
    # A combination's keys are its own: no key of one kind is a key of another.
    columns = [set(keys[:, j].tolist()) for j in range(keys.shape[1])]
    assert sum(len(c) for c in columns) == len(set().union(*columns))


@pytest.mark.parametrize("combined, message", [
    ([("hts6",)], "2 to 4 distinct keys"), ([("hts6", "hts6")], "2 to 4 distinct keys"),
    ([("hts6", "Tax Type")], "not \\['hts6', 'Tax Type'\\]"), ([("hts6", "importer_hts6")], "2 to 4"),
    ([("hts6", "origin", "port", "importer", "filer")], "2 to 4"), ([("hts6", "origin")] * 2, "distinct"),
])
def test_combinations_of_unknown_or_too_few_keys_are_refused(combined, message):
    with pytest.raises(ValueError, match=message):
        History(EXTRA, combined=combined)


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
        merged = History(EXTRA, combined=COMBINED)
        for i in order:
            merged.merge(parts[i])
        assert merged.to_arrow().equals(whole)
    assert History.from_arrow(whole).to_arrow().equals(whole)
    with pytest.raises(ValueError, match="not a ceecore history"):
        History.from_arrow(whole.replace_schema_metadata({}))
    with pytest.raises(ValueError, match="cannot merge"):
        History().merge(parts[0])
    with pytest.raises(ValueError, match="cannot merge"):
        History(EXTRA).merge(parts[0])
    doubled = pa.concat_tables([whole.slice(0, 1), whole.slice(0, 1), whole.slice(1)])
    with pytest.raises(ValueError, match="twice"):
        History.from_arrow(doubled)


WHOLE = _state(TABLE, 1 << 20).to_arrow()


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, TABLE.num_rows - 1), max_size=4, unique=True), rows=st.integers(50, 5_000),
       order=st.randoms(use_true_random=False))
def test_any_batching_and_merge_order_gives_the_same_state(cuts, rows, order):
    """Parts cut anywhere, read in batches of any size, merged in any order: the state of
    one read of all the lines (combined keys included), to the last count."""
    bounds = [0, *sorted(cuts), TABLE.num_rows]
    parts = [_state(TABLE.slice(a, b - a), rows) for a, b in itertools.pairwise(bounds)]
    order.shuffle(parts)
    merged = History(EXTRA, combined=COMBINED)
    for part in parts:
        merged.merge(part)
    assert merged.to_arrow().equals(WHOLE)


def _with_meta(table: pa.Table, **changes: object) -> pa.Table:
    meta = json.loads(table.schema.metadata[b"ceecore.history"])
    meta.update(changes)
    return table.replace_schema_metadata({b"ceecore.history": json.dumps(
        {k: v for k, v in meta.items() if v is not None}).encode()})


def test_saved_combinations_are_checked_and_older_states_load():
    assert History.from_arrow(WHOLE).combined == COMBINED
    for bad in ("hts6", [["hts6"]], [["hts6", 3]], [["hts6", "Tax Type"]], [["hts6", "origin"]] * 2,
                [[]], [["hts6", "origin", "port", "importer", "filer"]]):
        with pytest.raises(ValueError, match="history metadata"):
            History.from_arrow(_with_meta(WHOLE, combined=bad))
    # A state saved before combinations existed has no 'combined': it has none.
    older = _with_meta(History(EXTRA).to_arrow(), combined=None)
    assert b"combined" not in older.schema.metadata[b"ceecore.history"]
    assert History.from_arrow(older).kinds == History(EXTRA).kinds
