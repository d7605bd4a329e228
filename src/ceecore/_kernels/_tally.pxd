# The keyed tally's table as inline C functions, so that fused kernels (fitting every
# baseline in one pass, scoring every indicator in one pass) probe it without a call.
#
# A table maps uint64 keys to ``width`` int64 fields, each folded by (saturating) sum, min or max.
# Open addressing, linear probing, at most 70% full; each slot is ``1 + width`` words
# (the key, then its fields), so a probe usually touches one cache line. Key 0 marks an
# empty slot, so the entry of key 0 itself is kept beside the table.
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ, PROT_WRITE, madvise, mmap, munmap

from ceecore._kernels._hashtable cimport mix64, prefetch

cdef enum:
    OP_SUM = 0
    OP_MIN = 1
    OP_MAX = 2
    MAX_FIELDS = 16
    TALLY_NO_MEMORY = -1

cdef extern from *:
    """
    #include <sys/mman.h>
    #ifndef MADV_HUGEPAGE
    #define MADV_HUGEPAGE 14
    #endif
    """
    int MADV_HUGEPAGE
    bint add_overflows "__builtin_add_overflow"(int64_t a, int64_t b, int64_t* out) noexcept nogil


ctypedef struct TallyTable:
    int64_t* slots
    int64_t capacity
    int64_t count          # keys held, key 0 included
    int width
    int stride
    int ops[MAX_FIELDS]
    bint has_zero
    int64_t zero[MAX_FIELDS]


cdef class Tally:
    cdef TallyTable t
    cdef readonly tuple folds


cdef inline void fold_field(int op, int64_t* slot, int64_t value) noexcept nogil:
    """Folds one value in. Sums saturate at the int64 limits rather than fail: every input
    the data contract accepts must fit (100,000 lines of $1e12 overflow a sum of cents),
    and no real one comes near (9.2e16 dollars of one product). Saturating sums of
    non-negative values (all but the sums of log unit values, which would need 1e10
    lines of one product to reach it) stay exact under any batching or merge order."""
    cdef int64_t total
    if op == OP_SUM:
        if add_overflows(slot[0], value, &total):
            total = INT64_MAX if value > 0 else INT64_MIN
        slot[0] = total
    elif op == OP_MIN:
        if value < slot[0]:
            slot[0] = value
    elif value > slot[0]:
        slot[0] = value


cdef inline int64_t* tally_probe(const TallyTable* t, uint64_t key) noexcept nogil:
    """The slot holding ``key`` (key != 0), or the empty slot where it would go."""
    cdef int64_t mask = t.capacity - 1
    cdef int64_t j = <int64_t>(mix64(key) & <uint64_t>mask)
    cdef int64_t* slot = &t.slots[j * t.stride]
    while slot[0] != 0 and <uint64_t>slot[0] != key:
        j = (j + 1) & mask
        slot = &t.slots[j * t.stride]
    return slot


cdef inline void tally_prefetch(const TallyTable* t, uint64_t key) noexcept nogil:
    prefetch(&t.slots[<int64_t>(mix64(key) & <uint64_t>(t.capacity - 1)) * t.stride])


cdef enum:
    HUGE_TABLE_BYTES = 4 << 20     # tables from this size live in their own mapping, on huge pages


cdef inline int64_t* slots_alloc(int64_t capacity, int stride) noexcept nogil:
    """Zeroed slots: big tables are mapped and backed by transparent huge pages where the
    system allows, since their probes land anywhere and would otherwise miss the TLB."""
    cdef size_t size = capacity * stride * sizeof(int64_t)
    cdef void* p
    if size < HUGE_TABLE_BYTES:
        return <int64_t*>calloc(capacity * stride, sizeof(int64_t))
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if p == MAP_FAILED:
        return NULL
    madvise(p, size, MADV_HUGEPAGE)  # advice only: no huge pages is no error
    return <int64_t*>p


cdef inline void slots_free(int64_t* slots, int64_t capacity, int stride) noexcept nogil:
    cdef size_t size = capacity * stride * sizeof(int64_t)
    if slots == NULL:
        return
    if size < HUGE_TABLE_BYTES:
        free(slots)
    else:
        munmap(slots, size)


cdef inline int tally_allocate(TallyTable* t, int64_t capacity) noexcept nogil:
    """Moves every entry into a fresh table of ``capacity`` slots; -1 if out of memory."""
    cdef int64_t* slots = slots_alloc(capacity, t.stride)
    cdef int64_t* old = t.slots
    cdef int64_t old_capacity = t.capacity, i
    if slots == NULL:
        return TALLY_NO_MEMORY
    t.slots, t.capacity = slots, capacity
    for i in range(old_capacity):
        if old[i * t.stride] != 0:
            memcpy(tally_probe(t, <uint64_t>old[i * t.stride]), &old[i * t.stride], t.stride * sizeof(int64_t))
    slots_free(old, old_capacity, t.stride)
    return 0


cdef inline int tally_fold_into(const TallyTable* t, int64_t* fields, const int64_t* values) noexcept nogil:
    cdef int f
    for f in range(t.width):
        fold_field(t.ops[f], &fields[f], values[f])
    return 0


cdef inline int tally_add(TallyTable* t, uint64_t key, const int64_t* values) noexcept nogil:
    """Folds one key's fields in: 0, or TALLY_NO_MEMORY."""
    cdef int64_t* slot
    if key == 0:
        if t.has_zero:
            return tally_fold_into(t, t.zero, values)
        memcpy(t.zero, values, t.width * sizeof(int64_t))
        t.has_zero = True
        t.count += 1
        return 0
    if 10 * (t.count + 1) > 7 * t.capacity and tally_allocate(t, 2 * t.capacity) != 0:
        return TALLY_NO_MEMORY
    slot = tally_probe(t, key)
    if slot[0] != 0:
        return tally_fold_into(t, slot + 1, values)
    slot[0] = <int64_t>key
    memcpy(slot + 1, values, t.width * sizeof(int64_t))
    t.count += 1
    return 0


cdef inline const int64_t* tally_find(const TallyTable* t, uint64_t key) noexcept nogil:
    """The fields of ``key``, or NULL if it was never added."""
    cdef const int64_t* slot
    if key == 0:
        if t.has_zero:
            return t.zero
        return NULL
    slot = tally_probe(t, key)
    if slot[0] != 0:
        return slot + 1
    return NULL


cdef inline uint64_t hash_parts_seed(uint64_t tag) noexcept nogil:
    """The start of a combined key of ``tag`` (see ``combine`` in _tally.pyx)."""
    return mix64(tag * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL)


cdef inline uint64_t hash_part(uint64_t h, uint64_t part) noexcept nogil:
    """A combined key with one more part."""
    return mix64((h ^ part) * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL)


cdef inline uint64_t key2(uint64_t tag, uint64_t a, uint64_t b) noexcept nogil:
    return hash_part(hash_part(hash_parts_seed(tag), a), b)


cdef inline uint64_t key3(uint64_t tag, uint64_t a, uint64_t b, uint64_t c) noexcept nogil:
    return hash_part(hash_part(hash_part(hash_parts_seed(tag), a), b), c)
