# cython: language_level=3
"""Combining indicator strengths into scores and reasons, one pass per row, without the GIL.

For each row of weighted contributions ``c`` (weight * strength, each in [0, 1]):
the score ``1 - prod(1 - c)`` (multiplied left to right), the columns of the ``k``
largest contributions (ties: the lower column first) and how many of those are above 0.
"""

from libc.stdint cimport int64_t

import numpy as np

cimport numpy as cnp

from ceecore._kernels._combine cimport combine_row

cnp.import_array()


def combine(const double[:, ::1] contribution, int64_t k):
    """``(score, top, fired)`` per row of ``contribution`` (see the module docstring)."""
    cdef int64_t n = contribution.shape[0], m = contribution.shape[1], i
    k = max(0, min(k, m))
    score_arr = np.empty(n, np.float64)
    top_arr = np.zeros((n, k), np.int64)
    fired_arr = np.zeros(n, np.int64)
    cdef double[::1] score = score_arr
    cdef int64_t[:, ::1] top = top_arr
    cdef int64_t[::1] fired = fired_arr
    if m == 0:
        score_arr[:] = 0.0
        return score_arr, top_arr, fired_arr
    with nogil:
        for i in range(n):
            score[i] = combine_row(&contribution[i, 0], m, k, &top[i, 0] if k else NULL, &fired[i])
    return score_arr, top_arr, fired_arr
