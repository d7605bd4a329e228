# cython: language_level=3
"""Fitting the baselines: every tally a batch touches, updated in one pass per line.

The keys of every enabled tally are built from each line's parsed fields
(``_keys.pxd``) and folded in, without the GIL and without temporaries. Tallies are
folded in parallel (OpenMP), one thread per tally at a time; each goes through the
lines a block at a time, the block's keys first, then each line with the slot of a
line a few ahead prefetched (one table at a time keeps the prefetches few enough to land).
Tallies are passed in :data:`FIT_TALLIES` order, ``None`` for those not built.
"""

from libc.math cimport floor, isfinite, log, rint
from libc.stdint cimport int64_t, uint64_t
from cython.parallel cimport prange

from ceecore._kernels._keys cimport (
    ap_day_key, ap_key, acct_port_key, claim_key, cls_group_key, cls_hts_key, cls_hts_port_key, cls_port_key,
    dearest_pack, duty_key, earliest_key, month_key, origin_key, port_uv_key, uv_group, ANY_ORIGIN,
)
from ceecore._kernels._tally cimport Tally, TallyTable, tally_add, tally_prefetch

# The tallies this kernel updates, in the order they are passed.
FIT_TALLIES = ("uv_hist", "uv_moments", "ap_uv", "duty", "origin_lines", "claims", "ap_days", "ap_earliest",
               "cls_group_max", "cls_port_max", "cls_hts", "acct_port", "acct", "acct_month", "cls_hts_lines",
               "port_uv")

cdef enum:
    T_UV_HIST, T_UV_MOMENTS, T_AP_UV, T_DUTY, T_ORIGIN, T_CLAIMS, T_AP_DAYS, T_AP_EARLIEST
    T_CLS_GROUP, T_CLS_PORT, T_CLS_HTS, T_ACCT_PORT, T_ACCT, T_ACCT_MONTH, T_CLS_HTS_LINES
    T_PORT_UV
    N_TALLIES

cdef enum:
    BLOCK = 256
    AHEAD = 8           # lines between a slot's prefetch and its update

assert len(FIT_TALLIES) == N_TALLIES


ctypedef struct Lines:
    const uint64_t* importer
    const uint64_t* maker
    const int64_t* day
    const int64_t* country
    const int64_t* port
    const int64_t* value_cents
    const int64_t* duty_cents
    const int64_t* rate_bp
    const int64_t* hts10
    const int64_t* hts6
    const int64_t* hts4
    const int64_t* spi
    const double* log_uv
    const int64_t* basis


cdef inline void line_keys(const Lines* f, int64_t i, int which, uint64_t* k) noexcept nogil:
    """The key line ``i`` folds into tally ``which`` (``k[0]``), and its second key
    (origin_lines, claims: the all-origins / all-programs key; cls_hts: its group key)."""
    cdef int64_t country = f.country[i], hts10 = f.hts10[i]
    cdef uint64_t importer = f.importer[i], maker = f.maker[i]
    if which == T_UV_HIST or which == T_UV_MOMENTS:
        k[0] = uv_group(0, f.basis[i], hts10, country)
    elif which == T_AP_UV:
        k[0] = ap_key(importer, hts10, country, f.basis[i])
    elif which == T_DUTY:
        k[0] = duty_key(f.spi[i] > 0, hts10, country)
    elif which == T_ORIGIN:
        k[0], k[1] = origin_key(f.hts6[i], country), origin_key(f.hts6[i], ANY_ORIGIN)
    elif which == T_CLAIMS:
        k[0], k[1] = claim_key(country, f.spi[i]), claim_key(country, 0)
    elif which == T_AP_DAYS:
        k[0] = ap_day_key(importer, hts10, country)
    elif which == T_AP_EARLIEST:
        k[0] = earliest_key(importer, hts10)
    elif which == T_CLS_GROUP:
        k[0] = cls_group_key(maker, f.hts4[i])
    elif which == T_CLS_PORT:
        k[0] = cls_port_key(maker, f.hts4[i], f.port[i])
    elif which == T_CLS_HTS:
        k[0], k[1] = cls_hts_key(maker, hts10), cls_group_key(maker, f.hts4[i])
    elif which == T_ACCT_PORT:
        k[0] = acct_port_key(importer, f.port[i])
    elif which == T_ACCT:
        k[0] = importer
    elif which == T_ACCT_MONTH:
        k[0] = month_key(importer, f.day[i])
    elif which == T_CLS_HTS_LINES:
        k[0] = cls_hts_port_key(maker, hts10, f.port[i])
    else:
        k[0] = port_uv_key(importer, hts10, country, f.basis[i], f.port[i])


