# cython: language_level=3
"""Binds record-batch columns, imported through the Arrow C Data Interface, to readers.

Any producer works (pyarrow, polars, duckdb, nanoarrow): the batch only has to offer
``__arrow_c_array__`` returning a struct array whose children are the columns.
"""
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdlib cimport calloc, free

from ceecore._kernels.arrow_c cimport ArrowArray, ArrowSchema

_NUM_FORMATS = {NUM_INT64: b"l", NUM_FLOAT64: b"g", NUM_DATE32: b"tdD"}
_NUM_NAMES = {NUM_INT64: "int64", NUM_FLOAT64: "float64", NUM_DATE32: "date32"}
_INDEX_FORMATS = {b"c": (1, True), b"C": (1, False), b"s": (2, True), b"S": (2, False),
                  b"i": (4, True), b"I": (4, False), b"l": (8, True), b"L": (8, False)}


cdef int _bind_plain(StrCol* c, ArrowSchema* s, ArrowArray* a, int64_t parent_offset, str name) except -1:
    fmt = (<bytes>s.format)
    c.offset = a.offset + parent_offset
    c.validity = <const uint8_t*>a.buffers[0] if a.null_count != 0 else NULL
    c.index_width = 0
    c.dictionary = NULL
    if fmt in (b"u", b"z"):
        c.kind = STR_SMALL
    elif fmt in (b"U", b"Z"):
        c.kind = STR_LARGE
    elif fmt in (b"vu", b"vz"):
        c.kind = STR_VIEW
        c.offsets = <const char*>a.buffers[1]
        c.view_data = a.buffers + 2
        return 0
    else:
        raise TypeError(f"column {name!r}: expected a string column, got Arrow format {fmt.decode()!r}")
    c.offsets = <const char*>a.buffers[1]
    c.data = <const char*>a.buffers[2]
    return 0


cdef class BatchView:
    def __cinit__(self, batch):
        if not hasattr(batch, "__arrow_c_array__"):
            raise TypeError(f"expected an Arrow record batch (__arrow_c_array__), got {type(batch).__name__}")
        self._schema_capsule, self._array_capsule = batch.__arrow_c_array__()
        self.schema = <ArrowSchema*>PyCapsule_GetPointer(self._schema_capsule, "arrow_schema")
        self.array = <ArrowArray*>PyCapsule_GetPointer(self._array_capsule, "arrow_array")
        if (<bytes>self.schema.format) != b"+s":
            raise TypeError("expected a record batch (an Arrow struct array)")
        self.length = self.array.length
        self._index = {}
        for k in range(self.schema.n_children):
            self._index[(<bytes>self.schema.children[k].name).decode()] = k
        self._dicts = <StrCol*>calloc(max(1, self.schema.n_children), sizeof(StrCol))
        self._n_dicts = 0
        if self._dicts == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self._dicts)

    cdef int bind_str(self, str name, StrCol* out) except -1:
        """Binds column ``name`` to ``out``; an absent column binds as all-null."""
        cdef ArrowSchema* s
        cdef ArrowArray* a
        cdef StrCol* d
        if name not in self._index:
            out.kind = STR_ABSENT
            out.index_width = 0
            return 0
        k = self._index[name]
        s = self.schema.children[k]
        a = self.array.children[k]
        if s.dictionary == NULL:
            return _bind_plain(out, s, a, self.array.offset, name)
        fmt = (<bytes>s.format)
        if fmt not in _INDEX_FORMATS:
            raise TypeError(f"column {name!r}: unsupported dictionary index format {fmt.decode()!r}")
        d = &self._dicts[self._n_dicts]
        self._n_dicts += 1
        _bind_plain(d, s.dictionary, a.dictionary, 0, name)
        out.kind = d.kind
        out.offset = a.offset + self.array.offset
        out.validity = <const uint8_t*>a.buffers[0] if a.null_count != 0 else NULL
        out.data = <const char*>a.buffers[1]
        out.index_width, out.index_signed = _INDEX_FORMATS[fmt]
        out.dictionary = d
        return 0

    cdef int bind_num(self, str name, NumCol* out, int kind) except -1:
        """Binds a numeric column of exactly the canonical ``kind``; absent binds as all-null."""
        cdef ArrowSchema* s
        cdef ArrowArray* a
        if name not in self._index:
            out.kind = NUM_ABSENT
            return 0
        k = self._index[name]
        s = self.schema.children[k]
        a = self.array.children[k]
        if (<bytes>s.format) != _NUM_FORMATS[kind]:
            raise TypeError(f"column {name!r}: expected {_NUM_NAMES[kind]}, got Arrow format {(<bytes>s.format).decode()!r}")
        out.kind = kind
        out.offset = a.offset + self.array.offset
        out.validity = <const uint8_t*>a.buffers[0] if a.null_count != 0 else NULL
        out.data = <const char*>a.buffers[1]
        return 0
