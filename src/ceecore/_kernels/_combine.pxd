# Combining one row of weighted indicator contributions into a score and reasons, as an
# inline function shared by the combining kernel (_scores.pyx) and the fused scoring
# kernel (_indicators.pyx).
from libc.stdint cimport int64_t


cdef inline double combine_row(const double* c, int64_t m, int64_t k, int64_t* top, int64_t* fired) noexcept nogil:
    """The score ``1 - prod(1 - c)`` (multiplied left to right) of ``m`` contributions;
    ``top`` gets the columns of the ``k`` largest (ties: the lower column first) and
    ``fired`` how many of those are above 0."""
    cdef double keep = 1.0, prev_value = 0.0
    cdef int64_t j, r, best, prev_index = -1
    for j in range(m):
        keep = keep * (1.0 - c[j])
    fired[0] = 0
    # The r-th pick is the largest contribution ranked after the (r-1)-th pick in
    # (value descending, column ascending) order.
    for r in range(k):
        best = -1
        for j in range(m):
            if prev_index >= 0 and (c[j] > prev_value or (c[j] == prev_value and j <= prev_index)):
                continue
            if best < 0 or c[j] > c[best]:
                best = j
        top[r] = best
        if c[best] > 0:
            fired[0] += 1
        prev_value = c[best]
        prev_index = best
    return 1.0 - keep
