# cython: language_level=3
"""The period views' folds, each one compiled pass per batch without the GIL: the
trends' tallies (:func:`fold_trends`, for ``ceecore.trends.Trends``) and the uniformity
state (:class:`KeyFold`, for ``ceecore.uniformity._Fold``).

KeyFold: rows come with a key (``k1``, ``k2``) and its 64-bit hash; each distinct key gets a dense
id (in order of first sight) from a hash table of those hashes, every row checked against
the key its id stands for, so a hash collision stops the fold instead of mixing two keys.
A key's counts are one row of a growing C array (``width`` int64 per key); histogram
rows are summed in a tally keyed exactly by (id, histogram, bin); importers kept in one
keyed by the hash of (id, importer) that holds both (checked alike). Integer sums
throughout (wrapping as numpy's do; the caller's values stay far from the limits): the
same rows give the same state whatever the batches.
"""

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

import threading

import numpy as np

cimport numpy as cnp

from ceecore._kernels._hashtable cimport prefetch
from ceecore._kernels._keys cimport month_of
from ceecore._kernels._tally cimport (
    TALLY_NO_MEMORY, Tally, TallyTable, key2, tally_add, tally_find, tally_prefetch,
)

cnp.import_array()

cdef enum:
    MAX_WIDTH = 64
    AHEAD = 8              # rows between a slot's prefetch and its probe (the big tables miss the cache)
    BIN_BITS = 22          # histogram << 22 | bin + bin offset, below the id's bits
    ID_SHIFT = 24
    OK = 0
    NO_MEMORY = 1
    KEY_COLLISION = 2
    IMPORTER_COLLISION = 3


cdef int column_pointers(list arrays, int64_t length, const int64_t** out, list keep, str what) except -1:
    """Points ``out[j]`` at ``arrays[j]`` (int64, ``length`` long; None: NULL, a count of 1
    a row), each buffer kept alive in ``keep`` while the pointers are read."""
    cdef const int64_t[::1] view
    for j, array in enumerate(arrays):
        if array is None:
            out[j] = NULL
            continue
        view = array
        if view.shape[0] != length:
            raise ValueError(f"{what}: an array of another length than its rows")
        keep.append(view)
        out[j] = &view[0] if length else NULL
    return 0


