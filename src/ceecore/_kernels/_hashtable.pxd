# Open-addressing hash tables used by the kernels, as inline C-level functions.
#
# StrTable interns (group, bytes) keys to dense ids 0, 1, 2, ... in insertion order
# (at most 2**32 - 1 keys); the key bytes are appended to one arena, so ids index
# straight into Arrow-style offsets (export needs no per-string work). IntSet holds
# distinct uint64 keys. Both use the same slots (linear probing, at most 70% full,
# doubled before they get fuller, never shrunk). Callers pass every key's hash, so the
# account kernel can compute hashes ahead, in parallel, and prefetch their slots.
# Allocation failure is reported as -1, before anything changes, so callers running
# without the GIL can raise MemoryError afterwards.
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy


cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    x ^= x >> 33
    x *= 0xff51afd7ed558ccdULL
    x ^= x >> 33
    x *= 0xc4ceb9fe1a85ec53ULL
    x ^= x >> 33
    return x


cdef inline uint64_t pair_hash(uint64_t key_hash, uint64_t owner_hash) noexcept nogil:
    """The hash of a key held per owner (an entry number per importer, say)."""
    return mix64(key_hash ^ (owner_hash * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL))


cdef inline uint64_t hash_bytes(const char* p, int64_t n) noexcept nogil:
    cdef uint64_t h = mix64(<uint64_t>n * 0x9E3779B97F4A7C15ULL)
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


cdef extern from *:
    void prefetch "__builtin_prefetch"(const void* address) noexcept nogil


cdef enum:
    MAX_KEY_LENGTH = 0xFFFF

cdef extern from *:
    """#define CEECORE_MAX_KEYS 4294967294LL"""
    const int64_t MAX_KEYS "CEECORE_MAX_KEYS"  # ids are stored as id + 1 in 32 bits


cdef inline int64_t strtable_prefetch_key(const StrTable* t, uint64_t h) noexcept nogil:
    """Prefetches the key bytes a probe for h will compare first; returns their likely id.

    Looks at the first few slots of the probe (prefetched earlier): -1 if none holds h.
    """
    cdef uint64_t pos = h & t.mask
    cdef const Slot* slot
    cdef int step
    for step in range(4):
        slot = &t.slots[(pos + step) & t.mask]
        if slot.id_plus_1 == 0:
            return -1
        if slot.hash == h:
            prefetch(t.arena + (slot.where >> 16))
            return <int64_t>slot.id_plus_1 - 1
    return -1


cdef inline bint bytes_equal(const char* p, const char* q, int64_t n) noexcept nogil:
    """p[:n] == q[:n], word by word: keys are short, a libc call costs more than the compare."""
    cdef uint64_t a, b
    while n >= 8:
        memcpy(&a, p, 8)
        memcpy(&b, q, 8)
        if a != b:
            return False
        p += 8
        q += 8
        n -= 8
    while n > 0:
        if p[0] != q[0]:
            return False
        p += 1
        q += 1
        n -= 1
    return True


ctypedef struct Slot:
    uint64_t hash
    uint64_t where         # arena offset << 16 | key length: a hit compares without other lookups
    uint32_t group
    uint32_t id_plus_1     # 0 = empty


ctypedef struct StrTable:
    char* arena
    int64_t arena_len
    int64_t arena_cap
    int64_t* starts        # starts[k] = arena offset of key k; starts[n] = arena_len
    uint32_t* groups
    int64_t n
    int64_t cap            # capacity of starts/groups
    Slot* slots            # open addressing, linear probing, at most 70% full
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
    t.slots = <Slot*>calloc(slots, sizeof(Slot))
    t.mask = slots - 1
    if t.arena == NULL or t.starts == NULL or t.groups == NULL or t.slots == NULL:
        return -1
    t.starts[0] = 0
    return 0


cdef inline void strtable_free(StrTable* t) noexcept nogil:
    free(t.arena); free(t.starts); free(t.groups); free(t.slots)
    t.arena = NULL; t.starts = NULL; t.groups = NULL; t.slots = NULL
    t.n = 0


cdef inline int grow_slots(Slot** slots, uint64_t* mask) noexcept nogil:
    """Doubles an open-addressing slot array, re-placing every used slot by its hash."""
    cdef uint64_t new_mask = (mask[0] << 1) | 1
    cdef Slot* grown = <Slot*>calloc(new_mask + 1, sizeof(Slot))
    cdef Slot* old = slots[0]
    cdef uint64_t i, pos
    if grown == NULL:
        return -1
    for i in range(mask[0] + 1):
        if old[i].id_plus_1 != 0:
            pos = old[i].hash & new_mask
            while grown[pos].id_plus_1 != 0:
                pos = (pos + 1) & new_mask
            grown[pos] = old[i]
    free(old)
    slots[0] = grown
    mask[0] = new_mask
    return 0


