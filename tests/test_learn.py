"""Learning from outcomes: exported trees score exactly like LightGBM; fit --labels end to end."""

from __future__ import annotations

import json
import sys

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import ceecore
from benchmarks.kcs_split import measure
from ceecore import synth
from ceecore.accounts import AccountBook
from ceecore.fields import line_fields
from ceecore.history import outcomes
from ceecore.learn import MAX_DEPTH, TRAINING, Trees, export, train
from ceecore_cli.main import cli
from tests.kcs import KCS_TRAIN, needs_kcs

# Learning needs the optional learner (ceecore[learn], also in ceecore[test]); scoring does not.
lightgbm = pytest.importorskip("lightgbm", reason="LightGBM (ceecore[learn]) is not installed: nothing to learn with")


def fitted(X: np.ndarray, y: np.ndarray, rounds: int, **params) -> lightgbm.Booster:
    """A LightGBM model as :func:`ceecore.learn.train` fits one, on one thread."""
    settings = {**TRAINING, "num_iterations": rounds, "num_threads": 1, "verbosity": -1, **params}
    return lightgbm.train(settings, lightgbm.Dataset(X, y))


def test_exported_trees_score_exactly_like_the_library():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4_000, 7))
    X[:, :6][rng.random((4_000, 6)) < 0.15] = np.nan  # missing values go the learned way
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) + X[:, 6] > 0.2).astype(int)
    model = fitted(X, y, 60)
    trees = export(model.dump_model(), [f"x{i}" for i in range(7)])
    fresh = rng.normal(size=(2_000, 7))
    fresh[rng.random(fresh.shape) < 0.15] = np.nan  # x6 had none in training: LightGBM reads them as 0
    for rows in (X, fresh):
        assert (trees.raw(rows) == model.predict(rows, raw_score=True)).all()  # the same sums, bit for bit
        assert np.abs(trees.probability(rows) - model.predict(rows)).max() < 1e-15
    raw, parts = trees.raw(fresh, contributions=True)
    # Contributions explain the score: along a path, value changes add up to leaf - root.
    np.testing.assert_allclose(parts.sum(axis=1) + trees.baseline + trees.value[trees.roots].sum(), raw, atol=1e-9)
    again = Trees.from_dict(json.loads(json.dumps(trees.to_dict())))
    assert (again.raw(fresh) == trees.raw(fresh)).all()


def test_training_is_capped_to_its_threads_and_the_same_on_any_number():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(3_000, 5))
    y = (X[:, 0] - X[:, 3] + rng.normal(size=3_000) > 0).astype(int)
    one, two = (train(X, y, list("abcde"), threads=n) for n in (1, 2))
    assert one.to_dict() == two.to_dict()
    assert len(one.roots) == TRAINING["num_iterations"] and one.baseline == 0.0
    with pytest.raises(ValueError, match="only one outcome"):
        train(X, np.zeros(3_000), list("abcde"))


