"""Learning from inspection outcomes: gradient-boosted trees, trained by LightGBM,
scored by ceecore's own compiled kernel.

Training uses LightGBM (the optional extra ``ceecore[learn]``); ceecore does not grow
trees itself. The fitted trees are read from LightGBM's documented JSON model dump
(``Booster.dump_model()``, a public interface: no private attribute is read), exported to
:class:`Trees` (flat node arrays, saved in the model file as JSON numbers, never pickled)
and scored by :func:`ceecore._kernels._trees.predict`, so scoring needs neither LightGBM
nor pickle, and gives the same probabilities as the library's own ``predict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ceecore._checks import float_array, get, int_array
from ceecore._kernels._trees import check, predict

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_TREES", "TRAINING", "Learned", "Trees", "train"]

# How the trees are trained (LightGBM's parameter names): 150 rounds at learning rate 0.1,
# leaves of 31 and 20 lines at most and least, a little L2, each tree on a random half of
# the features, no early stopping (which would hold out lines: fewer to learn from, and
# a result that depends on the split), and deterministic (the same lines give the same
# trees, to the bit). Weighed on KCS train's own time split (benchmarks/kcs_split.py,
# the kcs preset's keys, three seeds): precision@5% / @10% .957 / .881 as set; all
# features per tree, 300 rounds at 0.05, 15 or 63 leaves, 50 lines a leaf, L2 10 or
# bagging 0.8 each gave .951-.960 / .879-.882, within the noise, so none was taken.
TRAINING: dict[str, Any] = {"objective": "binary", "learning_rate": 0.1, "num_iterations": 150, "num_leaves": 31,
                            "min_data_in_leaf": 20, "lambda_l2": 1.0, "feature_fraction": 0.5, "seed": 0,
                            "deterministic": True, "force_col_wise": True}
# The most trees, nodes (all trees) and depth a model file may hold: scoring a line walks
# at most MAX_TREES * MAX_DEPTH nodes however the file was made (a forest at these bounds
# scores 3,000 lines in about 0.5 s). Training as above gives 150 trees of at most 61
# nodes (31 leaves), so depth at most 30: far inside.
MAX_TREES = 1024
MAX_NODES = 1 << 20
MAX_DEPTH = 64
# The node arrays of :meth:`Trees.to_dict`, all of one length.
NODE_ARRAYS = ("feature", "threshold", "missing_left", "left", "right", "value")


@dataclass(frozen=True)
class Trees:
    """A boosted ensemble for binary outcomes: ``P(violation) = sigmoid(raw)``."""

    features: tuple[str, ...]
    baseline: float
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray

    def raw(self, X: np.ndarray, contributions: bool = False) -> Any:
        """Raw scores (log-odds) per row of ``X`` (columns in :attr:`features` order), and
        with ``contributions`` each feature's part in them."""
        X = np.ascontiguousarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"expected {len(self.features)} feature columns, got {X.shape}")
        return predict(X, self.feature, self.threshold, self.missing_left, self.left, self.right, self.value,
                       self.roots, self.baseline, contributions)

    def probability(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.raw(X)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able numbers (floats round-trip exactly through JSON)."""
        return {"features": list(self.features), "baseline": self.baseline, "roots": self.roots.tolist(),
                "feature": self.feature.tolist(), "threshold": self.threshold.tolist(),
                "missing_left": self.missing_left.tolist(), "left": self.left.tolist(), "right": self.right.tolist(),
                "value": self.value.tolist()}

    @classmethod
    def from_dict(cls, doc: Any, where: str = "trees") -> Trees:
        """The trees of :meth:`to_dict` (untrusted JSON): every field checked, the forest's
        shape and size bounded (:data:`MAX_TREES`, :data:`MAX_NODES`, :data:`MAX_DEPTH`)."""
        features = get(doc, "features", "list", where)
        if not all(isinstance(name, str) for name in features) or len(set(features)) != len(features):
            raise ValueError(f"{where}: 'features' must be distinct names")
        roots = int_array(get(doc, "roots", "list", where), f"{where}: 'roots'")
        nodes = {name: get(doc, name, "list", where) for name in NODE_ARRAYS}
        if len({len(values) for values in nodes.values()}) != 1:
            raise ValueError(f"{where}: node arrays of different lengths")
        _bound(len(roots), len(nodes["feature"]), where)  # before the lists become arrays
        arrays = {name: (float_array if name in ("threshold", "value") else int_array)(values, f"{where}: {name!r}")
                  for name, values in nodes.items()}
        missing_left = arrays["missing_left"]
        if ((missing_left < 0) | (missing_left > 1)).any():
            raise ValueError(f"{where}: missing_left must hold 0 or 1")
        return cls(tuple(features), float(get(doc, "baseline", "number", where)), roots, arrays["feature"],
                   arrays["threshold"], missing_left.astype(np.uint8), arrays["left"], arrays["right"],
                   arrays["value"]).checked(where)

    def checked(self, where: str = "trees") -> Trees:
        """These trees, if a model file may hold them (:data:`MAX_TREES`, :data:`MAX_NODES`,
        :data:`MAX_DEPTH`) and they are a forest the kernel can walk; else a ValueError."""
        _bound(len(self.roots), len(self.feature), where)
        check(self.feature, self.threshold, self.missing_left, self.left, self.right, self.value, self.roots,
              len(self.features), MAX_DEPTH)
        return self


def _bound(trees: int, nodes: int, where: str) -> None:
    if trees > MAX_TREES or nodes > MAX_NODES:
        raise ValueError(f"{where}: {trees} trees of {nodes} nodes: more than the {MAX_TREES} trees or {MAX_NODES} "
                         "nodes a model may hold")


def train(X: np.ndarray, y: np.ndarray, features: list[str], params: dict[str, Any] | None = None,
          threads: int = 1) -> Trees:
    """Trees fitted to ``y`` (1 = violation) by LightGBM, exported.

    LightGBM trains on an OpenMP pool of ``threads`` threads (its own ``num_threads``;
    ceecore sets on import, unless the caller chose a policy, that idle threads wait
    passively rather than spin, which beside other busy processes made a 12 s fit take
    minutes).
    """
    try:
        import lightgbm
    except ImportError as exc:
        raise ValueError("learning from labels needs LightGBM: pip install 'ceecore[learn]'") from exc
    if len(np.unique(y)) < 2:
        raise ValueError("the labelled lines hold only one outcome: cannot learn from them")
    settings = {**TRAINING, **(params or {}), "num_threads": max(1, threads), "verbosity": -1}
    data = lightgbm.Dataset(np.asarray(X, np.float64), np.asarray(y, np.float64), free_raw_data=True)
    return export(lightgbm.train(settings, data).dump_model(), features)


def export(dump: dict[str, Any], features: list[str]) -> Trees:
    """The trees of a binary LightGBM model, from its JSON dump (``Booster.dump_model()``),
    as :class:`Trees`: each tree's nodes in preorder (children after their parent).

    A split sends ``x <= threshold`` left; a missing value goes ``default_left`` where the
    split learned a way for it (missing type "NaN"), else LightGBM reads it as 0 (type
    "None"). Leaves keep their values to the bit, so the sums agree with LightGBM's; a
    split's value is LightGBM's ``internal_value`` (the node's output, shrunk like the
    leaves'), so that value changes along a path (a line's reasons) are on the leaves'
    scale. Anything else (categorical or zero-as-missing splits, linear trees, several
    classes, another objective), or a forest a model file may not hold, is refused.
    """
    if dump.get("num_tree_per_iteration", 1) != 1 or dump.get("num_class", 1) != 1:
        raise ValueError("only binary classifiers can be exported")
    if str(dump.get("objective", "")).split() != ["binary", "sigmoid:1"] or dump.get("average_output"):
        raise ValueError(f"only the 'binary' objective (sigmoid 1) can be exported, not {dump.get('objective')!r}")
    if dump.get("max_feature_idx", -1) >= len(features):
        raise ValueError(f"the trees split on {dump['max_feature_idx'] + 1} features, {len(features)} named")
    columns: dict[str, list[Any]] = {name: [] for name in NODE_ARRAYS}
    roots = []
    for tree in dump.get("tree_info", []):
        roots.append(len(columns["feature"]))
        pending = [(tree["tree_structure"], -1, 0)]  # (node, parent index, 0 = left / 1 = right child)
        while pending:
            node, parent, side = pending.pop()
            index = len(columns["feature"])
            if parent >= 0:
                columns["right" if side else "left"][parent] = index
            if "leaf_value" in node:
                if node.get("leaf_coeff"):
                    raise ValueError("linear trees cannot be exported")
                for name, v in zip(NODE_ARRAYS, (-1, 0.0, 0, -1, -1, node["leaf_value"])):
                    columns[name].append(v)
                continue
            if node["decision_type"] != "<=" or node["missing_type"] not in ("NaN", "None"):
                raise ValueError(f"a split of type {node['decision_type']!r} (missing {node['missing_type']!r}) "
                                 "cannot be exported: numeric splits only")
            threshold = float(node["threshold"])
            missing_left = node["default_left"] if node["missing_type"] == "NaN" else 0.0 <= threshold
            for name, v in zip(NODE_ARRAYS, (node["split_feature"], threshold, int(bool(missing_left)), -1, -1,
                                             node["internal_value"])):
                columns[name].append(v)
            pending += [(node["right_child"], index, 1), (node["left_child"], index, 0)]  # left first
    return Trees(tuple(features), 0.0, np.asarray(roots, np.int64), np.asarray(columns["feature"], np.int64),
                 np.asarray(columns["threshold"], np.float64), np.asarray(columns["missing_left"], np.uint8),
                 np.asarray(columns["left"], np.int64), np.asarray(columns["right"], np.int64),
                 np.asarray(columns["value"], np.float64)).checked()


@dataclass(frozen=True)
class Learned:
    """What a model learned from outcomes: the trees, and what they were trained on."""

    label: str
    revenue: str | None
    trees: Trees
    training: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "revenue": self.revenue, "trees": self.trees.to_dict(),
                "training": self.training}

    @classmethod
    def from_dict(cls, doc: Any, where: str = "learned") -> Learned:
        """What :meth:`to_dict` wrote (untrusted JSON), every field checked."""
        training = get(doc, "training", "object", where, default={})
        lines = get(training, "lines", "int", f"{where}: training", default=0, low=0)
        get(training, "violations", "int", f"{where}: training", default=0, low=0, high=lines)
        get(training, "params", "object", f"{where}: training", default={})
        get(training, "prior", "number", f"{where}: training", default=0, low=0)
        return cls(get(doc, "label", "text", where), get(doc, "revenue", "text", where, default=None, optional=True),
                   Trees.from_dict(get(doc, "trees", "object", where), f"{where}: trees"), dict(training))
