# cython: language_level=3
"""Nationwide account consolidation: the hot loops behind ``ceecore.accounts``.

``update`` makes two passes over a canonical record batch, both without the GIL:

1. per line, in parallel: check the data contract (a reject reason, 0 = accepted),
   parse the HTS code, port and origin, convert money to integer cents, look up the
   line's Center, and hash the keys;
2. per shard, in parallel: fold accepted lines into their importer's account. An
   importer lives in exactly one shard (by hash), so shards never share memory; a
   short serial pass in between lists each shard's lines in batch order.

The state is exact and order-free: counters are integer sums, min/max, bit sets and
sets of distinct keys, so any batching and any merge order give the same accounts.
Distinct entry numbers and manufacturers are kept per account as the 64-bit hashes of
their (importer, key) pairs, 12 bytes a key instead of its text: two keys of one account
count as one only if their 64-bit hashes collide (about n^2 / 2^65 for an account of n).
"""
from cython.parallel cimport prange
from libc.math cimport NAN, isfinite, llround, log, rint
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcpy, memset

import numpy as np

from ceecore._kernels._columns cimport (
    NUM_DATE32, NUM_FLOAT64, NUM_INT64, BatchView, NumCol, StrCol,
    get_date32, get_f64, get_i64, get_str,
)
from ceecore._kernels._hashtable cimport (
    IntSet, PairSet, StrTable, bytes_equal, hash_bytes, intset_add, intset_free, intset_init, pair_hash,
    pairset_add, pairset_free, pairset_init, prefetch, strtable_add, strtable_free, strtable_init,
    strtable_prefetch_key,
)

# Reject reasons, in the order rows are checked; the position is the code.
REJECT_REASONS = (
    "ok",
    "missing_entry_number", "bad_entry_number",
    "missing_line_number", "bad_line_number",
    "missing_importer_id", "bad_importer_id",
    "missing_port_code", "bad_port_code",
    "missing_entry_date", "bad_entry_date",
    "missing_hts_code", "bad_hts_code",
    "missing_country_of_origin", "bad_country_of_origin",
    "missing_entered_value", "bad_entered_value",
    "bad_duty_paid", "bad_duty_rate",
    "bad_quantity", "bad_gross_weight_kg",
    "bad_manufacturer_id",
    "bad_inspected", "bad_violation", "bad_revenue_recovered",  # outcomes that do not parse (found before)
)

cdef enum:
    OK = 0
    MISSING_ENTRY_NUMBER, BAD_ENTRY_NUMBER
    MISSING_LINE_NUMBER, BAD_LINE_NUMBER
    MISSING_IMPORTER_ID, BAD_IMPORTER_ID
    MISSING_PORT_CODE, BAD_PORT_CODE
    MISSING_ENTRY_DATE, BAD_ENTRY_DATE
    MISSING_HTS_CODE, BAD_HTS_CODE
    MISSING_COUNTRY, BAD_COUNTRY
    MISSING_ENTERED_VALUE, BAD_ENTERED_VALUE
    BAD_DUTY_PAID, BAD_DUTY_RATE
    BAD_QUANTITY, BAD_GROSS_WEIGHT
    BAD_MANUFACTURER_ID
    BAD_INSPECTED, BAD_VIOLATION, BAD_REVENUE_RECOVERED
    N_REASONS

assert N_REASONS == len(REJECT_REASONS)

cdef enum:
    MAX_KEY_BYTES = 64      # longer keys are malformed
    N_COUNTRY_WORDS = 11    # 26 * 26 = 676 two-letter codes -> 11 x 64-bit words
    N_CHAPTER_WORDS = 2     # chapters 00..99 -> 2 x 64-bit words
    PORT_RADIX = 10000      # port codes are 0000..9999
    N_HEADINGS = 10000      # HTS headings 0000..9999 index the Center table
    PREFETCH_AHEAD = 8      # rows between prefetch stages and use
cdef double MAX_MONEY_USD = 1e12    # one line above a trillion dollars is malformed
cdef int32_t MIN_DAY = -25567       # entry dates from 1900-01-01 ...
cdef int32_t MAX_DAY = 84005        # ... to 2199-12-31 (days since 1970-01-01)
cdef double MAX_DUTY_RATE = 10000.0  # ad valorem percent


ctypedef struct Columns:
    StrCol entry_number
    NumCol line_number
    StrCol importer_id
    StrCol port_code
    NumCol entry_date
    StrCol hts_code
    StrCol country_of_origin
    NumCol entered_value
    NumCol duty_paid
    NumCol duty_rate
    NumCol quantity
    NumCol gross_weight_kg
    StrCol manufacturer_id


cdef extern from *:
    """typedef __int128 ceecore_int128;"""
    ctypedef long long int128 "ceecore_int128"  # 128-bit sums of cents never overflow
    ctypedef unsigned long long uint128 "unsigned __int128"


ctypedef struct Account:
    int128 value_cents
    int128 duty_cents
    int64_t lines
    int64_t entries
    int64_t manufacturers
    int64_t ports
    int32_t first_date
    int32_t last_date
    uint64_t chapters[N_CHAPTER_WORDS]
    uint64_t countries[N_COUNTRY_WORDS]


