# Open-addressing hash tables used by the kernels, as inline C-level functions.
#
# StrTable interns (group, bytes) keys to dense ids 0, 1, 2, ... in insertion order;
# the key bytes are appended to one arena, so ids index straight into Arrow-style
# offsets (export needs no per-string work). IntSet holds distinct uint64 keys.
# Neither ever shrinks; both grow by doubling at half load. Allocation failure is
# reported as -1 so callers running without the GIL can raise MemoryError afterwards.
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy


cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    x ^= x >> 33
    x *= 0xff51afd7ed558ccdULL
    x ^= x >> 33
    x *= 0xc4ceb9fe1a85ec53ULL
    x ^= x >> 33
    return x


cdef inline uint64_t hash_bytes(const char* p, int64_t n, uint64_t group) noexcept nogil:
    cdef uint64_t h = mix64(<uint64_t>n * 0x9E3779B97F4A7C15ULL ^ group)
    cdef uint64_t w
    while n >= 8:
        memcpy(&w, p, 8)
        h = mix64(h ^ w) + 0x9E3779B97F4A7C15ULL
        p += 8
        n -= 8
    if n > 0:
        w = 0
        memcpy(&w, p, <size_t>n)
        h = mix64(h ^ w ^ (<uint64_t>n << 59))
    return h


ctypedef struct StrTable:
    char* arena
    int64_t arena_len
    int64_t arena_cap
    int64_t* starts        # starts[k] = arena offset of key k; starts[n] = arena_len
    uint32_t* groups
    uint64_t* hashes
    int64_t n
    int64_t cap            # capacity of starts/groups/hashes
    uint64_t* slots        # (hash high 32 bits << 32) | (id + 1); 0 = empty
    uint64_t mask


cdef inline int strtable_init(StrTable* t, int64_t cap) noexcept nogil:
    cdef int64_t slots = 16
    while slots < 2 * cap:
        slots <<= 1
    t.n = 0
    t.cap = cap if cap > 8 else 8
    t.arena_cap = t.cap * 16
    t.arena_len = 0
    t.arena = <char*>malloc(t.arena_cap)
    t.starts = <int64_t*>malloc((t.cap + 1) * sizeof(int64_t))
    t.groups = <uint32_t*>malloc(t.cap * sizeof(uint32_t))
    t.hashes = <uint64_t*>malloc(t.cap * sizeof(uint64_t))
    t.slots = <uint64_t*>calloc(slots, sizeof(uint64_t))
    t.mask = slots - 1
    if t.arena == NULL or t.starts == NULL or t.groups == NULL or t.hashes == NULL or t.slots == NULL:
        return -1
    t.starts[0] = 0
    return 0


cdef inline void strtable_free(StrTable* t) noexcept nogil:
    free(t.arena); free(t.starts); free(t.groups); free(t.hashes); free(t.slots)
    t.arena = NULL; t.starts = NULL; t.groups = NULL; t.hashes = NULL; t.slots = NULL
    t.n = 0


cdef inline int _strtable_rehash(StrTable* t) noexcept nogil:
    cdef uint64_t new_mask = (t.mask << 1) | 1
    cdef uint64_t* slots = <uint64_t*>calloc(new_mask + 1, sizeof(uint64_t))
    cdef int64_t k
    cdef uint64_t h, pos
    if slots == NULL:
        return -1
    for k in range(t.n):
        h = t.hashes[k]
        pos = h & new_mask
        while slots[pos] != 0:
            pos = (pos + 1) & new_mask
        slots[pos] = (h & 0xFFFFFFFF00000000ULL) | <uint64_t>(k + 1)
    free(t.slots)
    t.slots = slots
    t.mask = new_mask
    return 0


cdef inline int64_t strtable_add(StrTable* t, uint32_t group, const char* p, int64_t n,
                                 uint64_t h, bint* is_new) noexcept nogil:
    """Id of key (group, p[:n]) with hash h, inserting it if new; -1 if out of memory."""
    cdef uint64_t pos = h & t.mask
    cdef uint64_t tag = h & 0xFFFFFFFF00000000ULL
    cdef uint64_t slot
    cdef int64_t k, start
    cdef void* grown
    while True:
        slot = t.slots[pos]
        if slot == 0:
            break
        if (slot & 0xFFFFFFFF00000000ULL) == tag:
            k = <int64_t>(slot & 0xFFFFFFFFULL) - 1
            start = t.starts[k]
            if (t.groups[k] == group and t.starts[k + 1] - start == n
                    and memcmp(t.arena + start, p, <size_t>n) == 0):
                is_new[0] = False
                return k
        pos = (pos + 1) & t.mask
    # insert as id t.n
    if t.n == t.cap:
        grown = realloc(t.starts, (2 * t.cap + 1) * sizeof(int64_t))
        if grown == NULL: return -1
        t.starts = <int64_t*>grown
        grown = realloc(t.groups, 2 * t.cap * sizeof(uint32_t))
        if grown == NULL: return -1
        t.groups = <uint32_t*>grown
        grown = realloc(t.hashes, 2 * t.cap * sizeof(uint64_t))
        if grown == NULL: return -1
        t.hashes = <uint64_t*>grown
        t.cap *= 2
    while t.arena_len + n > t.arena_cap:
        grown = realloc(t.arena, 2 * t.arena_cap)
        if grown == NULL: return -1
        t.arena = <char*>grown
        t.arena_cap *= 2
    k = t.n
    memcpy(t.arena + t.arena_len, p, <size_t>n)
    t.arena_len += n
    t.starts[k + 1] = t.arena_len
    t.groups[k] = group
    t.hashes[k] = h
    t.n += 1
    t.slots[pos] = tag | <uint64_t>(k + 1)
    is_new[0] = True
    if <uint64_t>(2 * t.n) > t.mask:
        if _strtable_rehash(t) != 0:
            return -1
    return k


ctypedef struct IntSet:
    uint64_t* slots        # key + 1; 0 = empty
    uint64_t mask
    int64_t n


cdef inline int intset_init(IntSet* s, int64_t cap) noexcept nogil:
    cdef int64_t slots = 16
    while slots < 2 * cap:
        slots <<= 1
    s.slots = <uint64_t*>calloc(slots, sizeof(uint64_t))
    s.mask = slots - 1
    s.n = 0
    return 0 if s.slots != NULL else -1


cdef inline void intset_free(IntSet* s) noexcept nogil:
    free(s.slots)
    s.slots = NULL
    s.n = 0


cdef inline int intset_add(IntSet* s, uint64_t key) noexcept nogil:
    """1 if key was new, 0 if present, -1 if out of memory. Keys must be < 2**64 - 1."""
    cdef uint64_t stored = key + 1
    cdef uint64_t pos = mix64(key) & s.mask
    cdef uint64_t* slots
    cdef uint64_t new_mask, i, p
    while s.slots[pos] != 0:
        if s.slots[pos] == stored:
            return 0
        pos = (pos + 1) & s.mask
    s.slots[pos] = stored
    s.n += 1
    if <uint64_t>(2 * s.n) > s.mask:
        new_mask = (s.mask << 1) | 1
        slots = <uint64_t*>calloc(new_mask + 1, sizeof(uint64_t))
        if slots == NULL:
            return -1
        for i in range(s.mask + 1):
            if s.slots[i] != 0:
                p = mix64(s.slots[i] - 1) & new_mask
                while slots[p] != 0:
                    p = (p + 1) & new_mask
                slots[p] = s.slots[i]
        free(s.slots)
        s.slots = slots
        s.mask = new_mask
    return 1