def test_reasons_are_on_the_scale_of_the_leaves():
    """Each split's part is the change of (shrunk) node value: a feature of no use gets
    parts near 0, however deep its splits sit."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(5_000, 2))
    y = (X[:, 0] + 0.1 * rng.normal(size=5_000) > 0).astype(int)  # x1 is noise
    parts = export(fitted(X, y, 40, feature_fraction=1.0).dump_model(), ["x0", "x1"]).raw(X, contributions=True)[1]
    assert np.abs(parts[:, 1]).mean() < 0.1 * np.abs(parts[:, 0]).mean()
    assert (np.sign(parts[:, 0]) == np.sign(X[:, 0])).mean() > 0.95  # x0 pushes the right way


@pytest.mark.parametrize(("params", "match"), [
    ({"categorical_column": [0]}, "of type '=='"),
    ({"zero_as_missing": True}, "missing 'Zero'"),
    ({"linear_tree": True}, "linear trees"),
    ({"objective": "cross_entropy"}, "only the 'binary' objective"),
    ({"objective": "multiclass", "num_class": 2}, "only binary"),
])
def test_trees_that_the_kernel_would_score_otherwise_are_refused(params, match):
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.integers(0, 4, 2_000), rng.normal(size=2_000)]).astype(float)
    y = ((X[:, 0] == 2) ^ (X[:, 1] > 0)).astype(int)
    with pytest.raises(ValueError, match=match):
        export(fitted(X, y, 5, **params).dump_model(), ["x0", "x1"])


def test_a_forest_a_model_file_may_not_hold_is_refused_as_it_is_exported():
    """A dump (hand-made here, in LightGBM's documented form) whose tree is deeper than
    the loader allows: refused by :func:`export`, not saved into a model that would not load."""
    def chain(depth: int) -> dict:
        node: dict = {"leaf_value": 0.5}
        for k in range(depth):
            node = {"split_feature": 0, "threshold": float(k), "decision_type": "<=", "default_left": True,
                    "missing_type": "NaN", "internal_value": 0.0, "left_child": {"leaf_value": -0.5},
                    "right_child": node}
        return {"objective": "binary sigmoid:1", "max_feature_idx": 0, "tree_info": [{"tree_structure": node}]}

    trees = export(chain(MAX_DEPTH), ["x"])
    assert trees.raw(np.array([[MAX_DEPTH + 1.0], [0.5], [np.nan]])).tolist() == [0.5, -0.5, -0.5]
    with pytest.raises(ValueError, match=f"deeper than {MAX_DEPTH}"):
        export(chain(MAX_DEPTH + 1), ["x"])


def test_corrupt_trees_are_refused():
    doc = export(fitted(np.arange(100.0)[:, None], np.arange(100) % 2, 3, min_data_in_leaf=5).dump_model(),
                 ["x"]).to_dict()
    cyclic = {**doc, "left": list(doc["left"])}
    cyclic["left"][doc["roots"][0]] = doc["roots"][0]  # a cycle
    with pytest.raises(ValueError, match="children follow"):
        Trees.from_dict(cyclic)
    with pytest.raises(ValueError, match="missing_left"):
        Trees.from_dict({**doc, "missing_left": [300] * len(doc["missing_left"])})


TABLE = synth.generate_table(lines=60_000, seed=31, inspect_share=0.2)


def test_without_the_learner_fit_with_labels_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # as if not installed: importing it fails
    with pytest.raises(ValueError, match=r"needs LightGBM: pip install 'ceecore\[learn\]'"):
        train(np.zeros((4, 1)), np.array([0, 1, 0, 1]), ["x"])
    pq.write_table(TABLE.slice(0, 5_000), tmp_path / "train.parquet")
    result = CliRunner().invoke(cli, ["fit", str(tmp_path / "train.parquet"), "--labels", "violation", "-o",
                                      str(tmp_path / "m.arrow")])
    assert result.exit_code == 2 and "needs LightGBM" in result.output and not (tmp_path / "m.arrow").exists()


def test_a_labelled_model_scores_with_its_own_kernel_and_beats_the_unsupervised_one(tmp_path):
    model = ceecore.fit(TABLE, labels=ceecore.Labels("violation", "revenue_recovered", ("entry_type",),
                                                     (("hts6", "entry_type"),)))
    assert model.learned is not None and model.learned.training["lines"] == sum(TABLE.column("inspected").to_pylist())
    model.save(tmp_path / "m.arrow")
    loaded = ceecore.load_model(tmp_path / "m.arrow")
    scored = loaded.score(TABLE)
    assert pl.from_arrow(scored).equals(pl.from_arrow(ceecore.Scorer(model).score(TABLE)))  # NaN equals NaN here
    # The kernel's scores are the library's on the same features (the model's own X).
    batch = TABLE.slice(0, 5_000).combine_chunks().to_batches()[0]
    intake = AccountBook().parse(batch, columns=model.input_columns)
    X = model.features(intake, line_fields(intake))[0]
    score = scored.column("score").to_numpy()[:5_000]
    np.testing.assert_allclose(score, model.learned.trees.probability(X), rtol=0, atol=1e-15)
    assert {"history:importer", "history:extra:entry_type", "history:hts6+entry_type"} <= set(scored.schema.names)
    reasons = scored.column("reasons").to_pylist()
    assert all(r for r, s in zip(reasons, score) if s > 0.5)  # a high score comes with its reasons
    # Learning from the outcomes ranks violations at least as well as the indicators alone.
    out = tmp_path / "scored.parquet"
    ceecore.score(TABLE, model, output=out)
    unsupervised = tmp_path / "plain.parquet"
    ceecore.score(TABLE, ceecore.fit(TABLE), output=unsupervised)
    learned_auc = ceecore.evaluate(str(out))["overall"]["auc"]
    assert learned_auc >= ceecore.evaluate(str(unsupervised))["overall"]["auc"] - 0.01
    with pytest.raises(ValueError, match="cannot be merged"):
        ceecore.merge_models([model, model])


def test_run_with_labels_never_scores_a_line_with_its_own_outcome(tmp_path):
    table = TABLE.slice(0, 20_000)
    intake = AccountBook().parse(table.combine_chunks().to_batches()[0], columns=ceecore.fields.SCORING_COLUMNS)
    fold = outcomes(intake, line_fields(intake)).fold  # every line is accepted: rows and lines agree
    one_fold = np.flatnonzero(table.column("inspected").to_numpy(zero_copy_only=False) & (fold == fold[0]))
    inspected = one_fold[:40]  # the outcomes of one fold change
    violation = np.array(table.column("violation").to_pylist(), dtype=object)
    violation[inspected] = [not v for v in violation[inspected]]
    flipped = table.set_column(table.schema.get_field_index("violation"), "violation", pa.array(violation, pa.bool_()))
    history = {}
    for name, data in (("a", table), ("b", flipped)):
        ceecore.run(data, tmp_path / name, labels="violation")
        lines = pl.read_parquet(tmp_path / name / "lines.parquet")
        history[name] = lines.select([c for c in lines.columns if c.startswith("history:")]).to_numpy()[inspected]
    assert (history["a"] == history["b"]).all()  # their own outcomes changed; their history did not


def test_learning_needs_an_input_it_can_read_twice_and_canonical_outcomes():
    reader = pa.RecordBatchReader.from_batches(TABLE.schema, TABLE.to_batches())
    with pytest.raises(ValueError, match="one-time stream"):
        ceecore.fit(reader, labels="violation")
    with pytest.raises(ValueError, match="--map fraud=violation"):
        ceecore.Labels("fraud")
    with pytest.raises(ValueError, match="extra categorical"):
        ceecore.Labels("violation", history_keys=("importer_id",))
    renamed = TABLE.slice(0, 2_000).rename_columns(["Fraud" if c == "violation" else c for c in TABLE.column_names])
    with pytest.raises(ValueError, match="outcomes cannot be keys"):  # the outcome's own history would leak it
        ceecore.fit(renamed, mapping=ceecore.ColumnMapping({"Fraud": "violation"}),
                    labels=ceecore.Labels("violation", history_keys=("Fraud",)))
    with pytest.raises(ValueError, match="or an extra history key; not \\['hts6', 'entry_type'\\]"):
        ceecore.Labels("violation", history_combined=(("hts6", "entry_type"),))  # entry_type is not a key


def test_a_mapping_declares_combined_history_keys(tmp_path):
    kcs = ceecore.ColumnMapping.preset("kcs")
    assert ("hts6", "origin", "Country of Departure", "Tax Type") in kcs.history_combined
    assert set(kcs.history_combined) <= set(kcs.then(ceecore.ColumnMapping()).history_combined)
    mapping = tmp_path / "map.toml"
    pq.write_table(TABLE.slice(0, 3_000), tmp_path / "train.parquet")
    for combined, message in (('"hts6"', "list of lists"), ('[["hts6", 6]]', "list of lists"),
                              ('[["hts6", "entry_type"]]', "an extra history key")):
        mapping.write_text(f'[history]\nkeys = []\ncombined = {combined}\n')
        result = CliRunner().invoke(cli, ["fit", str(tmp_path / "train.parquet"), "--mapping", str(mapping),
                                          "--labels", "violation", "-o", str(tmp_path / "m.arrow")])
        assert result.exit_code == 2 and message in result.output, result.output
    mapping.write_text('[history]\nkeys = ["entry_type"]\ncombined = [["hts6", "entry_type"]]\n')
    result = CliRunner().invoke(cli, ["fit", str(tmp_path / "train.parquet"), "--mapping", str(mapping),
                                      "--labels", "violation", "-o", str(tmp_path / "m.arrow"), "-q"])
    assert result.exit_code == 0, result.output
    assert "rate:hts6+entry_type" in ceecore.Model.load(tmp_path / "m.arrow").learned.trees.features


@needs_kcs
def test_kcs_learning_from_outcomes_on_a_time_split_of_train(tmp_path):
    """The KCS bar (precision at 5% >= .93, at 10% >= .85), met on the train file's own
    time split (benchmarks/kcs_split.py), where the kcs preset's keys were chosen: valid
    is not read."""
    results = measure(KCS_TRAIN, tmp_path)
    assert np.mean([r["P@5%"] for r in results]) >= 0.93 and np.mean([r["P@10%"] for r in results]) >= 0.85, results


def test_cli_fit_with_labels_then_score_and_evaluate(tmp_path):
    pq.write_table(TABLE.slice(0, 40_000), tmp_path / "train.parquet")
    pq.write_table(TABLE.slice(40_000), tmp_path / "new.parquet")
    runner = CliRunner()
    result = runner.invoke(cli, ["fit", str(tmp_path / "train.parquet"), "--labels", "violation", "--revenue",
                                 "revenue_recovered", "-o", str(tmp_path / "m.arrow")])
    assert result.exit_code == 0, result.output
    assert "learned from" in result.output
    result = runner.invoke(cli, ["score", str(tmp_path / "new.parquet"), "--model", str(tmp_path / "m.arrow"), "-o",
                                 str(tmp_path / "s.parquet"), "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["evaluate", str(tmp_path / "s.parquet"), "--revenue", "revenue_recovered", "-o",
                                 str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["overall"]["auc"] > 0.8
    assert runner.invoke(cli, ["fit", str(tmp_path / "train.parquet"), "--revenue", "x", "-o",
                               str(tmp_path / "n.arrow")]).exit_code == 2
    result = runner.invoke(cli, ["run", str(tmp_path / "new.parquet"), "--labels", "violation", "-o",
                                 str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    assert "history:importer" in pq.read_schema(tmp_path / "out" / "lines.parquet").names