cdef inline int64_t strtable_add(StrTable* t, uint32_t group, const char* p, int64_t n,
                                 uint64_t h, bint* is_new) noexcept nogil:
    """Id of key (group, p[:n]) with hash h, inserting it if new.

    -1 if out of memory (or the table holds 2**32 - 2 keys), -2 if the key is longer
    than MAX_KEY_LENGTH bytes. Every allocation happens before the table changes, so a
    failure leaves the table as it was.
    """
    cdef uint64_t pos
    cdef Slot* slot
    cdef int64_t k
    cdef void* grown
    if n > MAX_KEY_LENGTH:
        return -2
    if <uint64_t>(10 * (t.n + 1)) > 7 * t.mask:
        if t.n >= MAX_KEYS or grow_slots(&t.slots, &t.mask) != 0:
            return -1
    pos = h & t.mask
    while True:
        slot = &t.slots[pos]
        if slot.id_plus_1 == 0:
            break
        if (slot.hash == h and slot.group == group and <int64_t>(slot.where & 0xFFFF) == n
                and bytes_equal(t.arena + (slot.where >> 16), p, n)):
            is_new[0] = False
            return <int64_t>slot.id_plus_1 - 1
        pos = (pos + 1) & t.mask
    # insert as id t.n
    if t.n == t.cap:
        grown = realloc(t.starts, (2 * t.cap + 1) * sizeof(int64_t))
        if grown == NULL: return -1
        t.starts = <int64_t*>grown
        grown = realloc(t.groups, 2 * t.cap * sizeof(uint32_t))
        if grown == NULL: return -1
        t.groups = <uint32_t*>grown
        t.cap *= 2
    while t.arena_len + n > t.arena_cap:
        grown = realloc(t.arena, 2 * t.arena_cap)
        if grown == NULL: return -1
        t.arena = <char*>grown
        t.arena_cap *= 2
    k = t.n
    slot.where = (<uint64_t>t.arena_len << 16) | <uint64_t>n
    memcpy(t.arena + t.arena_len, p, <size_t>n)
    t.arena_len += n
    t.starts[k + 1] = t.arena_len
    t.groups[k] = group
    t.n += 1
    slot.hash = h
    slot.group = group
    slot.id_plus_1 = <uint32_t>(k + 1)
    is_new[0] = True
    return k


ctypedef struct IntSet:
    Slot* slots            # the same slots as StrTable: the key sits in ``where``, ``id_plus_1`` is 1 when used
    uint64_t mask
    int64_t n


cdef inline int intset_init(IntSet* s, int64_t cap) noexcept nogil:
    cdef int64_t slots = 16
    while slots < 2 * cap:
        slots <<= 1
    s.slots = <Slot*>calloc(slots, sizeof(Slot))
    s.mask = slots - 1
    s.n = 0
    return 0 if s.slots != NULL else -1


cdef inline void intset_free(IntSet* s) noexcept nogil:
    free(s.slots)
    s.slots = NULL
    s.n = 0


cdef inline int intset_add(IntSet* s, uint64_t key, uint64_t h) noexcept nogil:
    """1 if key (with hash h) was new, 0 if present, -1 if out of memory (set unchanged)."""
    cdef uint64_t pos
    if <uint64_t>(10 * (s.n + 1)) > 7 * s.mask:
        if grow_slots(&s.slots, &s.mask) != 0:
            return -1
    pos = h & s.mask
    while s.slots[pos].id_plus_1 != 0:
        if s.slots[pos].where == key:
            return 0
        pos = (pos + 1) & s.mask
    s.slots[pos].hash = h
    s.slots[pos].where = key
    s.slots[pos].id_plus_1 = 1
    s.n += 1
    return 1


# PairSet holds distinct (group, hash) pairs: a key kept per owner (an entry number per
# account, say) as its 64-bit pair hash, which already mixes the owner in. Slots are 12
# bytes, packed (StrTable's are 24, plus the key bytes and their offsets), and the hash
# places the slot. Within one group, equal hashes are equal keys exactly when the hash is
# a bijection of the key's own hash for a fixed owner (``pair_hash`` is: ``mix64`` is).
cdef packed struct PairSlot:
    uint64_t hash
    uint32_t group_plus_1  # 0 = empty


ctypedef struct PairSet:
    PairSlot* slots
    uint64_t mask
    int64_t n


cdef inline int pairset_init(PairSet* s, int64_t cap) noexcept nogil:
    cdef int64_t slots = 16
    while slots < 2 * cap:
        slots <<= 1
    s.slots = <PairSlot*>calloc(slots, sizeof(PairSlot))
    s.mask = slots - 1
    s.n = 0
    return 0 if s.slots != NULL else -1


cdef inline void pairset_free(PairSet* s) noexcept nogil:
    free(s.slots)
    s.slots = NULL
    s.n = 0


cdef inline int pairset_add(PairSet* s, uint32_t group, uint64_t h) noexcept nogil:
    """1 if (group, h) was new, 0 if present, -1 if out of memory (the set unchanged).
    Groups are below 2**32 - 1 (account ids are: StrTable's ids)."""
    cdef uint64_t pos, i, new_mask
    cdef PairSlot* grown
    if <uint64_t>(10 * (s.n + 1)) > 7 * s.mask:
        new_mask = (s.mask << 1) | 1
        grown = <PairSlot*>calloc(new_mask + 1, sizeof(PairSlot))
        if grown == NULL:
            return -1
        for i in range(s.mask + 1):
            if s.slots[i].group_plus_1 != 0:
                pos = s.slots[i].hash & new_mask
                while grown[pos].group_plus_1 != 0:
                    pos = (pos + 1) & new_mask
                grown[pos] = s.slots[i]
        free(s.slots)
        s.slots, s.mask = grown, new_mask
    pos = h & s.mask
    while s.slots[pos].group_plus_1 != 0:
        if s.slots[pos].hash == h and s.slots[pos].group_plus_1 == group + 1:
            return 0
        pos = (pos + 1) & s.mask
    s.slots[pos].hash = h
    s.slots[pos].group_plus_1 = group + 1
    s.n += 1
    return 1
