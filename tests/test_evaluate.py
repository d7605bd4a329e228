"""ceecore evaluate: the detection metrics against hand-computed cases and a brute-force AUC."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import ceecore
from ceecore.evaluate import auc, metrics
from ceecore.schema import ContractError
from ceecore_cli.main import cli


def test_hand_computed_precision_recall_and_revenue():
    # Ten lines, scored 0.9 down to 0.0; violations at ranks 1, 2, 4 and 7.
    scores = np.linspace(0.9, 0.0, 10)
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0], float)
    revenue = np.array([10, 30, 0, 20, 0, 0, 40, 0, 0, 0], float)
    m = metrics(scores, y, revenue, shares=(0.1, 0.2, 0.5))
    assert m["lines"] == 10 and m["violations"] == 4 and m["violation_rate"] == 0.4
    assert m["10%"] == {"lines": 1, "precision": 1.0, "recall": 0.25, "revenue": 0.1}
    assert m["20%"] == {"lines": 2, "precision": 1.0, "recall": 0.5, "revenue": 0.4}
    assert m["50%"] == {"lines": 5, "precision": 0.6, "recall": 0.75, "revenue": 0.6}
    # Pairs (violation, clean) ranked right: 6 + 6 + 5 + 3 = 20 of 4 * 6 = 24.
    assert m["auc"] == pytest.approx(20 / 24)
    assert m["random"]["10%"] == {"precision": 0.4, "recall": 0.1, "revenue": 0.1}


def test_ties_go_to_the_earlier_line_and_tiny_shares_take_one_line():
    m = metrics(np.zeros(4), np.array([0, 1, 1, 1], float), shares=(0.01, 0.5))
    assert m["1%"]["lines"] == 1 and m["1%"]["precision"] == 0.0  # the first line, a clean one
    assert m["50%"]["precision"] == 0.5
    assert m["auc"] == 0.5  # all tied: a half per pair


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=1, max_size=60))
def test_auc_matches_counting_every_pair(rows):
    scores = np.array([r[0] for r in rows], float)
    y = np.array([r[1] for r in rows], float)
    pos, neg = scores[y == 1], scores[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        assert auc(scores, y) is None
        return
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    assert auc(scores, y) == pytest.approx(wins / (len(pos) * len(neg)))


def test_unlabelled_lines_are_left_out_and_groups_measured(tmp_path):
    table = pa.table({
        "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        "violation": [True, None, False, True, None, False],
        "center": ["001", "001", "002", "002", None, "002"],
    })
    report = ceecore.evaluate(table)
    assert report["lines"] == 4 and report["unlabelled"] == 2
    assert report["overall"]["violations"] == 2
    assert set(report["groups"]) == {"001", "002"}  # the unlabelled line without a Center is gone too
    assert report["groups"]["001"]["lines"] == 1 and report["groups"]["002"]["auc"] == 0.5


def test_a_label_on_a_line_not_inspected_is_no_outcome():
    table = pa.table({"score": [0.9, 0.8, 0.1], "violation": [True, False, False], "inspected": [True, False, True]})
    report = ceecore.evaluate(table, by=None)
    assert report["lines"] == 2 and report["unlabelled"] == 1 and report["overall"]["auc"] == 1.0


def test_csv_with_text_labels_and_clear_errors(tmp_path):
    path = tmp_path / "scored.csv"
    pacsv.write_csv(pa.table({"score": [0.2, 0.9, 0.5], "violation": ["no", "yes", ""], "center": ["001"] * 3}), path)
    report = ceecore.evaluate(str(path))
    assert report["lines"] == 2 and report["overall"]["auc"] == 1.0
    with pytest.raises(ContractError, match="no column 'revenue_recovered'"):
        ceecore.evaluate(str(path), revenue="revenue_recovered")
    bad = tmp_path / "bad.csv"
    pacsv.write_csv(pa.table({"score": [0.2, 0.9], "violation": ["no", "maybe"]}), bad)
    with pytest.raises(ContractError, match="do not parse"):
        ceecore.evaluate(str(bad))


def test_cli_on_a_scored_run(tmp_path):
    table = ceecore.synth.generate_table(lines=30_000, seed=3)
    pq.write_table(table, tmp_path / "lines.parquet")
    assert CliRunner().invoke(cli, ["run", str(tmp_path / "lines.parquet"), "-o", str(tmp_path / "out"), "-q"]).exit_code == 0
    report_path = tmp_path / "eval.json"
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "out" / "lines.parquet"), "--revenue",
                                      "revenue_recovered", "-o", str(report_path)])
    assert result.exit_code == 0, result.output
    assert "P@5%" in result.output and "random" in result.output
    report = json.loads(report_path.read_text())
    inspected = table.filter(table.column("inspected"))
    assert report["lines"] == inspected.num_rows
    assert report["overall"]["violations"] == sum(inspected.column("violation").to_pylist())
    assert report["overall"]["auc"] > 0.8  # the unsupervised scores already rank violations high
    assert len(report["groups"]) == 10


def test_group_names_from_the_scored_file_cannot_drive_the_terminal(tmp_path):
    """Values of the --by column are data from outside: printed with their control
    characters escaped (a newline broke the table; an escape sequence reached the terminal)."""
    pq.write_table(pa.table({"score": [0.1, 0.2, 0.3, 0.4], "violation": [True, False, True, False],
                             "center": ["001", "a\nb", "\x1b[31mred", "\x07\x9b"]}), tmp_path / "s.parquet")
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "s.parquet"), "-o", str(tmp_path / "e.json")],
                                color=True)  # (else click strips escape sequences itself)
    assert result.exit_code == 0, result.output
    assert not any(c in result.output for c in "\x1b\x07\x9b"), result.output
    assert "center a\\nb " in result.output and "center \\x1b[31mred " in result.output
    assert json.loads((tmp_path / "e.json").read_text())["groups"]["a\nb"]["lines"] == 1  # the report keeps them


def test_grouping_by_a_column_of_lists_is_a_clear_error(tmp_path):
    """(Found by the adversarial sweep: ``--by reasons`` gave a traceback.)"""
    pq.write_table(pa.table({"score": [0.1, 0.9], "violation": [True, False],
                             "reasons": [["origin_rare"], []]}), tmp_path / "s.parquet")
    with pytest.raises(ContractError, match="cannot group by a column of type list"):
        ceecore.evaluate(tmp_path / "s.parquet", by="reasons")
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "s.parquet"), "-o", str(tmp_path / "e.json"),
                                      "--by", "reasons"])
    assert result.exit_code == 2 and result.output.startswith("error: ") and result.output.count("\n") == 1
    assert not (tmp_path / "e.json").exists()