ctypedef struct Shard:
    StrTable importers      # importer id -> account index
    PairSet entries         # (account, pair hash of its importer and entry number), distinct
    PairSet manufacturers   # (account, pair hash of its importer and manufacturer id), distinct
    IntSet ports            # account * PORT_RADIX + port, distinct
    Account* accounts
    int64_t* center_lines   # [account * n_centers + center]
    int128* center_cents
    int64_t cap


cdef inline bint key_ok(const char* p, int64_t n) noexcept nogil:
    """A key is at most MAX_KEY_BYTES of UTF-8 with no control characters: keys are
    written out as text, and must read back as the same text."""
    cdef int64_t k = 0, extra, j
    cdef unsigned char ch, low, high
    if n > MAX_KEY_BYTES:
        return False
    while k < n:
        ch = <unsigned char>p[k]
        if ch < 0x80:
            if ch < 0x20 or ch == 0x7F:
                return False
            k += 1
            continue
        # A multi-byte sequence: no overlong forms, surrogates or code points past U+10FFFF.
        low, high = 0x80, 0xBF
        if 0xC2 <= ch <= 0xDF:
            extra = 1
        elif 0xE0 <= ch <= 0xEF:
            extra = 2
            if ch == 0xE0:
                low = 0xA0
            elif ch == 0xED:
                high = 0x9F
        elif 0xF0 <= ch <= 0xF4:
            extra = 3
            if ch == 0xF0:
                low = 0x90
            elif ch == 0xF4:
                high = 0x8F
        else:
            return False
        if k + extra >= n:
            return False
        for j in range(1, extra + 1):
            ch = <unsigned char>p[k + j]
            if ch < low or ch > high:
                return False
            low, high = 0x80, 0xBF
        k += extra + 1
    return True


cdef inline bint money_ok(double v) noexcept nogil:
    return isfinite(v) and v >= 0.0 and v <= MAX_MONEY_USD


cdef inline int epoch_of(const int32_t* starts, int n_epochs, int32_t day) noexcept nogil:
    cdef int e = n_epochs - 1
    while e > 0 and day < starts[e]:
        e -= 1
    return e


cdef inline int64_t pow10(int64_t k) noexcept nogil:
    """10 ** k for k >= 0; 1 below."""
    cdef int64_t out = 1
    while k > 0:
        out *= 10
        k -= 1
    return out


cdef inline bint is_space(unsigned char ch) noexcept nogil:
    return ch == 32 or (9 <= ch <= 13)


cdef inline int64_t spi_code(const StrCol* col, int64_t i) noexcept nogil:
    """A stable number for a special program indicator ("A+", "S", "KR", ...): its text
    stripped of ASCII white space, in upper case, the first 7 bytes read big-endian; 0
    for none."""
    cdef const char* p
    cdef int64_t n, k, code = 0
    cdef unsigned char ch
    if not get_str(col, i, &p, &n):
        return 0
    while n > 0 and is_space(<unsigned char>p[0]):
        p += 1
        n -= 1
    while n > 0 and is_space(<unsigned char>p[n - 1]):
        n -= 1
    for k in range(min(n, 7)):
        ch = <unsigned char>p[k]
        if 97 <= ch <= 122:
            ch -= 32
        code = (code << 8) | ch
    return code