cdef inline int fold_line(TallyTable* t, int which, const Lines* f, int64_t i, const uint64_t* k, double log_low,
                          double bin_width, int64_t n_bins) noexcept nogil:
    """Folds line ``i`` into tally ``which`` under its keys ``k``: 0, or the tally's error."""
    cdef int64_t v[6]
    cdef int64_t one = 1, day = f.day[i]
    cdef double x = f.log_uv[i], b, log_value
    cdef int rc
    if which == T_PORT_UV:  # lines with a unit value: lines, sum, the importer, (unit-value group, port) packed
        if not isfinite(x):
            return 0
        v[0], v[1], v[2] = 1, <int64_t>rint(x * 1e6), <int64_t>f.importer[i]
        v[3] = <int64_t>(uv_group(0, f.basis[i], f.hts10[i], f.country[i]) | ((<uint64_t>f.port[i] & 0x3FFF) << 50))
        return tally_add(t, k[0], v)
    if which <= T_AP_UV:  # the unit-value tallies: lines with a unit value
        if not isfinite(x):
            return 0
        if which == T_UV_HIST:
            b = floor((x - log_low) / bin_width)
            b = 0.0 if b < 0 else (<double>(n_bins - 1) if b > n_bins - 1 else b)
            return tally_add(t, (k[0] << 10) | <uint64_t>b, &one)
        v[0], v[1], v[2] = 1, <int64_t>rint(x * 1e6), <int64_t>rint(x * x * 1e6)
        return tally_add(t, k[0], v)
    if which == T_DUTY:
        v[0], v[1] = f.value_cents[i], f.duty_cents[i]
        return tally_add(t, k[0], v)
    if which == T_ORIGIN:
        rc = tally_add(t, k[0], &one)
        return rc if rc != 0 else tally_add(t, k[1], &one)
    if which == T_CLAIMS:
        rc = tally_add(t, k[0], &one) if f.spi[i] > 0 else 0
        return rc if rc != 0 else tally_add(t, k[1], &one)
    if which == T_AP_DAYS or which == T_ACCT:
        v[0], v[1], v[2] = day, day, 1
        if which == T_ACCT:  # and its lines' values: lines with a value, sum and sum of squares of log dollars
            log_value = log(f.value_cents[i] / 100.0) if f.value_cents[i] > 0 else 0.0
            v[3] = 1 if f.value_cents[i] > 0 else 0
            v[4], v[5] = <int64_t>rint(log_value * 1e6), <int64_t>rint(log_value * log_value * 1e6)
        return tally_add(t, k[0], v)
    if which == T_AP_EARLIEST:
        v[0] = day * 1024 + f.country[i]
        return tally_add(t, k[0], v)
    if which <= T_CLS_HTS:  # the classification tallies, lines with a manufacturer: (rate or group key, lines)
        if f.maker[i] == 0:
            return 0
        if which == T_CLS_GROUP:  # the heading's dearest line: its rate and HTS number, packed
            v[0] = dearest_pack(f.rate_bp[i], f.hts10[i])
        else:
            v[0] = <int64_t>k[1] if which == T_CLS_HTS else f.rate_bp[i]
        v[1] = 1
        return tally_add(t, k[0], v)
    if which == T_CLS_HTS_LINES:  # lines of a manufacturer's number at the port
        return tally_add(t, k[0], &one) if f.maker[i] != 0 else 0
    v[0], v[1] = 1, <int64_t>f.importer[i]  # acct_port, acct_month: lines, and the importer they belong to
    return tally_add(t, k[0], v)


