# cython: language_level=3
"""Scoring with exported gradient-boosted trees, without the GIL (and without the library
that trained them).

The trees are flat arrays of nodes (all trees end to end): a split sends a row left
when its feature is ``<= threshold``, and a missing value (NaN) the way
``missing_left`` says; a leaf has feature -1. A row's raw score is ``baseline`` plus
its leaf's value in each tree, added in tree order (as the training library adds them,
so the sums agree to the last bit). Each row's path also gives every feature's
contribution: the change of node value at each split on it (values along a path sum to
the leaf's), which explains a score.
"""

from libc.math cimport INFINITY, isfinite, isnan
from libc.stdint cimport int64_t, uint8_t

import numpy as np

cimport numpy as cnp

cnp.import_array()

cdef enum:
    BLOCK_ROWS = 256   # rows passed through one tree before the next


def check(const int64_t[::1] feature, const double[::1] threshold, const uint8_t[::1] missing_left,
          const int64_t[::1] left, const int64_t[::1] right, const double[::1] value, const int64_t[::1] roots,
          int64_t n_features, int64_t max_depth):
    """Refuses node arrays that are not a forest as :func:`predict` expects: trees end to
    end (tree t holds the nodes from ``roots[t]`` to the next root), each node but a
    root the child of exactly one split of its own tree and after it (so no cycle),
    splits on features below ``n_features`` with a threshold that is a number or +inf
    (the training library's split on missing values), leaves with feature -1 and no
    children, finite values, ``missing_left`` 0 or 1, no path deeper than ``max_depth``.
    Linear in the nodes: a hostile model is refused before a row walks it."""
    cdef int64_t n = feature.shape[0], n_trees = roots.shape[0], t, node, stop, child, k
    if (threshold.shape[0] != n or missing_left.shape[0] != n or left.shape[0] != n or right.shape[0] != n
            or value.shape[0] != n):
        raise ValueError("trees: node arrays of different lengths")
    if (n_trees == 0) != (n == 0) or (n_trees and roots[0] != 0):
        raise ValueError("trees: the first tree must start at node 0")
    depth_arr = np.full(n, -1, np.int64)  # -1: no parent seen yet
    cdef int64_t[::1] depth = depth_arr
    for t in range(n_trees):
        stop = roots[t + 1] if t + 1 < n_trees else n
        if not roots[t] < stop <= n:
            raise ValueError(f"trees: tree {t} has no nodes or its root is out of order")
        depth[roots[t]] = 0
        for node in range(roots[t], stop):
            if depth[node] < 0:
                raise ValueError(f"trees: node {node} of tree {t} is no split's child")
            if not isfinite(value[node]) or missing_left[node] > 1:
                raise ValueError(f"trees: node {node} has a value that is not finite or missing_left not 0 or 1")
            if feature[node] == -1:
                if left[node] != -1 or right[node] != -1:
                    raise ValueError(f"trees: leaf {node} has children")
                continue
            if not (0 <= feature[node] < n_features) or isnan(threshold[node]) or threshold[node] == -INFINITY:
                raise ValueError(f"trees: split {node} has a feature out of range or a NaN or -inf threshold")
            if depth[node] >= max_depth:
                raise ValueError(f"trees: tree {t} is deeper than {max_depth}")
            for k in range(2):
                child = left[node] if k == 0 else right[node]
                if not (node < child < stop) or depth[child] >= 0:
                    raise ValueError(f"trees: split {node} has a child out of its tree or shared (children "
                                     "follow their parent, in its tree, one parent each)")
                depth[child] = depth[node] + 1


def predict(const double[:, ::1] X, const int64_t[::1] feature, const double[::1] threshold,
            const uint8_t[::1] missing_left, const int64_t[::1] left, const int64_t[::1] right,
            const double[::1] value, const int64_t[::1] roots, double baseline, bint contributions=False):
    """Raw scores of the rows of ``X`` (and, with ``contributions``, an (n, features) matrix
    of each feature's part in them)."""
    cdef int64_t n = X.shape[0], m = X.shape[1], i, t, node, f, n_nodes = feature.shape[0]
    cdef int64_t n_trees = roots.shape[0]
    for t in range(n_trees):
        if roots[t] < 0 or roots[t] >= n_nodes:
            raise ValueError("tree roots outside the node arrays")
    if (threshold.shape[0] != n_nodes or missing_left.shape[0] != n_nodes or left.shape[0] != n_nodes
            or right.shape[0] != n_nodes or value.shape[0] != n_nodes):
        raise ValueError("node arrays of different lengths")
    for node in range(n_nodes):
        if feature[node] >= m or (feature[node] >= 0 and not (
                node < left[node] < n_nodes and node < right[node] < n_nodes)):
            raise ValueError("a split node with a feature or child out of range (children follow their parent)")
    raw_arr = np.empty(n, np.float64)
    parts_arr = np.zeros((n if contributions else 0, m), np.float64)
    cdef double[::1] raw = raw_arr
    cdef double[:, ::1] parts = parts_arr
    cdef double x
    cdef int64_t child, start, stop
    cdef bint go_left
    with nogil:
        for i in range(n):
            raw[i] = baseline
        # Tree by tree over blocks of rows: a tree's nodes stay in cache while a block
        # passes through it; each row still adds its trees' values in tree order.
        start = 0
        while start < n:
            stop = min(start + BLOCK_ROWS, n)
            for t in range(n_trees):
                for i in range(start, stop):
                    node = roots[t]
                    while feature[node] >= 0:
                        f = feature[node]
                        x = X[i, f]
                        # Without branches: NaN compares false both ways.
                        go_left = (x <= threshold[node]) | (isnan(x) & (missing_left[node] != 0))
                        child = left[node] if go_left else right[node]
                        if contributions:
                            parts[i, f] += value[child] - value[node]
                        node = child
                    raw[i] = raw[i] + value[node]
            start = stop
    return (raw_arr, parts_arr) if contributions else raw_arr