cdef class KeyFold:
    """Rows of (key, ``width`` counts) folded per key, with histogram and importer rows
    per key: see the module. ``add`` folds a batch in; ``keys``, ``counts``,
    ``take_histogram`` and ``take_importers`` read the state out (ids in order of first
    sight; the caller lays it out in canonical order). Safe on any thread: each call
    holds the fold's own lock (the GIL is released while folding)."""

    cdef Tally _ids         # key hash -> id
    cdef Tally _hist        # id << 24 | histogram << 22 | bin + offset -> rows' count
    cdef Tally _importers   # hash of (id, importer) -> (id, importer)
    cdef int64_t* _k1
    cdef int64_t* _k2
    cdef int64_t* _counts   # per id, `width` counts
    cdef int64_t _capacity  # ids the arrays hold
    cdef readonly int64_t n
    cdef readonly int width
    cdef readonly int64_t bin_offset
    cdef object _lock

    def __cinit__(self, int width, int64_t bin_offset):
        if not 0 < width <= MAX_WIDTH:
            raise ValueError(f"KeyFold: width must be 1 to {MAX_WIDTH}")
        if not 0 <= bin_offset < (1 << (BIN_BITS - 1)):
            raise ValueError("KeyFold: bin offset out of range")
        self.width, self.bin_offset = width, bin_offset
        self._ids, self._hist, self._importers = Tally("max"), Tally("sum"), Tally("max", "max")
        self._k1 = self._k2 = self._counts = NULL
        self._capacity = self.n = 0
        self._lock = threading.Lock()

    def __dealloc__(self):
        free(self._k1); free(self._k2); free(self._counts)

    cdef int _grow(self, int64_t wanted) noexcept nogil:
        """Room for ``wanted`` ids (new counts zeroed); NO_MEMORY if it cannot be had."""
        cdef int64_t capacity = self._capacity
        cdef int64_t* k1
        cdef int64_t* k2
        cdef int64_t* counts
        if wanted <= capacity:
            return OK
        capacity = max(wanted, capacity + capacity // 2, 1024)
        k1 = <int64_t*>realloc(self._k1, capacity * sizeof(int64_t))
        if k1 == NULL:
            return NO_MEMORY
        self._k1 = k1
        k2 = <int64_t*>realloc(self._k2, capacity * sizeof(int64_t))
        if k2 == NULL:
            return NO_MEMORY
        self._k2 = k2
        counts = <int64_t*>realloc(self._counts, capacity * self.width * sizeof(int64_t))
        if counts == NULL:
            return NO_MEMORY
        memset(counts + self._capacity * self.width, 0, (capacity - self._capacity) * self.width * sizeof(int64_t))
        self._counts, self._capacity = counts, capacity
        return OK

    def add(self, const uint64_t[::1] hashes, const int64_t[::1] k1, const int64_t[::1] k2, list columns,
            const int64_t[::1] hist_row, const int64_t[::1] hist_field, const int64_t[::1] hist_bin,
            const int64_t[::1] hist_count, const int64_t[::1] imp_row, const int64_t[::1] imp_hash):
        """Folds rows in: per row its key's ``hashes``, ``k1`` and ``k2`` and each count
        (``columns[j]``, int64 per row; None: 1 a row); histogram rows (``hist_row``
        indexes the rows; histogram 0 to 3, bin within the offset) and importer rows
        (``imp_row`` the same). Raises (before any change) on arguments out of bounds,
        and RuntimeError on a hash shared by two keys, or by two importers of a key."""
        cdef int64_t n = hashes.shape[0], m = hist_row.shape[0], q = imp_row.shape[0], i, r, id_
        cdef int j, w = self.width, rc = OK
        cdef const int64_t* column[MAX_WIDTH]
        cdef int64_t* ids
        cdef int64_t* counts
        cdef uint64_t* keys
        cdef int64_t pair[2]
        cdef const int64_t* found
        cdef TallyTable* id_table
        cdef TallyTable* hist
        cdef TallyTable* importers
        if k1.shape[0] != n or k2.shape[0] != n or len(columns) != w:
            raise ValueError("KeyFold.add: keys of one length and one column per count")
        if hist_field.shape[0] != m or hist_bin.shape[0] != m or hist_count.shape[0] != m or imp_hash.shape[0] != q:
            raise ValueError("KeyFold.add: histogram and importer rows of one length each")
        keep = []
        column_pointers(columns, n, column, keep, "KeyFold.add")
        for r in range(m):
            if not (0 <= hist_row[r] < n and 0 <= hist_field[r] < 4 and -self.bin_offset <= hist_bin[r] <= self.bin_offset):
                raise ValueError("KeyFold.add: a histogram row out of bounds")
        for r in range(q):
            if not 0 <= imp_row[r] < n:
                raise ValueError("KeyFold.add: an importer row out of bounds")
        if n == 0:
            return
        ids = <int64_t*>malloc(n * sizeof(int64_t))
        keys = <uint64_t*>malloc(max(m, q) * sizeof(uint64_t))
        self._lock.acquire()
        try:
            if ids == NULL or (keys == NULL and max(m, q) > 0):
                raise MemoryError()
            # (the tables as of now: the lock keeps them from being taken while this folds)
            id_table, hist, importers = &self._ids.t, &self._hist.t, &self._importers.t
            with nogil:
                for i in range(n):
                    if i + AHEAD < n:
                        tally_prefetch(id_table, hashes[i + AHEAD])
                    found = tally_find(id_table, hashes[i])
                    if found != NULL:
                        id_ = found[0]
                        if self._k1[id_] != k1[i] or self._k2[id_] != k2[i]:
                            rc = KEY_COLLISION
                            break
                    else:
                        id_ = self.n
                        if self._grow(id_ + 1) != OK or tally_add(id_table, hashes[i], &id_) == TALLY_NO_MEMORY:
                            rc = NO_MEMORY
                            break
                        self._k1[id_], self._k2[id_] = k1[i], k2[i]
                        self.n += 1
                    ids[i] = id_
                if rc == OK:
                    for i in range(n):
                        if i + AHEAD < n:
                            prefetch(&self._counts[ids[i + AHEAD] * w])
                            prefetch(&self._counts[ids[i + AHEAD] * w + w - 1])
                        counts = &self._counts[ids[i] * w]
                        for j in range(w):  # (as unsigned: wraps as numpy's int64 sums do, never undefined)
                            counts[j] = <int64_t>(<uint64_t>counts[j]
                                                  + <uint64_t>(column[j][i] if column[j] != NULL else 1))
                    for r in range(m):
                        keys[r] = (<uint64_t>ids[hist_row[r]] << ID_SHIFT) | (<uint64_t>hist_field[r] << BIN_BITS) \
                            | <uint64_t>(hist_bin[r] + self.bin_offset)
                    for r in range(m):
                        if r + AHEAD < m:
                            tally_prefetch(hist, keys[r + AHEAD])
                        if tally_add(hist, keys[r], &hist_count[r]) == TALLY_NO_MEMORY:
                            rc = NO_MEMORY
                            break
                if rc == OK:
                    for r in range(q):
                        keys[r] = key2(2, <uint64_t>ids[imp_row[r]], <uint64_t>imp_hash[r])
                    for r in range(q):
                        if r + AHEAD < q:
                            tally_prefetch(importers, keys[r + AHEAD])
                        pair[0], pair[1] = ids[imp_row[r]], imp_hash[r]
                        found = tally_find(importers, keys[r])
                        if found != NULL:
                            if found[0] != pair[0] or found[1] != pair[1]:
                                rc = IMPORTER_COLLISION
                                break
                        elif tally_add(importers, keys[r], pair) == TALLY_NO_MEMORY:
                            rc = NO_MEMORY
                            break
        finally:
            self._lock.release()
            free(ids)
            free(keys)
        if rc == NO_MEMORY:
            raise MemoryError("KeyFold.add: out of memory")
        if rc == KEY_COLLISION:
            raise RuntimeError("uniformity: two keys share a 64-bit hash (astronomically rare): stopped before mixing them")
        if rc == IMPORTER_COLLISION:
            raise RuntimeError("uniformity: two importers of a key share a 64-bit hash (astronomically rare)")

    def keys(self):
        """``(k1, k2)`` per id."""
        cdef cnp.ndarray[int64_t, ndim=1] k1 = np.empty(self.n, np.int64)
        cdef cnp.ndarray[int64_t, ndim=1] k2 = np.empty(self.n, np.int64)
        cdef int64_t i
        with self._lock:
            for i in range(self.n):
                k1[i], k2[i] = self._k1[i], self._k2[i]
        return k1, k2

    def counts(self, const int64_t[::1] order):
        """The counts of the ids in ``order`` (each id once: a permutation), ``(n, width)``:
        laid out as the caller sorts the keys, without a copy in id order first."""
        cdef int64_t i, n = self.n
        cdef int w = self.width
        if order.shape[0] != n:
            raise ValueError("KeyFold.counts: the order must hold every id")
        for i in range(n):
            if not 0 <= order[i] < n:
                raise ValueError("KeyFold.counts: an id out of range")
        out = np.empty((n, w), np.int64)
        cdef int64_t[:, ::1] o = out
        with self._lock:
            for i in range(n):
                memcpy(&o[i, 0], &self._counts[order[i] * w], w * sizeof(int64_t))
        return out

    def take_histogram(self):
        """The histogram rows ``(id << 24 | histogram << 22 | bin + offset, count)``
        sorted by key; the fold's histogram is emptied."""
        with self._lock:
            out = self._hist.items()
            self._hist = Tally("sum")
        return out

    def take_importers(self):
        """The distinct (id, importer) rows, ``(rows, 2)`` in hash order; the fold's
        importers are emptied."""
        with self._lock:
            pairs = self._importers.items()[1].reshape(-1, 2)
            self._importers = Tally("max", "max")
        return pairs


# ------------------------------------------------------------------ the trends' tallies

cdef enum:
    MONTH_BITS = 12        # as ceecore.trends._MONTH_BITS
    MONTH0 = 840           # months from 1900-01 to 1970-01 (ceecore.trends._MONTH0)
    HTS6_BITS = 20         # an HTS6 number (6 digits) and an origin code, as the origin key packs them
    ORIGIN_BITS = 10
    MAX_OUTCOMES = 8

cdef int64_t MAX_DAYS = (<int64_t>1) << 40  # days either side of 1970 the calendar arithmetic takes safely


cdef inline int64_t trends_month(int64_t day) noexcept nogil:
    """The trends' month index of a day since 1970-01-01: 0 is January 1900."""
    return month_of(day) + MONTH0


def months(const int64_t[::1] day):
    """The trends' month index (0 = January 1900) of each day since 1970-01-01, as the
    trends fold keys months (the civil calendar's month: numpy's datetime64[M])."""
    out = np.empty(day.shape[0], np.int64)
    cdef int64_t[::1] o = out
    cdef int64_t i
    for i in range(day.shape[0]):
        if not -MAX_DAYS < day[i] < MAX_DAYS:
            raise ValueError("months: a day out of range")
    with nogil:
        for i in range(day.shape[0]):
            o[i] = trends_month(day[i])
    return out


def fold_trends(Tally month, Tally origin, Tally entry, Tally account, Tally span, const int64_t[::1] rows,
                const int64_t[::1] center, const int64_t[::1] day, const int64_t[::1] hts6,
                const int64_t[::1] country, const uint64_t[::1] importer, const uint64_t[::1] entry_hash,
                const int64_t[::1] value_cents, const int64_t[::1] duty_cents, list outcomes):
    """Folds the lines ``rows`` (indexes into the per-line arrays; each with a Center)
    into the trends' tallies given (None: not folded), keyed as ``ceecore.trends.TALLIES``
    describes: ``cm = (center + 1) << 12 | month``; month: ``cm`` -> (1, value, duty,
    *outcomes); origin: the hash of (importer, cm << 30 | hts6 << 10 | origin) -> (1,
    that packed key, importer); entry: the hash of (entry, cm) -> cm; account: the hash of
    (importer, cm) -> (1, cm, importer); span: importer -> (month, month). ``outcomes``
    are int64 arrays per row of ``rows`` (as many as the month tally's fields less 3)."""
    cdef int64_t n = center.shape[0], k = rows.shape[0], i, r, cm
    cdef int j, w = len(outcomes), rc = 0
    cdef const int64_t* outcome[MAX_OUTCOMES]
    cdef int64_t values[3 + MAX_OUTCOMES]
    cdef int64_t pair[2]
    cdef int64_t* cms
    cdef uint64_t* keys   # per row: its origin, entry and account keys
    cdef TallyTable* table[3]
    cdef int t
    if (day.shape[0] != n or hts6.shape[0] != n or country.shape[0] != n or importer.shape[0] != n
            or entry_hash.shape[0] != n or value_cents.shape[0] != n or duty_cents.shape[0] != n):
        raise ValueError("fold_trends: per-line arrays of one length")
    if w > MAX_OUTCOMES or (month is not None and len(month.folds) != 3 + w):
        raise ValueError("fold_trends: the month tally's fields are lines, value, duty and the outcomes")
    for tally, width in ((origin, 3), (entry, 1), (account, 3), (span, 2)):
        if tally is not None and len(tally.folds) != width:
            raise ValueError("fold_trends: a tally of the wrong width")
    if any(array is None for array in outcomes):
        raise ValueError("fold_trends: every outcome is an array")
    keep = []
    column_pointers(outcomes, k, outcome, keep, "fold_trends")
    if k == 0:
        return
    table[0] = &origin.t if origin is not None else NULL
    table[1] = &entry.t if entry is not None else NULL
    table[2] = &account.t if account is not None else NULL
    cms = <int64_t*>malloc(k * sizeof(int64_t))
    keys = <uint64_t*>malloc(3 * k * sizeof(uint64_t))
    try:
        if cms == NULL or keys == NULL:
            raise MemoryError()
        for i in range(k):  # each line checked, its (center, month) kept for the fold
            if not 0 <= rows[i] < n:
                raise ValueError("fold_trends: a row out of bounds")
            r = rows[i]
            if not 0 <= center[r] < (1 << 8) - 1:
                raise ValueError("fold_trends: a line without a Center (or past the Center bits)")
            if not -MAX_DAYS < day[r] < MAX_DAYS:
                raise ValueError("fold_trends: a day, HTS6 number or origin past what the keys hold")
            cm = trends_month(day[r])
            if not (0 <= cm < (1 << MONTH_BITS) and 0 <= hts6[r] < (1 << HTS6_BITS)
                    and 0 <= country[r] < (1 << ORIGIN_BITS)):
                raise ValueError("fold_trends: a day, HTS6 number or origin past what the keys hold")
            cms[i] = ((center[r] + 1) << MONTH_BITS) | cm
        with nogil:
            for i in range(k):
                r, cm = rows[i], cms[i]
                keys[3 * i] = key2(3, importer[r], <uint64_t>((cm << 30) | (hts6[r] << 10) | country[r]))
                keys[3 * i + 1] = key2(1, entry_hash[r], <uint64_t>cm)
                keys[3 * i + 2] = key2(2, importer[r], <uint64_t>cm)
            for i in range(k):
                if i + AHEAD < k:
                    for t in range(3):
                        if table[t] != NULL:
                            tally_prefetch(table[t], keys[3 * (i + AHEAD) + t])
                r, cm = rows[i], cms[i]
                values[0] = 1
                if month is not None:
                    values[1], values[2] = value_cents[r], duty_cents[r]
                    for j in range(w):
                        values[3 + j] = outcome[j][i]
                    rc |= tally_add(&month.t, <uint64_t>cm, values)
                if origin is not None:
                    values[1], values[2] = (cm << 30) | (hts6[r] << 10) | country[r], <int64_t>importer[r]
                    rc |= tally_add(&origin.t, keys[3 * i], values)
                if entry is not None:
                    rc |= tally_add(&entry.t, keys[3 * i + 1], &cms[i])
                if account is not None:
                    values[1], values[2] = cm, <int64_t>importer[r]
                    rc |= tally_add(&account.t, keys[3 * i + 2], values)
                if span is not None:
                    pair[0] = pair[1] = cm & ((1 << MONTH_BITS) - 1)
                    rc |= tally_add(&span.t, importer[r], pair)
                if rc != 0:
                    break
    finally:
        free(cms)
        free(keys)
    if rc != 0:
        raise MemoryError("fold_trends: out of memory")