cdef int fit_tally(TallyTable* t, int which, const Lines* f, int64_t n, double log_low, double bin_width,
                   int64_t n_bins) noexcept nogil:
    """Folds every line into tally ``which``, a block at a time: the block's keys first,
    then each line with the slot of the line ``AHEAD`` of it prefetched."""
    cdef uint64_t keys[BLOCK][2]
    cdef int64_t start = 0, i, m
    cdef int rc
    while start < n:
        m = min(BLOCK, n - start)
        for i in range(m):
            line_keys(f, start + i, which, keys[i])
        for i in range(min(AHEAD, m)):
            tally_prefetch(t, keys[i][0])
        for i in range(m):
            if i + AHEAD < m:
                tally_prefetch(t, keys[i + AHEAD][0])
            rc = fold_line(t, which, f, start + i, keys[i], log_low, bin_width, n_bins)
            if rc != 0:
                return rc
        start += m
    return 0


def fit_lines(tuple tallies, const uint64_t[::1] importer, const uint64_t[::1] maker, const int64_t[::1] day,
              const int64_t[::1] country, const int64_t[::1] port, const int64_t[::1] value_cents,
              const int64_t[::1] duty_cents, const int64_t[::1] rate_bp, const int64_t[::1] hts10,
              const int64_t[::1] hts6, const int64_t[::1] hts4, const int64_t[::1] spi, const double[::1] log_uv,
              const int64_t[::1] basis, double log_low, double bin_width, int64_t n_bins, int threads=1):
    """Folds the lines (one array per parsed field, all of one length) into ``tallies``,
    the tallies shared among ``threads`` threads.

    Sums saturate at the int64 limits (see ``_tally.pxd``), so any lines the contract
    accepts fold in.
    """
    if len(tallies) != N_TALLIES or tallies[T_ACCT] is None:
        raise ValueError(f"fit_lines takes {N_TALLIES} tallies in FIT_TALLIES order, acct among them")
    if any(tally is not None and not isinstance(tally, Tally) for tally in tallies):
        raise TypeError("fit_lines takes Tally objects (or None)")
    cdef int64_t n = importer.shape[0]
    lengths = (maker.shape[0], day.shape[0], country.shape[0], port.shape[0], value_cents.shape[0],
               duty_cents.shape[0], rate_bp.shape[0], hts10.shape[0], hts6.shape[0], hts4.shape[0], spi.shape[0],
               log_uv.shape[0], basis.shape[0])
    if any(length != n for length in lengths):
        raise ValueError("fit_lines takes fields of one length")
    cdef TallyTable* t[N_TALLIES]
    cdef int j
    for j in range(N_TALLIES):
        t[j] = &(<Tally>tallies[j]).t if tallies[j] is not None else NULL
    if n == 0:
        return
    cdef Lines f
    f.importer, f.maker, f.day, f.country, f.port = &importer[0], &maker[0], &day[0], &country[0], &port[0]
    f.value_cents, f.duty_cents, f.rate_bp = &value_cents[0], &duty_cents[0], &rate_bp[0]
    f.hts10, f.hts6, f.hts4, f.spi, f.log_uv, f.basis = &hts10[0], &hts6[0], &hts4[0], &spi[0], &log_uv[0], &basis[0]
    cdef int rc[N_TALLIES]
    cdef int worst = 0
    # Tallies are independent: each is folded by one thread, so the result does not
    # depend on the thread count, and one state serves every thread (nothing to merge).
    for j in prange(N_TALLIES, nogil=True, schedule="dynamic", num_threads=max(1, threads)):
        rc[j] = fit_tally(t[j], j, &f, n, log_low, bin_width, n_bins) if t[j] != NULL else 0
    for j in range(N_TALLIES):
        if rc[j] != 0 and worst == 0:
            worst = rc[j]
    if worst != 0:
        raise MemoryError("baselines: out of memory (the lines folded so far are kept)")
