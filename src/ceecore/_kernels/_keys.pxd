# The keys of the baseline tallies, built per line from its parsed fields: one
# definition shared by the fused fitting and scoring kernels, so a line's key at fit
# time and at scoring time cannot differ.
from libc.stdint cimport int64_t, uint64_t

from ceecore._kernels._tally cimport hash_part, hash_parts_seed, key2, key3

# Tags of the hashed keys (one per kind of key, so kinds never collide).
cdef enum:
    TAG_AP = 1
    TAG_AP_DAYS = 2
    TAG_AP_EARLIEST = 3
    TAG_CLS_GROUP = 4
    TAG_CLS_PORT = 5
    TAG_CLS_HTS = 6
    TAG_ACCT_PORT = 7
    TAG_CLAIM = 8
    TAG_ACCT_MONTH = 9
    TAG_CLS_HTS_PORT = 10
    TAG_PORT_UV = 11

cdef enum:
    ANY_ORIGIN = 1023


cdef inline uint64_t uv_group(int64_t level, int64_t basis, int64_t hts, int64_t origin) noexcept nogil:
    """The unit-value group key at a level: (level, basis, hts code, origin) packed in 52 bits."""
    return <uint64_t>((level << 50) | (basis << 49) | (hts << 10) | origin)


cdef inline uint64_t ap_key(uint64_t importer, int64_t hts10, int64_t country, int64_t basis) noexcept nogil:
    """(importer, hts10, origin, basis): an account's product from one origin."""
    return key3(TAG_AP, importer, <uint64_t>hts10, <uint64_t>(country * 2 + basis))


cdef inline uint64_t port_uv_key(uint64_t importer, int64_t hts10, int64_t country, int64_t basis,
                                int64_t port) noexcept nogil:
    """(importer, hts10, origin, basis, port): an account's product from one origin at one port."""
    return key3(TAG_PORT_UV, importer, <uint64_t>hts10, <uint64_t>(((country * 2 + basis) << 16) | port))


cdef inline uint64_t ap_day_key(uint64_t importer, int64_t hts10, int64_t country) noexcept nogil:
    return key3(TAG_AP_DAYS, importer, <uint64_t>hts10, <uint64_t>country)


cdef inline uint64_t earliest_key(uint64_t importer, int64_t hts10) noexcept nogil:
    return key2(TAG_AP_EARLIEST, importer, <uint64_t>hts10)


cdef inline uint64_t cls_group_key(uint64_t maker, int64_t hts4) noexcept nogil:
    return key2(TAG_CLS_GROUP, maker, <uint64_t>hts4)


cdef inline uint64_t cls_port_key(uint64_t maker, int64_t hts4, int64_t port) noexcept nogil:
    return key3(TAG_CLS_PORT, maker, <uint64_t>hts4, <uint64_t>port)


cdef inline uint64_t cls_hts_key(uint64_t maker, int64_t hts10) noexcept nogil:
    return key2(TAG_CLS_HTS, maker, <uint64_t>hts10)


cdef inline uint64_t cls_hts_port_key(uint64_t maker, int64_t hts10, int64_t port) noexcept nogil:
    return key3(TAG_CLS_HTS_PORT, maker, <uint64_t>hts10, <uint64_t>port)


cdef inline uint64_t duty_key(bint claimed, int64_t hts10, int64_t country) noexcept nogil:
    """(claimed a preference, hts10, origin), packed."""
    return <uint64_t>((<int64_t>claimed << 50) | (hts10 << 10) | country)


cdef inline uint64_t origin_key(int64_t hts6, int64_t origin) noexcept nogil:
    return <uint64_t>((hts6 << 10) | origin)


cdef inline uint64_t claim_key(int64_t origin, int64_t spi) noexcept nogil:
    """(origin, program); program 0 stands for all of the origin's lines."""
    return key2(TAG_CLAIM, <uint64_t>origin, <uint64_t>spi)


cdef inline uint64_t acct_port_key(uint64_t importer, int64_t port) noexcept nogil:
    return key2(TAG_ACCT_PORT, importer, <uint64_t>port)


cdef inline int64_t floor_div(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t month_of(int64_t day) noexcept nogil:
    """Calendar months since 1970-01 of a day since 1970-01-01 (civil calendar)."""
    cdef int64_t z = day + 719468
    cdef int64_t era = floor_div(z, 146097)
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t month = mp + 3 if mp < 10 else mp - 9
    cdef int64_t year = yoe + era * 400 + (1 if month <= 2 else 0)
    return (year - 1970) * 12 + month - 1


cdef inline uint64_t month_key(uint64_t importer, int64_t day) noexcept nogil:
    """(importer, calendar month of the entry date)."""
    return key2(TAG_ACCT_MONTH, importer, <uint64_t>month_of(day))


# cls_group_max packs a line's rate (basis points, capped at 2^24 - 1) above its HTS
# number (the ``hts10`` code, digits * 16 + digit count), so that the tally's max keeps
# the heading's dearest rate and the number declared at it.
cdef inline int64_t dearest_pack(int64_t rate_bp, int64_t hts10) noexcept nogil:
    """The packed (rate, HTS number); a code too large to pack (none of 10 digits is) as 0."""
    cdef int64_t hts_limit = (<int64_t>1) << 38, rate_limit = (<int64_t>1) << 24
    if hts10 < 0 or hts10 >= hts_limit:
        hts10 = 0
    return min(max(rate_bp, 0), rate_limit - 1) * hts_limit + hts10


cdef inline int64_t dearest_hts(int64_t packed) noexcept nogil:
    return packed & (((<int64_t>1) << 38) - 1)


cdef inline int64_t dearest_rate(int64_t packed) noexcept nogil:
    return packed >> 38
