# cython: language_level=3
"""Exact, mergeable keyed tallies: uint64 key -> a few int64 fields, each folded by sum, min or max.

The industry baselines are made of these: histogram bins of unit values per product,
duty and value per HTS number and origin, lines per (product, origin), first and last
days per (account, product, origin), ... Every fold is commutative and associative on
integers, so the same lines give the same tally whatever the batching or merge order.
The fields of one key sit side by side, so a lookup fetches all of them in one probe.
Keys are built by the caller (numpy) from small integers and 64-bit string hashes
(:func:`hash_strings`, :func:`combine`).

Updates and lookups run without the GIL. One tally is updated by one thread at a
time; once built, any number of threads may look it up at once.
"""

from libc.stdint cimport int64_t, uint64_t

import numpy as np

cimport numpy as cnp

from ceecore._kernels._columns cimport BatchView, StrCol, get_str
from ceecore._kernels._hashtable cimport hash_bytes
from ceecore._kernels._tally cimport (
    MAX_FIELDS, TallyTable, slots_free, hash_part, hash_parts_seed, tally_add, tally_allocate, tally_find, tally_prefetch,
)

cnp.import_array()

OPS = ("sum", "min", "max")


cdef enum:
    PREFETCH_AHEAD = 8      # keys between a slot's prefetch and its probe


cdef int add_many(TallyTable* t, const uint64_t* keys, const int64_t* values, int64_t n) noexcept nogil:
    """Folds ``n`` keys' fields in, prefetching slots ahead; stops at the first failure."""
    cdef int64_t i
    cdef int rc
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            tally_prefetch(t, keys[i + PREFETCH_AHEAD])
        rc = tally_add(t, keys[i], &values[i * t.width])
        if rc != 0:
            return rc
    return 0


cdef class Tally:
    """An open-addressing table of uint64 keys (linear probing, at most 70% full).

    Each slot is ``1 + len(folds)`` words, the key then its fields, so a probe usually
    touches one cache line; slots are prefetched a few keys ahead. Key 0 marks an empty
    slot, so the entry of key 0 itself is kept beside the table. The table itself is a
    C struct (``_tally.pxd``) that fused kernels update and probe directly.
    """

    def __cinit__(self, *folds):
        folds = folds or ("sum",)
        if len(folds) > MAX_FIELDS or any(f not in OPS for f in folds):
            raise ValueError(f"folds must be 1 to {MAX_FIELDS} of {OPS}, got {folds!r}")
        self.folds = tuple(folds)
        self.t.width = len(folds)
        self.t.stride = 1 + self.t.width
        for i, f in enumerate(folds):
            self.t.ops[i] = OPS.index(f)
        self.t.slots = NULL
        self.t.capacity = 0
        self.t.count = 0
        self.t.has_zero = False
        if tally_allocate(&self.t, 1024) != 0:
            raise MemoryError()

    def __dealloc__(self):
        slots_free(self.t.slots, self.t.capacity, self.t.stride)

    def add(self, const uint64_t[::1] keys, values):
        """Folds row ``i`` of ``values`` into the fields of ``keys[i]`` (a new key takes it).

        ``values`` is (n,) for a one-field tally, else (n, fields).
        """
        cdef const int64_t[:, ::1] v = np.ascontiguousarray(values, np.int64).reshape(-1, self.t.width)
        if keys.shape[0] != v.shape[0]:
            raise ValueError(f"{keys.shape[0]} keys but {v.shape[0]} rows of values")
        cdef int rc
        with nogil:
            rc = add_many(&self.t, &keys[0] if keys.shape[0] else NULL, &v[0, 0] if v.shape[0] else NULL, keys.shape[0])
        if rc != 0:
            raise MemoryError("tally: out of memory (the entries folded so far are kept)")

    def get(self, const uint64_t[::1] keys, int64_t default=0):
        """The fields of each key, ``default`` for keys never seen: (n,) or (n, fields)."""
        cdef cnp.ndarray[int64_t, ndim=2] out = np.empty((keys.shape[0], self.t.width), np.int64)
        cdef int64_t[:, ::1] o = out
        cdef int64_t i, n = keys.shape[0]
        cdef int f, w = self.t.width
        cdef const int64_t* found
        with nogil:
            for i in range(n):
                if i + PREFETCH_AHEAD < n:
                    tally_prefetch(&self.t, keys[i + PREFETCH_AHEAD])
                found = tally_find(&self.t, keys[i])
                for f in range(w):
                    o[i, f] = found[f] if found != NULL else default
        return out[:, 0] if w == 1 else out

    def get_folded(self, const uint64_t[::1] keys, int width, const int64_t[::1] skip=None):
        """Sums over groups: the fields are ``len(folds) // width`` groups of ``width``
        (one per fold, say), and each key gets the sum of its groups, less group
        ``skip[i]`` for key i if given (-1: none); 0 for keys never seen: (n, width)."""
        if width < 1 or self.t.width % width != 0:
            raise ValueError(f"width must divide the {self.t.width} fields")
        if skip is not None and skip.shape[0] != keys.shape[0]:
            raise ValueError("skip must give one group per key")
        cdef int groups = self.t.width // width
        cdef cnp.ndarray[int64_t, ndim=2] out = np.zeros((keys.shape[0], width), np.int64)
        cdef int64_t[:, ::1] o = out
        cdef int64_t i, n = keys.shape[0]
        cdef int g, f, leave
        cdef const int64_t* found
        if skip is not None:
            for i in range(n):
                if skip[i] < -1 or skip[i] >= groups:
                    raise ValueError("skip holds a group outside -1..groups-1")
        with nogil:
            for i in range(n):
                if i + PREFETCH_AHEAD < n:
                    tally_prefetch(&self.t, keys[i + PREFETCH_AHEAD])
                found = tally_find(&self.t, keys[i])
                if found == NULL:
                    continue
                leave = <int>skip[i] if skip is not None else -1
                for g in range(groups):
                    if g != leave:
                        for f in range(width):
                            o[i, f] += found[g * width + f]
        return out

    def items(self):
        """``(keys, values)``, sorted by key: equal tallies give equal arrays."""
        cdef cnp.ndarray[uint64_t, ndim=1] keys = np.empty(self.t.count, np.uint64)
        cdef cnp.ndarray[int64_t, ndim=2] values = np.empty((self.t.count, self.t.width), np.int64)
        cdef uint64_t[::1] k = keys
        cdef int64_t[:, ::1] v = values
        cdef int64_t i, n = 0
        cdef int w = self.t.width
        with nogil:
            if self.t.has_zero:
                k[0] = 0
                memcpy(&v[0, 0], self.t.zero, w * sizeof(int64_t))
                n = 1
            for i in range(self.t.capacity):
                if self.t.slots[i * self.t.stride] != 0:
                    k[n] = <uint64_t>self.t.slots[i * self.t.stride]
                    memcpy(&v[n, 0], &self.t.slots[i * self.t.stride + 1], w * sizeof(int64_t))
                    n += 1
        order = np.argsort(keys)
        return keys[order], (values[order, 0] if w == 1 else values[order])

    def merge(self, Tally other):
        """Folds every entry of ``other`` (the same folds) into this tally."""
        if other.folds != self.folds:
            raise ValueError(f"cannot merge a {other.folds} tally into a {self.folds} tally")
        if other is self:  # the loop below would read slots it is moving
            self.add(*self.items())
            return
        cdef int64_t i, capacity = self.t.capacity
        cdef int rc = 0
        # Room for both first: other's slots come in hash order, and inserting them in that
        # order into a smaller table would pile them into long probe runs.
        while 10 * (self.t.count + other.t.count) > 7 * capacity:
            capacity *= 2
        if capacity != self.t.capacity and tally_allocate(&self.t, capacity) != 0:
            raise MemoryError("tally: out of memory while merging")
        with nogil:
            if other.t.has_zero:
                rc = tally_add(&self.t, 0, other.t.zero)
            i = 0
            while rc == 0 and i < other.t.capacity:
                if other.t.slots[i * other.t.stride] != 0:
                    rc = tally_add(&self.t, <uint64_t>other.t.slots[i * other.t.stride], &other.t.slots[i * other.t.stride + 1])
                i += 1
        if rc != 0:
            raise MemoryError("tally: out of memory while merging")

    def __len__(self):
        return self.t.count