cdef inline uint8_t check_line(
    const Columns* c, int64_t i, uint8_t pre, const int32_t* epoch_starts, int n_epochs, const int8_t* center_table,
    uint64_t* importer_hash, uint64_t* entry_hash, uint64_t* mfr_hash, uint64_t* port_hash,
    int64_t* value_cents, int64_t* duty_cents, int32_t* day, int8_t* center,
    int8_t* chapter, int16_t* country, int16_t* port, int64_t* hts,
) noexcept nogil:
    """Checks line i against the data contract; fills the parsed fields if it passes.

    Checks run in contract order and the first failure is the line's reason; ``pre``
    (a value that did not parse, found before the kernel) counts at its column's turn.
    The hashes of the line's (importer, key) pairs are computed here, in parallel, so
    that folding can prefetch their hash-table slots.
    """
    cdef const char* p
    cdef int64_t n, k, line, digits = 0, heading = 0, number = 0
    cdef double v, rate, d
    cdef int pc = 0
    cdef unsigned char ch, a, b
    cdef uint64_t h_entry, h_importer
    cdef bint paid = False

    if not get_str(&c.entry_number, i, &p, &n) or n == 0:
        return MISSING_ENTRY_NUMBER
    if not key_ok(p, n):
        return BAD_ENTRY_NUMBER
    h_entry = hash_bytes(p, n)

    if pre == BAD_LINE_NUMBER:
        return pre
    if not get_i64(&c.line_number, i, &line):
        return MISSING_LINE_NUMBER
    if line < 1:
        return BAD_LINE_NUMBER

    if not get_str(&c.importer_id, i, &p, &n) or n == 0:
        return MISSING_IMPORTER_ID
    if not key_ok(p, n):
        return BAD_IMPORTER_ID
    h_importer = hash_bytes(p, n)
    importer_hash[i] = h_importer
    entry_hash[i] = pair_hash(h_entry, h_importer)

    if not get_str(&c.port_code, i, &p, &n) or n == 0:
        return MISSING_PORT_CODE
    if n > 4:
        return BAD_PORT_CODE
    for k in range(n):  # shorter codes lost their leading zeros: "101" is port 0101
        ch = <unsigned char>p[k]
        if ch < 48 or ch > 57:
            return BAD_PORT_CODE
        pc = pc * 10 + (ch - 48)
    port[i] = <int16_t>pc
    port_hash[i] = pair_hash(<uint64_t>pc, h_importer)

    if pre == BAD_ENTRY_DATE:
        return pre
    if not get_date32(&c.entry_date, i, &day[i]):
        return MISSING_ENTRY_DATE
    if day[i] < MIN_DAY or day[i] > MAX_DAY:
        return BAD_ENTRY_DATE

    if not get_str(&c.hts_code, i, &p, &n) or n == 0:
        return MISSING_HTS_CODE
    for k in range(n):  # digits, with dots and spaces ignored
        ch = <unsigned char>p[k]
        if ch == 46 or ch == 32:
            continue
        if ch < 48 or ch > 57:
            return BAD_HTS_CODE
        if digits < 4:
            heading = heading * 10 + (ch - 48)
        if digits < 10:
            number = number * 10 + (ch - 48)
        digits += 1
    if digits < 6 or digits > 10:
        return BAD_HTS_CODE
    hts[i] = number * 16 + digits  # the digits as declared: "0101..." and "101..." differ
    chapter[i] = <int8_t>(heading // 100)
    center[i] = center_table[epoch_of(epoch_starts, n_epochs, day[i]) * N_HEADINGS + heading]

    if not get_str(&c.country_of_origin, i, &p, &n) or n == 0:
        return MISSING_COUNTRY
    if n != 2:
        return BAD_COUNTRY
    a = (<unsigned char>p[0]) & 0xDF  # upper-case ASCII letters
    b = (<unsigned char>p[1]) & 0xDF
    if a < 65 or a > 90 or b < 65 or b > 90:
        return BAD_COUNTRY
    country[i] = <int16_t>((a - 65) * 26 + (b - 65))

    if pre == BAD_ENTERED_VALUE:
        return pre
    if not get_f64(&c.entered_value, i, &v):
        return MISSING_ENTERED_VALUE
    if not money_ok(v):
        return BAD_ENTERED_VALUE
    value_cents[i] = llround(v * 100.0)

    duty_cents[i] = 0
    if pre == BAD_DUTY_PAID:
        return pre
    if get_f64(&c.duty_paid, i, &d):
        if not money_ok(d):
            return BAD_DUTY_PAID
        duty_cents[i] = llround(d * 100.0)
        paid = True
    if pre == BAD_DUTY_RATE:
        return pre
    if get_f64(&c.duty_rate, i, &rate):
        if not (isfinite(rate) and rate >= 0.0 and rate <= MAX_DUTY_RATE):
            return BAD_DUTY_RATE
        if not paid:  # the rate stands in for the duty only when none was paid
            duty_cents[i] = llround(<double>value_cents[i] * rate / 100.0)

    if pre == BAD_QUANTITY:
        return pre
    if get_f64(&c.quantity, i, &d) and not (isfinite(d) and d >= 0.0):
        return BAD_QUANTITY
    if pre == BAD_GROSS_WEIGHT:
        return pre
    if get_f64(&c.gross_weight_kg, i, &d) and not (isfinite(d) and d >= 0.0):
        return BAD_GROSS_WEIGHT

    mfr_hash[i] = 0
    if get_str(&c.manufacturer_id, i, &p, &n) and n > 0:
        if not key_ok(p, n):
            return BAD_MANUFACTURER_ID
        mfr_hash[i] = pair_hash(hash_bytes(p, n), h_importer) | 1  # 0 marks "no manufacturer"
    return pre


cdef int shard_init(Shard* s) noexcept nogil:
    memset(s, 0, sizeof(Shard))
    if (strtable_init(&s.importers, 1024) or pairset_init(&s.entries, 4096)
            or pairset_init(&s.manufacturers, 1024) or intset_init(&s.ports, 1024)):
        return -1
    return 0


cdef void shard_free(Shard* s) noexcept nogil:
    strtable_free(&s.importers)
    pairset_free(&s.entries)
    pairset_free(&s.manufacturers)
    intset_free(&s.ports)
    free(s.accounts); free(s.center_lines); free(s.center_cents)
    s.accounts = NULL; s.center_lines = NULL; s.center_cents = NULL


cdef int64_t shard_account(Shard* s, const char* p, int64_t n, uint64_t h, int n_centers) noexcept nogil:
    """Account index of importer p[:n] in this shard, opening the account if new; -1 if OOM.

    The account arrays grow before the importer is added, so a failure changes nothing.
    """
    cdef bint is_new
    cdef int64_t a, cap
    cdef void* grown
    if s.importers.n >= s.cap:
        cap = 2 * s.cap if s.cap else 1024
        grown = realloc(s.accounts, cap * sizeof(Account))
        if grown == NULL: return -1
        s.accounts = <Account*>grown
        grown = realloc(s.center_lines, cap * n_centers * sizeof(int64_t))
        if grown == NULL: return -1
        s.center_lines = <int64_t*>grown
        grown = realloc(s.center_cents, cap * n_centers * sizeof(int128))
        if grown == NULL: return -1
        s.center_cents = <int128*>grown
        s.cap = cap
    a = strtable_add(&s.importers, 0, p, n, h, &is_new)
    if a < 0 or not is_new:
        return a
    memset(&s.accounts[a], 0, sizeof(Account))
    s.accounts[a].first_date = 2147483647
    s.accounts[a].last_date = -2147483648
    memset(&s.center_lines[a * n_centers], 0, n_centers * sizeof(int64_t))
    memset(&s.center_cents[a * n_centers], 0, n_centers * sizeof(int128))
    return a


cdef inline int shard_of(uint64_t importer_hash, int n_shards) noexcept nogil:
    return <int>((importer_hash >> 40) % <uint64_t>n_shards)


cdef int fold_shard(
    Shard* s, int n_centers, const Columns* c, const int32_t* rows, int64_t n_rows,
    const uint64_t* importer_hash, const uint64_t* entry_hash,
    const uint64_t* mfr_hash, const uint64_t* port_hash, const int64_t* value_cents, const int64_t* duty_cents,
    const int32_t* day, const int8_t* center, const int8_t* chapter, const int16_t* country,
    const int16_t* port,
) noexcept nogil:
    """Folds one shard's accepted lines (``rows``, in batch order) into its accounts.

    Returns -1 if out of memory. Lines of one entry usually arrive together, so a line
    that repeats the previous line's importer, entry, port or manufacturer skips that
    hash-table probe.
    """
    cdef int64_t i, j, a = -1, a_next, k, n, prev = -1
    cdef const char* p
    cdef bint same_account
    cdef int added
    cdef Account* acc
    for j in range(n_rows):
        # Two-stage prefetch: a line's hash slots 2 * AHEAD lines early, its keys AHEAD early.
        if j + 2 * PREFETCH_AHEAD < n_rows:
            k = rows[j + 2 * PREFETCH_AHEAD]
            prefetch(&s.importers.slots[importer_hash[k] & s.importers.mask])
            prefetch(&s.entries.slots[entry_hash[k] & s.entries.mask])
            prefetch(&s.ports.slots[port_hash[k] & s.ports.mask])
            prefetch(&s.manufacturers.slots[mfr_hash[k] & s.manufacturers.mask])
        if j + PREFETCH_AHEAD < n_rows:
            k = rows[j + PREFETCH_AHEAD]
            a_next = strtable_prefetch_key(&s.importers, importer_hash[k])
            if a_next >= 0:
                prefetch(&s.accounts[a_next])
                prefetch(&s.center_lines[a_next * n_centers])
                prefetch(&s.center_cents[a_next * n_centers])
        i = rows[j]
        get_str(&c.importer_id, i, &p, &n)
        same_account = prev >= 0 and importer_hash[i] == importer_hash[prev] and _same_str(&c.importer_id, prev, p, n)
        if not same_account:
            a = shard_account(s, p, n, importer_hash[i], n_centers)
            if a < 0:
                return -1
        acc = &s.accounts[a]
        acc.lines += 1
        acc.value_cents += value_cents[i]
        acc.duty_cents += duty_cents[i]
        if day[i] < acc.first_date:
            acc.first_date = day[i]
        if day[i] > acc.last_date:
            acc.last_date = day[i]
        acc.chapters[chapter[i] >> 6] |= (<uint64_t>1) << (chapter[i] & 63)
        acc.countries[country[i] >> 6] |= (<uint64_t>1) << (country[i] & 63)
        if center[i] >= 0:
            s.center_lines[a * n_centers + center[i]] += 1
            s.center_cents[a * n_centers + center[i]] += value_cents[i]
        if not (same_account and entry_hash[i] == entry_hash[prev]):
            added = pairset_add(&s.entries, <uint32_t>a, entry_hash[i])
            if added < 0:
                return -1
            acc.entries += added
        if not (same_account and port[i] == port[prev]):
            added = intset_add(&s.ports, <uint64_t>a * PORT_RADIX + <uint64_t>port[i], port_hash[i])
            if added < 0:
                return -1
            acc.ports += added
        if mfr_hash[i] != 0 and not (same_account and mfr_hash[i] == mfr_hash[prev]):
            added = pairset_add(&s.manufacturers, <uint32_t>a, mfr_hash[i])
            if added < 0:
                return -1
            acc.manufacturers += added
        prev = i
    return 0


cdef inline bint _same_str(const StrCol* col, int64_t row, const char* p, int64_t n) noexcept nogil:
    """Whether string ``row`` of ``col`` equals p[:n]."""
    cdef const char* q
    cdef int64_t m
    return get_str(col, row, &q, &m) and m == n and bytes_equal(p, q, n)


cdef object _view(void* src, Py_ssize_t nbytes):
    """A read-only numpy view of ``nbytes`` of kernel memory (no copy, no ownership)."""
    if nbytes == 0 or src == NULL:
        return np.empty(0, np.uint8)
    out = np.asarray(<uint8_t[:nbytes]>(<uint8_t*>src))
    out.flags.writeable = False
    return out


cdef tuple _pairs_out(const PairSet* s):
    """A pair set's (group, hash) pairs, in slot order, as two numpy arrays."""
    groups_arr = np.empty(s.n, np.uint32)
    hashes_arr = np.empty(s.n, np.uint64)
    cdef uint32_t[::1] groups = groups_arr
    cdef uint64_t[::1] hashes = hashes_arr
    cdef uint64_t slot
    cdef int64_t used = 0
    with nogil:
        for slot in range(s.mask + 1):
            if s.slots[slot].group_plus_1 != 0:
                groups[used] = s.slots[slot].group_plus_1 - 1
                hashes[used] = s.slots[slot].hash
                used += 1
    return groups_arr, hashes_arr


cdef class AccountKernel:
    """Compiled account state, sharded by importer hash (one shard per thread)."""
    cdef Shard* shards
    cdef readonly int n_shards
    cdef readonly int n_centers
    cdef const int32_t[::1] epoch_starts
    cdef const int8_t[:, ::1] center_table
    cdef object _scratch
    cdef bint broken            # an update or absorb stopped half-way: the state is incomplete

    def __cinit__(self, int n_shards, int n_centers, epoch_starts, center_table):
        cdef int k
        if n_shards < 1 or n_shards > 256:
            raise ValueError("n_shards must be in 1..256")
        self.epoch_starts = np.ascontiguousarray(epoch_starts, dtype=np.int32)
        self.center_table = np.ascontiguousarray(center_table, dtype=np.int8)
        if (self.center_table.shape[1] != N_HEADINGS or self.epoch_starts.shape[0] < 1
                or self.center_table.shape[0] != self.epoch_starts.shape[0]):
            raise ValueError("center_table must have shape (len(epoch_starts) >= 1, 10000)")
        if n_centers < 1 or n_centers > 127 or np.max(center_table) >= n_centers or np.min(center_table) < -1:
            raise ValueError("center_table holds Center indexes outside 0..n_centers-1 (or -1)")
        self.n_centers = n_centers
        self.n_shards = n_shards
        self.shards = <Shard*>calloc(n_shards, sizeof(Shard))
        if self.shards == NULL:
            raise MemoryError()
        for k in range(n_shards):
            if shard_init(&self.shards[k]) != 0:
                raise MemoryError()

    def __dealloc__(self):
        cdef int k
        if self.shards != NULL:
            for k in range(self.n_shards):
                shard_free(&self.shards[k])
            free(self.shards)

    def update(self, batch, const uint8_t[::1] prechecked, int threads, bint fold=True):
        """Checks and folds one canonical batch; returns the reject reason code per row.

        With ``fold`` false the batch is only checked and parsed (see :meth:`parsed`):
        the accounts are left as they were.
        """
        cdef BatchView view = BatchView(batch)
        cdef Columns c
        view.bind_str("entry_number", &c.entry_number)
        view.bind_num("line_number", &c.line_number, NUM_INT64)
        view.bind_str("importer_id", &c.importer_id)
        view.bind_str("port_code", &c.port_code)
        view.bind_num("entry_date", &c.entry_date, NUM_DATE32)
        view.bind_str("hts_code", &c.hts_code)
        view.bind_str("country_of_origin", &c.country_of_origin)
        view.bind_num("entered_value", &c.entered_value, NUM_FLOAT64)
        view.bind_num("duty_paid", &c.duty_paid, NUM_FLOAT64)
        view.bind_num("duty_rate", &c.duty_rate, NUM_FLOAT64)
        view.bind_num("quantity", &c.quantity, NUM_FLOAT64)
        view.bind_num("gross_weight_kg", &c.gross_weight_kg, NUM_FLOAT64)
        view.bind_str("manufacturer_id", &c.manufacturer_id)

        cdef int64_t n = view.length
        if prechecked.shape[0] != n:
            raise ValueError("prechecked must have one reason per row")
        reasons_arr = np.array(prechecked, dtype=np.uint8, copy=True)
        cdef uint8_t[::1] reason = reasons_arr
        if self._scratch is None or len(self._scratch["day"]) < n:  # reused: no page faults per batch
            self._scratch = {name: np.zeros(max(n, 1), dtype) for name, dtype in SCRATCH_COLUMNS.items()}
        cdef uint64_t[::1] imp_h = self._scratch["importer_hash"]
        cdef uint64_t[::1] ent_h = self._scratch["entry_hash"]
        cdef uint64_t[::1] mfr_h = self._scratch["manufacturer_hash"]
        cdef uint64_t[::1] port_h = self._scratch["port_hash"]
        cdef int64_t[::1] value = self._scratch["value_cents"]
        cdef int64_t[::1] duty = self._scratch["duty_cents"]
        cdef int32_t[::1] day = self._scratch["day"]
        cdef int8_t[::1] center = self._scratch["center"]
        cdef int8_t[::1] chapter = self._scratch["chapter"]
        cdef int16_t[::1] country = self._scratch["country"]
        cdef int16_t[::1] port = self._scratch["port"]
        cdef int64_t[::1] hts = self._scratch["hts"]
        cdef int32_t[::1] shard_rows = self._scratch["shard_rows"]
        cdef int64_t[::1] shard_start = np.zeros(self.n_shards + 1, np.int64)
        cdef int64_t[::1] fill = np.zeros(self.n_shards, np.int64)
        cdef int64_t i
        cdef int s, failed = 0, shard_threads
        cdef int n_epochs = self.epoch_starts.shape[0]
        cdef const int32_t* starts = &self.epoch_starts[0]
        cdef const int8_t* table = &self.center_table[0, 0]
        if n == 0:
            return reasons_arr
        threads = max(1, threads)
        shard_threads = min(threads, self.n_shards)
        with nogil:
            for i in prange(n, num_threads=threads, schedule="static"):
                reason[i] = check_line(
                        &c, i, reason[i], starts, n_epochs, table, &imp_h[0], &ent_h[0], &mfr_h[0], &port_h[0],
                        &value[0], &duty[0], &day[0], &center[0], &chapter[0], &country[0], &port[0], &hts[0])
        if not fold:
            return reasons_arr
        with nogil:
            # Group accepted rows by shard, keeping batch order within each shard.
            for s in range(self.n_shards + 1):
                shard_start[s] = 0
            for i in range(n):
                if reason[i] == OK:
                    shard_start[shard_of(imp_h[i], self.n_shards) + 1] += 1
            for s in range(self.n_shards):
                shard_start[s + 1] += shard_start[s]
                fill[s] = shard_start[s]
            for i in range(n):
                if reason[i] == OK:
                    s = shard_of(imp_h[i], self.n_shards)
                    shard_rows[fill[s]] = <int32_t>i
                    fill[s] += 1
            for s in prange(self.n_shards, num_threads=shard_threads, schedule="static"):
                if fold_shard(&self.shards[s], self.n_centers, &c, &shard_rows[shard_start[s]],
                              shard_start[s + 1] - shard_start[s], &imp_h[0], &ent_h[0], &mfr_h[0], &port_h[0], &value[0], &duty[0], &day[0],
                              &center[0], &chapter[0], &country[0], &port[0]) != 0:
                    failed += 1
        if failed:
            self.broken = True
            raise MemoryError("out of memory while consolidating accounts")
        return reasons_arr

    def parsed(self, batch, const uint8_t[::1] codes):
        """The last update's parse of the accepted rows of ``batch`` (the batch it
        checked), one array per field (see :data:`PARSED_COLUMNS`), with the numbers
        scoring derives from them: the HTS number at 6 and 4 digits, the effective duty
        rate (basis points), the preference program's code (SPI text, stripped and upper
        case, its first 7 bytes as a big-endian number; 0 for none) and the natural log of
        the unit value, per unit of quantity (basis 0) or else per kg (basis 1), NaN when
        neither can be computed."""
        cdef BatchView view = BatchView(batch)
        cdef int64_t n = view.length, i, j = 0, m = 0
        if codes.shape[0] != n or (n and (self._scratch is None or len(self._scratch["day"]) < n)):
            raise ValueError("parsed takes the batch (and codes) of the last update")
        cdef StrCol spi_col
        cdef NumCol quantity_col, weight_col
        view.bind_str("spi", &spi_col)
        view.bind_num("quantity", &quantity_col, NUM_FLOAT64)
        view.bind_num("gross_weight_kg", &weight_col, NUM_FLOAT64)
        for i in range(n):
            m += codes[i] == OK
        out = {name: np.empty(m, dtype) for name, dtype in PARSED_COLUMNS.items()}
        if m == 0:
            return out
        cdef int64_t[::1] rows = out["rows"]
        cdef uint64_t[::1] o_importer = out["importer_hash"], o_entry = out["entry_hash"]
        cdef uint64_t[::1] o_maker = out["manufacturer_hash"]
        cdef int64_t[::1] o_value = out["value_cents"], o_duty = out["duty_cents"], o_day = out["day"]
        cdef int64_t[::1] o_center = out["center"], o_country = out["country"], o_port = out["port"]
        cdef int64_t[::1] o_hts = out["hts"], o_hts6 = out["hts6"], o_hts4 = out["hts4"], o_rate = out["rate_bp"]
        cdef int64_t[::1] o_spi = out["spi"], o_basis = out["basis"]
        cdef double[::1] o_log_uv = out["log_uv"]
        cdef uint64_t[::1] imp_h = self._scratch["importer_hash"], ent_h = self._scratch["entry_hash"]
        cdef uint64_t[::1] mfr_h = self._scratch["manufacturer_hash"]
        cdef int64_t[::1] value = self._scratch["value_cents"], duty = self._scratch["duty_cents"]
        cdef int64_t[::1] hts = self._scratch["hts"]
        cdef int32_t[::1] day = self._scratch["day"]
        cdef int8_t[::1] center = self._scratch["center"]
        cdef int16_t[::1] country = self._scratch["country"], port = self._scratch["port"]
        cdef int64_t number, digits
        cdef double quantity, weight, dollars, uv
        with nogil:
            for i in range(n):
                if codes[i] != OK:
                    continue
                rows[j] = i
                o_importer[j], o_entry[j], o_maker[j] = imp_h[i], ent_h[i], mfr_h[i]
                o_value[j], o_duty[j], o_day[j] = value[i], duty[i], day[i]
                o_center[j], o_country[j], o_port[j] = center[i], country[i], port[i]
                o_hts[j] = hts[i]
                number, digits = hts[i] >> 4, hts[i] & 15
                o_hts6[j] = number // pow10(digits - 6)
                o_hts4[j] = number // pow10(digits - 4)
                o_rate[j] = <int64_t>rint(duty[i] / <double>value[i] * 10000) if value[i] > 0 else 0
                o_spi[j] = spi_code(&spi_col, i)
                dollars = value[i] / 100.0
                if not get_f64(&quantity_col, i, &quantity):
                    quantity = NAN
                if not get_f64(&weight_col, i, &weight):
                    weight = NAN
                o_basis[j] = 1
                uv = NAN
                if quantity > 0 and dollars > 0:
                    uv, o_basis[j] = log(dollars / quantity), 0
                elif weight > 0 and dollars > 0:
                    uv = log(dollars / weight)
                o_log_uv[j] = uv if isfinite(uv) else NAN  # a quantity like 1e-310 gives no usable unit value
                j += 1
        return out

    def account_views(self, int k):
        """Shard k's accounts as numpy views of kernel memory, in shard-local order.

        No copy is made: the views are valid only until the next update or absorb.
        """
        cdef Shard* s = self._shard(k)
        cdef int64_t n = s.importers.n
        return {
            "importer_offsets": _view(s.importers.starts, (n + 1) * sizeof(int64_t)).view(np.int64),
            "importer_data": _view(s.importers.arena, s.importers.arena_len),
            "accounts": _view(s.accounts, n * sizeof(Account)).view(ACCOUNT_DTYPE),
            "center_lines": _view(s.center_lines, n * self.n_centers * sizeof(int64_t))
            .view(np.int64).reshape(n, self.n_centers),
            "center_cents": _view(s.center_cents, n * self.n_centers * sizeof(int128))
            .view(np.int64).reshape(n, self.n_centers, 2),
        }

    def export_keys(self, int k):
        """Shard k's distinct (account, key) pairs: entries and manufacturers (as the pair
        hashes the kernel keeps, in slot order) and ports."""
        cdef Shard* s = self._shard(k)
        entry_account, entry_hash = _pairs_out(&s.entries)
        manufacturer_account, manufacturer_hash = _pairs_out(&s.manufacturers)
        ports_arr = np.empty(s.ports.n, np.uint64)
        cdef uint64_t[::1] ports_out = ports_arr
        cdef uint64_t slot, used = 0
        for slot in range(s.ports.mask + 1):
            if s.ports.slots[slot].id_plus_1 != 0:
                ports_out[used] = s.ports.slots[slot].where
                used += 1
        ports = np.sort(ports_arr)
        return {
            "entry_account": entry_account, "entry_hash": entry_hash,
            "manufacturer_account": manufacturer_account, "manufacturer_hash": manufacturer_hash,
            "port_account": (ports // PORT_RADIX).astype(np.int64),
            "port_code": (ports % PORT_RADIX).astype(np.int16),
        }

    cdef Shard* _shard(self, int k) except NULL:
        self._check_usable()
        if k < 0 or k >= self.n_shards:
            raise IndexError(k)
        return &self.shards[k]

    cdef int _check_usable(self) except -1:
        if self.broken:
            raise RuntimeError("this account state is incomplete: an earlier update or merge failed "
                               "part-way (out of memory); rebuild it")
        return 0

    def absorb(self, importers, accounts, const int64_t[:, ::1] center_lines,
               const int64_t[:, :, ::1] center_cents, const int64_t[::1] entry_row, const uint64_t[::1] entries,
               const int64_t[::1] manufacturer_row, const uint64_t[::1] manufacturers,
               const int64_t[::1] port_row, const int16_t[::1] port_code):
        """Adds exported state: accounts (one row per importer) and their distinct keys.

        ``importers`` is a record batch with one string column ``key``; ``entries`` and
        ``manufacturers`` hold pair hashes (see :meth:`export_keys`), ``*_row`` each key's
        account row in ``importers``. An error part-way (bad input, out of memory) leaves
        the kernel unusable.
        """
        self._check_usable()
        cdef BatchView imp_view = BatchView(importers)
        cdef StrCol imp
        imp_view.bind_str("key", &imp)
        if accounts.dtype != ACCOUNT_DTYPE:
            raise TypeError("absorb: accounts must have ACCOUNT_DTYPE")
        cdef const char[::1] raw = np.ascontiguousarray(accounts).view(np.int8).reshape(-1)
        cdef const Account* rows = <const Account*>&raw[0] if raw.shape[0] else NULL
        cdef int64_t n = imp_view.length, i, j, a, k, slen
        cdef int nc = self.n_centers
        if (accounts.shape[0] != n or center_lines.shape[0] != n or center_cents.shape[0] != n
                or center_lines.shape[1] != nc or center_cents.shape[1] != nc or center_cents.shape[2] != 2):
            raise ValueError("absorb: account arrays disagree in length or Center count")
        if (entry_row.shape[0] != entries.shape[0] or manufacturer_row.shape[0] != manufacturers.shape[0]
                or port_row.shape[0] != port_code.shape[0]):
            raise ValueError("absorb: key arrays disagree in length")
        hash_arr = np.empty(n, np.uint64)
        cdef uint64_t[::1] importer_hash = hash_arr
        self.broken = True  # until every row is in
        shard_arr = np.empty(n, np.int32)
        local_arr = np.empty(n, np.int64)
        cdef int32_t[::1] shard = shard_arr
        cdef int64_t[::1] local = local_arr
        cdef const char* p
        cdef uint64_t h
        cdef Shard* s
        cdef Account* acc
        cdef const Account* src
        for i in range(n):
            if not get_str(&imp, i, &p, &slen) or slen == 0 or not key_ok(p, slen):
                raise ValueError(f"absorb: importer at row {i} is null, empty or malformed")
            h = hash_bytes(p, slen)
            importer_hash[i] = h
            shard[i] = shard_of(h, self.n_shards)
            s = &self.shards[shard[i]]
            a = shard_account(s, p, slen, h, nc)
            if a < 0:
                raise MemoryError()
            local[i] = a
            acc = &s.accounts[a]
            src = &rows[i]
            acc.lines += src.lines
            acc.value_cents += src.value_cents
            acc.duty_cents += src.duty_cents
            acc.first_date = min(acc.first_date, src.first_date)
            acc.last_date = max(acc.last_date, src.last_date)
            for k in range(N_CHAPTER_WORDS):
                acc.chapters[k] |= src.chapters[k]
            for k in range(N_COUNTRY_WORDS):
                acc.countries[k] |= src.countries[k]
            for k in range(nc):
                s.center_lines[a * nc + k] += center_lines[i, k]
                s.center_cents[a * nc + k] += <int128>(
                    ((<uint128>(<uint64_t>center_cents[i, k, 1])) << 64) | <uint128>(<uint64_t>center_cents[i, k, 0]))
        for j in range(entries.shape[0]):
            i = entry_row[j]
            if i < 0 or i >= n:
                raise ValueError(f"absorb: bad entry row at {j}")
            s = &self.shards[shard[i]]
            k = pairset_add(&s.entries, <uint32_t>local[i], entries[j])
            if k < 0:
                raise MemoryError()
            s.accounts[local[i]].entries += k
        for j in range(manufacturers.shape[0]):
            i = manufacturer_row[j]
            if i < 0 or i >= n or manufacturers[j] & 1 == 0:  # (the kernel's are odd: 0 marks none)
                raise ValueError(f"absorb: bad manufacturer hash at row {j}")
            s = &self.shards[shard[i]]
            k = pairset_add(&s.manufacturers, <uint32_t>local[i], manufacturers[j])
            if k < 0:
                raise MemoryError()
            s.accounts[local[i]].manufacturers += k
        for j in range(port_row.shape[0]):
            i = port_row[j]
            if i < 0 or i >= n or port_code[j] < 0 or port_code[j] >= PORT_RADIX:
                raise ValueError(f"absorb: bad port at row {j}")
            s = &self.shards[shard[i]]
            a = local[i]
            k = intset_add(&s.ports, <uint64_t>a * PORT_RADIX + <uint64_t>port_code[j],
                           pair_hash(<uint64_t>port_code[j], importer_hash[i]))
            if k < 0:
                raise MemoryError()
            s.accounts[a].ports += k
        self.broken = False


# Per-line scratch of a batch between the two passes, one array each.
SCRATCH_COLUMNS = {name: dtype for name, dtype in (
    ("importer_hash", np.uint64), ("entry_hash", np.uint64), ("manufacturer_hash", np.uint64),
    ("port_hash", np.uint64), ("value_cents", np.int64), ("duty_cents", np.int64), ("day", np.int32),
    ("center", np.int8), ("chapter", np.int8), ("country", np.int16), ("port", np.int16), ("hts", np.int64),
    ("shard_rows", np.int32))}

# What :meth:`AccountKernel.parsed` hands out per accepted row: its row in the batch,
# the hashes of its importer and of its (importer, entry) and (importer, manufacturer)
# pairs, and its numbers.
PARSED_COLUMNS = {name: dtype for name, dtype in (
    ("rows", np.int64), ("importer_hash", np.uint64), ("entry_hash", np.uint64), ("manufacturer_hash", np.uint64),
    ("value_cents", np.int64), ("duty_cents", np.int64), ("day", np.int64), ("center", np.int64),
    ("country", np.int64), ("port", np.int64), ("hts", np.int64), ("hts6", np.int64), ("hts4", np.int64),
    ("rate_bp", np.int64), ("spi", np.int64), ("log_uv", np.float64), ("basis", np.int64))}

# int128 cents as (low, high) int64 words: the layout of an Arrow decimal128's unscaled value.
ACCOUNT_DTYPE = np.dtype([
    ("value_cents", np.int64, (2,)), ("duty_cents", np.int64, (2,)), ("lines", np.int64),
    ("entries", np.int64), ("manufacturers", np.int64), ("ports", np.int64),
    ("first_date", np.int32), ("last_date", np.int32),
    ("chapters", np.uint64, (N_CHAPTER_WORDS,)), ("countries", np.uint64, (N_COUNTRY_WORDS,)),
])
assert ACCOUNT_DTYPE.itemsize == sizeof(Account)
