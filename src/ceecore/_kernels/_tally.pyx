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

from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

import numpy as np

cimport numpy as cnp

from ceecore._kernels._columns cimport BatchView, StrCol, get_str
from ceecore._kernels._hashtable cimport hash_bytes, mix64, prefetch

cnp.import_array()

OPS = ("sum", "min", "max")
cdef enum:
    OP_SUM = 0
    OP_MIN = 1
    OP_MAX = 2
    MAX_FIELDS = 16


cdef extern from *:
    bint add_overflows "__builtin_add_overflow"(int64_t a, int64_t b, int64_t* out) noexcept nogil


cdef inline int fold(int op, int64_t* slot, int64_t value) noexcept nogil:
    """Folds ``value`` into ``slot``; -2 (slot unchanged) if a sum would overflow int64."""
    cdef int64_t total
    if op == OP_SUM:
        if add_overflows(slot[0], value, &total):
            return -2
        slot[0] = total
    elif op == OP_MIN:
        if value < slot[0]:
            slot[0] = value
    elif value > slot[0]:
        slot[0] = value
    return 0


cdef enum:
    PREFETCH_AHEAD = 8      # keys between a slot's prefetch and its probe


cdef class Tally:
    """An open-addressing table of uint64 keys (linear probing, at most 70% full).

    Each slot is ``1 + len(folds)`` words, the key then its fields, so a probe usually
    touches one cache line; slots are prefetched a few keys ahead. Key 0 marks an empty
    slot, so the entry of key 0 itself is kept beside the table.
    """

    cdef int64_t* slots
    cdef int64_t capacity
    cdef int64_t count         # keys held, key 0 included
    cdef int width
    cdef int stride
    cdef int ops[MAX_FIELDS]
    cdef bint has_zero
    cdef int64_t zero[MAX_FIELDS]
    cdef readonly tuple folds

    def __cinit__(self, *folds):
        folds = folds or ("sum",)
        if len(folds) > MAX_FIELDS or any(f not in OPS for f in folds):
            raise ValueError(f"folds must be 1 to {MAX_FIELDS} of {OPS}, got {folds!r}")
        self.folds = tuple(folds)
        self.width = len(folds)
        self.stride = 1 + self.width
        for i, f in enumerate(folds):
            self.ops[i] = OPS.index(f)
        self.capacity = 0
        self.count = 0
        self.has_zero = False
        if self._allocate(1024) != 0:
            raise MemoryError()

    def __dealloc__(self):
        free(self.slots)

    cdef inline int64_t* _probe(self, uint64_t key) noexcept nogil:
        """The slot holding ``key`` (key != 0), or the empty slot where it would go."""
        cdef int64_t mask = self.capacity - 1
        cdef int64_t j = <int64_t>(mix64(key) & <uint64_t>mask)
        cdef int64_t* slot = &self.slots[j * self.stride]
        while slot[0] != 0 and <uint64_t>slot[0] != key:
            j = (j + 1) & mask
            slot = &self.slots[j * self.stride]
        return slot

    cdef inline void _prefetch(self, uint64_t key) noexcept nogil:
        prefetch(&self.slots[<int64_t>(mix64(key) & <uint64_t>(self.capacity - 1)) * self.stride])

    cdef int _allocate(self, int64_t capacity) noexcept nogil:
        """Moves every entry into a fresh table of ``capacity`` slots; -1 if out of memory."""
        cdef int64_t* slots = <int64_t*>calloc(capacity * self.stride, sizeof(int64_t))
        cdef int64_t* old = self.slots
        cdef int64_t old_capacity = self.capacity, i
        if slots == NULL:
            return -1
        self.slots, self.capacity = slots, capacity
        for i in range(old_capacity):
            if old[i * self.stride] != 0:
                memcpy(self._probe(<uint64_t>old[i * self.stride]), &old[i * self.stride],
                       self.stride * sizeof(int64_t))
        free(old)
        return 0

    cdef int _fold_into(self, int64_t* fields, const int64_t* values) noexcept nogil:
        cdef int f
        for f in range(self.width):
            if fold(self.ops[f], &fields[f], values[f]) != 0:
                return -2
        return 0

    cdef int _add_one(self, uint64_t key, const int64_t* values) noexcept nogil:
        """Folds one key's fields in: 0, -1 out of memory, -2 a sum overflowed."""
        cdef int64_t* slot
        if key == 0:
            if self.has_zero:
                return self._fold_into(self.zero, values)
            memcpy(self.zero, values, self.width * sizeof(int64_t))
            self.has_zero = True
            self.count += 1
            return 0
        if 10 * (self.count + 1) > 7 * self.capacity and self._allocate(2 * self.capacity) != 0:
            return -1
        slot = self._probe(key)
        if slot[0] != 0:
            return self._fold_into(slot + 1, values)
        slot[0] = <int64_t>key
        memcpy(slot + 1, values, self.width * sizeof(int64_t))
        self.count += 1
        return 0

    cdef int _add(self, const uint64_t* keys, const int64_t* values, int64_t n) noexcept nogil:
        cdef int64_t i
        cdef int rc
        for i in range(n):
            if i + PREFETCH_AHEAD < n:
                self._prefetch(keys[i + PREFETCH_AHEAD])
            rc = self._add_one(keys[i], &values[i * self.width])
            if rc != 0:
                return rc
        return 0

    cdef const int64_t* _find(self, uint64_t key) noexcept nogil:
        """The fields of ``key``, or NULL if it was never added."""
        cdef int64_t* slot
        if key == 0:
            return self.zero if self.has_zero else NULL
        slot = self._probe(key)
        return slot + 1 if slot[0] != 0 else NULL

    def add(self, const uint64_t[::1] keys, values):
        """Folds row ``i`` of ``values`` into the fields of ``keys[i]`` (a new key takes it).

        ``values`` is (n,) for a one-field tally, else (n, fields).
        """
        cdef const int64_t[:, ::1] v = np.ascontiguousarray(values, np.int64).reshape(-1, self.width)
        if keys.shape[0] != v.shape[0]:
            raise ValueError(f"{keys.shape[0]} keys but {v.shape[0]} rows of values")
        cdef int rc
        with nogil:
            rc = self._add(&keys[0] if keys.shape[0] else NULL, &v[0, 0] if v.shape[0] else NULL, keys.shape[0])
        if rc == -2:
            raise OverflowError("tally: a sum overflowed 64 bits (the rows before it are folded in)")
        if rc != 0:
            raise MemoryError("tally: out of memory (the entries folded so far are kept)")

    def get(self, const uint64_t[::1] keys, int64_t default=0):
        """The fields of each key, ``default`` for keys never seen: (n,) or (n, fields)."""
        cdef cnp.ndarray[int64_t, ndim=2] out = np.empty((keys.shape[0], self.width), np.int64)
        cdef int64_t[:, ::1] o = out
        cdef int64_t i, n = keys.shape[0]
        cdef int f, w = self.width
        cdef const int64_t* found
        with nogil:
            for i in range(n):
                if i + PREFETCH_AHEAD < n:
                    self._prefetch(keys[i + PREFETCH_AHEAD])
                found = self._find(keys[i])
                for f in range(w):
                    o[i, f] = found[f] if found != NULL else default
        return out[:, 0] if w == 1 else out

    def get_folded(self, const uint64_t[::1] keys, int width, const int64_t[::1] skip=None):
        """Sums over groups: the fields are ``len(folds) // width`` groups of ``width``
        (one per fold, say), and each key gets the sum of its groups, less group
        ``skip[i]`` for key i if given (-1: none); 0 for keys never seen: (n, width)."""
        if width < 1 or self.width % width != 0:
            raise ValueError(f"width must divide the {self.width} fields")
        if skip is not None and skip.shape[0] != keys.shape[0]:
            raise ValueError("skip must give one group per key")
        cdef int groups = self.width // width
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
                    self._prefetch(keys[i + PREFETCH_AHEAD])
                found = self._find(keys[i])
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
        cdef cnp.ndarray[uint64_t, ndim=1] keys = np.empty(self.count, np.uint64)
        cdef cnp.ndarray[int64_t, ndim=2] values = np.empty((self.count, self.width), np.int64)
        cdef uint64_t[::1] k = keys
        cdef int64_t[:, ::1] v = values
        cdef int64_t i, n = 0
        cdef int w = self.width
        with nogil:
            if self.has_zero:
                k[0] = 0
                memcpy(&v[0, 0], self.zero, w * sizeof(int64_t))
                n = 1
            for i in range(self.capacity):
                if self.slots[i * self.stride] != 0:
                    k[n] = <uint64_t>self.slots[i * self.stride]
                    memcpy(&v[n, 0], &self.slots[i * self.stride + 1], w * sizeof(int64_t))
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
        cdef int64_t i, capacity = self.capacity
        cdef int rc = 0
        # Room for both first: other's slots come in hash order, and inserting them in that
        # order into a smaller table would pile them into long probe runs.
        while 10 * (self.count + other.count) > 7 * capacity:
            capacity *= 2
        if capacity != self.capacity and self._allocate(capacity) != 0:
            raise MemoryError("tally: out of memory while merging")
        with nogil:
            if other.has_zero:
                rc = self._add_one(0, other.zero)
            i = 0
            while rc == 0 and i < other.capacity:
                if other.slots[i * other.stride] != 0:
                    rc = self._add_one(<uint64_t>other.slots[i * other.stride], &other.slots[i * other.stride + 1])
                i += 1
        if rc == -2:
            raise OverflowError("tally: a sum overflowed 64 bits while merging")
        if rc != 0:
            raise MemoryError("tally: out of memory while merging")

    def __len__(self):
        return self.count


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
    cdef uint64_t seed = mix64(tag * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL)
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
                h[i] = mix64((h[i] ^ c[i]) * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL)
    return out
