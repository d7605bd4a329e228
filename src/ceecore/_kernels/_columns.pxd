# Column readers over Arrow C Data Interface arrays: string layouts (utf8, large_utf8,
# utf8_view, dictionary of any of those) and the canonical numeric types, with
# validity bitmaps, non-zero offsets and unaligned buffers (every read is a memcpy).
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from ceecore._kernels.arrow_c cimport ArrowArray, ArrowSchema

cdef enum:
    STR_ABSENT = 0
    STR_SMALL = 1   # utf8 / binary: int32 offsets
    STR_LARGE = 2   # large_utf8 / large_binary: int64 offsets
    STR_VIEW = 3    # utf8_view / binary_view: 16-byte views + variadic buffers

cdef enum:
    NUM_ABSENT = 0
    NUM_INT64 = 1
    NUM_FLOAT64 = 2
    NUM_DATE32 = 3

ctypedef struct StrCol:
    int kind
    int64_t offset
    const uint8_t* validity
    const char* offsets        # offsets (small/large) or the views buffer
    const char* data
    const void** view_data     # variadic data buffers of a view array
    int index_width            # 0 = plain; 1, 2, 4, 8 = dictionary index bytes
    bint index_signed
    StrCol* dictionary

ctypedef struct NumCol:
    int kind
    int64_t offset
    const uint8_t* validity
    const char* data


cdef inline bint bit_is_set(const uint8_t* bits, int64_t i) noexcept nogil:
    return (bits[i >> 3] >> (i & 7)) & 1


cdef inline bint plain_str(const StrCol* c, int64_t i, const char** p, int64_t* n) noexcept nogil:
    cdef int64_t j = c.offset + i
    cdef int32_t a32, b32, vlen, bidx, voff
    cdef int64_t a64, b64
    cdef const char* view
    if c.kind == STR_ABSENT:
        return False
    if c.validity != NULL and not bit_is_set(c.validity, j):
        return False
    if c.kind == STR_SMALL:
        memcpy(&a32, c.offsets + 4 * j, 4)
        memcpy(&b32, c.offsets + 4 * j + 4, 4)
        p[0] = c.data + a32
        n[0] = b32 - a32
    elif c.kind == STR_LARGE:
        memcpy(&a64, c.offsets + 8 * j, 8)
        memcpy(&b64, c.offsets + 8 * j + 8, 8)
        p[0] = c.data + a64
        n[0] = b64 - a64
    else:
        view = c.offsets + 16 * j
        memcpy(&vlen, view, 4)
        if vlen <= 12:
            p[0] = view + 4
        else:
            memcpy(&bidx, view + 8, 4)
            memcpy(&voff, view + 12, 4)
            p[0] = (<const char*>c.view_data[bidx]) + voff
        n[0] = vlen
    return True


cdef inline bint get_str(const StrCol* c, int64_t i, const char** p, int64_t* n) noexcept nogil:
    """The i-th string of a column (dictionary indices resolved); False if null or absent."""
    cdef int64_t j, k
    cdef int8_t k8
    cdef int16_t k16
    cdef int32_t k32
    cdef uint8_t u8
    cdef uint16_t u16
    cdef uint32_t u32
    if c.index_width == 0:
        return plain_str(c, i, p, n)
    j = c.offset + i
    if c.validity != NULL and not bit_is_set(c.validity, j):
        return False
    if c.index_width == 1:
        if c.index_signed:
            memcpy(&k8, c.data + j, 1); k = k8
        else:
            memcpy(&u8, c.data + j, 1); k = u8
    elif c.index_width == 2:
        if c.index_signed:
            memcpy(&k16, c.data + 2 * j, 2); k = k16
        else:
            memcpy(&u16, c.data + 2 * j, 2); k = u16
    elif c.index_width == 4:
        if c.index_signed:
            memcpy(&k32, c.data + 4 * j, 4); k = k32
        else:
            memcpy(&u32, c.data + 4 * j, 4); k = u32
    else:
        memcpy(&k, c.data + 8 * j, 8)
    return plain_str(c.dictionary, k, p, n)


cdef inline bint get_f64(const NumCol* c, int64_t i, double* out) noexcept nogil:
    cdef int64_t j = c.offset + i
    if c.kind != NUM_FLOAT64 or (c.validity != NULL and not bit_is_set(c.validity, j)):
        return False
    memcpy(out, c.data + 8 * j, 8)
    return True


cdef inline bint get_i64(const NumCol* c, int64_t i, int64_t* out) noexcept nogil:
    cdef int64_t j = c.offset + i
    if c.kind != NUM_INT64 or (c.validity != NULL and not bit_is_set(c.validity, j)):
        return False
    memcpy(out, c.data + 8 * j, 8)
    return True


cdef inline bint get_date32(const NumCol* c, int64_t i, int32_t* out) noexcept nogil:
    cdef int64_t j = c.offset + i
    if c.kind != NUM_DATE32 or (c.validity != NULL and not bit_is_set(c.validity, j)):
        return False
    memcpy(out, c.data + 4 * j, 4)
    return True


cdef class BatchView:
    """Keeps an imported Arrow struct array (a record batch) alive and binds its columns."""
    cdef object _schema_capsule
    cdef object _array_capsule
    cdef ArrowSchema* schema
    cdef ArrowArray* array
    cdef readonly int64_t length
    cdef dict _index
    cdef StrCol* _dicts          # storage for dictionaries of bound string columns
    cdef int _n_dicts

    cdef int bind_str(self, str name, StrCol* out) except -1
    cdef int bind_num(self, str name, NumCol* out, int kind) except -1
