"""Learning from inspection outcomes: gradient-boosted trees, trained by scikit-learn,
scored by ceecore's own compiled kernel.

Training uses scikit-learn's HistGradientBoostingClassifier (the optional extra
``ceecore[learn]``); ceecore does not grow trees itself. The fitted trees are exported
to :class:`Trees` (flat node arrays, saved in the model file as JSON numbers, never
pickled) and scored by :func:`ceecore._kernels._trees.predict`, so scoring needs
neither scikit-learn nor pickle, and gives the same probabilities as the library's own
``predict_proba``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ceecore._checks import float_array, get, int_array
from ceecore._kernels._trees import check, predict

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_TREES", "TRAINING", "Learned", "Trees", "train"]

# How the trees are trained: 150 rounds at scikit-learn's default learning rate, a
# little L2, and no early stopping (which would hold out a random tenth of the lines:
# fewer lines to learn from, and a result that depends on the split).
TRAINING: dict[str, Any] = {"learning_rate": 0.1, "max_iter": 150, "max_leaf_nodes": 31, "min_samples_leaf": 20,
                            "l2_regularization": 1.0, "early_stopping": False, "random_state": 0}
# The most trees, nodes (all trees) and depth a model file may hold: scoring a line walks
# at most MAX_TREES * MAX_DEPTH nodes however the file was made (a forest at these bounds
# scores 3,000 lines in about 0.5 s). Training as above gives 150 trees of at most 61
# nodes (31 leaves), so depth at most 30 (20 on 2M generated lines): far inside.
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
        if len(roots) > MAX_TREES or len(nodes["feature"]) > MAX_NODES:
            raise ValueError(f"{where}: {len(roots)} trees of {len(nodes['feature'])} nodes: more than the "
                             f"{MAX_TREES} trees or {MAX_NODES} nodes a model may hold")
        arrays = {name: (float_array if name in ("threshold", "value") else int_array)(values, f"{where}: {name!r}")
                  for name, values in nodes.items()}
        missing_left = arrays["missing_left"]
        if ((missing_left < 0) | (missing_left > 1)).any():
            raise ValueError(f"{where}: missing_left must hold 0 or 1")
        trees = cls(tuple(features), float(get(doc, "baseline", "number", where)), roots, arrays["feature"],
                    arrays["threshold"], missing_left.astype(np.uint8), arrays["left"], arrays["right"],
                    arrays["value"])
        check(trees.feature, trees.threshold, trees.missing_left, trees.left, trees.right, trees.value, trees.roots,
              len(features), MAX_DEPTH)
        return trees


def train(X: np.ndarray, y: np.ndarray, features: list[str], params: dict[str, Any] | None = None,
          threads: int = 1) -> Trees:
    """Trees fitted to ``y`` (1 = violation) by scikit-learn, exported.

    scikit-learn trains on an OpenMP pool of its own, which ignores ``threads`` and, by
    default, spins while it waits: beside other busy threads or processes that made a
    12 s fit take minutes. So the pool is capped to ``threads`` (and, as ceecore sets
    on import unless the caller chose a policy, waits passively).
    """
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits
    except ImportError as exc:
        raise ValueError("learning from labels needs scikit-learn: pip install 'ceecore[learn]'") from exc
    if len(np.unique(y)) < 2:
        raise ValueError("the labelled lines hold only one outcome: cannot learn from them")
    X = np.array(X, np.float64)
    X[:, np.isnan(X).all(axis=0)] = 0.0  # never known here (the library cannot bin it): constant, never split on
    with threadpool_limits(limits=max(1, threads)):
        model = HistGradientBoostingClassifier(**{**TRAINING, **(params or {})}).fit(X, y)
    return export(model, features)


def export(model: Any, features: list[str]) -> Trees:
    """A fitted binary HistGradientBoostingClassifier (numeric features only) as :class:`Trees`."""
    if getattr(model, "n_trees_per_iteration_", 1) != 1:
        raise ValueError("only binary classifiers can be exported")
    parts, roots, base = [], [], 0
    for (predictor,) in model._predictors:  # one tree per boosting iteration
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("trees with categorical splits cannot be exported")
        roots.append(base)
        leaf = nodes["is_leaf"].astype(bool)
        # The library shrinks leaf values by the learning rate but keeps split nodes'
        # values unshrunk: shrink them too, so that value changes along a path (a line's
        # reasons) are on the leaves' scale.
        value = np.where(leaf, nodes["value"], nodes["value"] * model.learning_rate)
        parts.append((np.where(leaf, -1, nodes["feature_idx"]), nodes["num_threshold"], nodes["missing_go_to_left"],
                      np.where(leaf, -1, nodes["left"].astype(np.int64) + base),
                      np.where(leaf, -1, nodes["right"].astype(np.int64) + base), value))
        base += len(nodes)
    columns = [np.concatenate([p[i] for p in parts]) if parts else np.zeros(0) for i in range(6)]
    return Trees(tuple(features), float(np.ravel(model._baseline_prediction)[0]), np.asarray(roots, np.int64),
                 columns[0].astype(np.int64), columns[1].astype(np.float64), columns[2].astype(np.uint8),
                 columns[3].astype(np.int64), columns[4].astype(np.int64), columns[5].astype(np.float64))


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
