"""False discovery rate control shared by the jobs that test many comparisons at once
(:mod:`ceecore.uniformity`, :mod:`ceecore.trends`)."""

from __future__ import annotations

import numpy as np

__all__ = ["benjamini_hochberg"]


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of ``p``; NaN (not tested) stays
    NaN and does not count among the comparisons."""
    p = np.asarray(p, np.float64)
    q = np.full(len(p), np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if len(tested) == 0:
        return q
    order = tested[np.argsort(p[tested], kind="stable")]
    k = len(order)
    adjusted = p[order] * k / np.arange(1, k + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(adjusted[::-1])[::-1])
    return q