def hash_strings(batch, str column):
    """64-bit hashes of a string column of a record batch (any Arrow string layout).

    Null and empty strings hash to 0, which no other string does.
    """
    cdef BatchView view = BatchView(batch)
    cdef StrCol col
    cdef const char* p
    cdef int64_t n, i
    cdef cnp.ndarray[uint64_t, ndim=1] out = np.empty(view.length, np.uint64)
    cdef uint64_t[::1] o = out
    cdef uint64_t h
    view.bind_str(column, &col)
    with nogil:
        for i in range(view.length):
            if get_str(&col, i, &p, &n) and n > 0:
                h = hash_bytes(p, n)
                o[i] = h if h != 0 else 1
            else:
                o[i] = 0
    return out


def combine(uint64_t tag, *columns):
    """A 64-bit hash per row of ``(tag, columns[0][i], columns[1][i], ...)``.

    Columns are 1-d arrays of 64-bit integers (signed ones are read as unsigned), all
    of one length. Keys of tallies that need more than 64 bits of parts are these.
    """
    if not columns:
        raise ValueError("combine needs at least one column")
    cdef int64_t n = len(columns[0]), i
    cdef cnp.ndarray[uint64_t, ndim=1] out = np.empty(n, np.uint64)
    cdef uint64_t[::1] h = out
    cdef const uint64_t[::1] c
    cdef uint64_t seed = hash_parts_seed(tag)
    with nogil:
        for i in range(n):
            h[i] = seed
    for column in columns:
        array = np.ascontiguousarray(column)
        if array.dtype.itemsize != 8 or array.dtype.kind not in "iu" or array.shape != (n,):
            raise ValueError("combine takes 1-d 64-bit integer columns of one length")
        c = array.view(np.uint64)
        with nogil:
            for i in range(n):
                h[i] = hash_part(h[i], c[i])
    return out
