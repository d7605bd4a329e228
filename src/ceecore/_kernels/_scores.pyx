# cython: language_level=3
"""Combining indicator strengths into scores and reasons, one pass per row, without the GIL.

For each row of weighted contributions ``c`` (weight * strength, each in [0, 1]):
the score ``1 - prod(1 - c)`` (multiplied left to right), the columns of the ``k``
largest contributions (ties: the lower column first) and how many of those are above 0.
"""

from libc.stdint cimport int64_t

import numpy as np

cimport numpy as cnp

cnp.import_array()


def combine(const double[:, ::1] contribution, int64_t k):
    """``(score, top, fired)`` per row of ``contribution`` (see the module docstring)."""
    cdef int64_t n = contribution.shape[0], m = contribution.shape[1], i, j, r, best
    k = max(0, min(k, m))
    score_arr = np.empty(n, np.float64)
    top_arr = np.zeros((n, k), np.int64)
    fired_arr = np.zeros(n, np.int64)
    cdef double[::1] score = score_arr
    cdef int64_t[:, ::1] top = top_arr
    cdef int64_t[::1] fired = fired_arr
    cdef double keep, c, prev_value
    cdef int64_t prev_index
    with nogil:
        for i in range(n):
            keep = 1.0
            for j in range(m):
                keep = keep * (1.0 - contribution[i, j])
            score[i] = 1.0 - keep
            # The r-th pick is the largest contribution ranked after the (r-1)-th pick
            # in (value descending, column ascending) order.
            prev_value = 0.0
            prev_index = -1
            for r in range(k):
                best = -1
                for j in range(m):
                    c = contribution[i, j]
                    if prev_index >= 0 and (c > prev_value or (c == prev_value and j <= prev_index)):
                        continue
                    if best < 0 or c > contribution[i, best]:
                        best = j
                top[i, r] = best
                if contribution[i, best] > 0:
                    fired[i] += 1
                prev_value = contribution[i, best]
                prev_index = best
    return score_arr, top_arr, fired_arr
