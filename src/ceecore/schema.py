"""The entry-line data contract: canonical columns, column mappings, normalisation.

Real files name their columns in many ways; a :class:`ColumnMapping` renames them to
the canonical snake_case names and supplies constants for absent ones.
:func:`canonicalize` then casts each needed column to its canonical Arrow type.

Two kinds of bad input are kept apart:

- structural problems (a required column missing, a column of a type that cannot
  become the canonical one) stop the run with a :class:`ContractError` naming the
  source and the column;
- bad values in single rows never stop anything: they become reject reasons, one per
  row. Values that cannot even be parsed (``"12,x"`` as a number, ``"2024-13-45"`` as
  a date) are found here; everything else (null or malformed keys, negative or
  non-finite money, bad HTS codes, ...) is checked by the compiled kernel.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceecore._kernels._accounts import REJECT_REASONS as _KERNEL_REASONS

# The kernel's reasons, then those found before a row reaches it: a CSV line that is not a
# row (too few or too many fields, text that is not UTF-8).
REJECT_REASONS = (*_KERNEL_REASONS, "malformed_csv_line")

__all__ = [
    "CANONICAL",
    "REQUIRED",
    "REJECT_REASONS",
    "ColumnMapping",
    "ContractError",
    "arrow_schema",
    "canonicalize",
    "parse_column",
    "reason_code",
]

# canonical name -> kind; the kind fixes the Arrow type the kernels read.
CANONICAL: dict[str, str] = {
    # required
    "entry_number": "text",
    "line_number": "int",
    "importer_id": "text",
    "port_code": "text",
    "entry_date": "date",
    "hts_code": "text",
    "country_of_origin": "text",
    "entered_value": "number",
    # optional
    "duty_paid": "number",
    "duty_rate": "number",
    "quantity": "number",
    "quantity_unit": "text",
    "gross_weight_kg": "number",
    "manufacturer_id": "text",
    "filer_code": "text",
    "entry_type": "text",
    "spi": "text",
    "country_of_export": "text",
    # outcomes (later issues)
    "inspected": "bool",
    "violation": "bool",
    "revenue_recovered": "number",
}
REQUIRED: tuple[str, ...] = (
    "entry_number", "line_number", "importer_id", "port_code",
    "entry_date", "hts_code", "country_of_origin", "entered_value",
)
_ARROW_TYPES = {"int": pa.int64(), "number": pa.float64(), "date": pa.date32(), "bool": pa.bool_()}
_NUMBER_RE = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_INT_RE = r"^\s*[-+]?\d{1,18}\s*$"  # more digits may not fit int64: such a cell is malformed
_INT64_LIMIT = 2.0**63
_ISO_DATE = "%Y-%m-%d"
_TRUE = ("1", "true", "t", "yes", "y")
_FALSE = ("0", "false", "f", "no", "n")


def read_toml(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """A TOML file as a dict; one clear ValueError if it cannot be read or parsed."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{os.fspath(path)}: cannot read the {what}: {exc}") from exc


def arrow_schema(columns: Iterable[str] = CANONICAL) -> pa.Schema:
    """The canonical Arrow types of ``columns`` (text as plain string), in the order given."""
    return pa.schema([(c, _ARROW_TYPES.get(CANONICAL[c], pa.string())) for c in columns])


def reason_code(reason: str) -> int:
    """The code of a reject reason name (its position in ``REJECT_REASONS``)."""
    return REJECT_REASONS.index(reason)


class ContractError(ValueError):
    """A structural problem with an input: stops the run with one clear message."""

    def __init__(self, source: str, message: str, column: str | None = None) -> None:
        self.source = source
        self.column = column
        where = f"{source}: column {column!r}: " if column else f"{source}: "
        super().__init__(where + message)


@dataclass(frozen=True)
class ColumnMapping:
    """How a file's columns become canonical ones.

    ``columns`` maps a source column name to a canonical name; ``constants`` gives a
    value for a canonical column the source lacks; ``date_format`` is the strptime
    format for dates stored as text (None: ISO, ``%Y-%m-%d``). Canonical names need
    no entry. ``history_keys`` names source columns outside the contract worth keeping
    an outcome history of, when learning from labels (``[history] keys``), and
    ``history_combined`` combinations of keys to keep one of (``[history] combined``: see
    :class:`ceecore.history.History`).
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, Any] = field(default_factory=dict)
    date_format: str | None = None
    history_keys: tuple[str, ...] = ()
    history_combined: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        for name in list(self.columns.values()) + list(self.constants):
            if name not in CANONICAL:
                raise ValueError(f"unknown canonical column {name!r}; known: {', '.join(CANONICAL)}")
        targets = list(self.columns.values())
        dup = {t for t in targets if targets.count(t) > 1}
        if dup:
            raise ValueError(f"several source columns map to {', '.join(sorted(dup))}")

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> ColumnMapping:
        """Reads ``[columns]`` (source = canonical), ``[constants]``, ``[options]`` and ``[history]``."""
        return cls._from_doc(read_toml(path, "column mapping"), os.fspath(path))

    @classmethod
    def preset(cls, name: str) -> ColumnMapping:
        """A mapping shipped with ceecore (``ceecore/data/presets/NAME.toml``)."""
        presets = resources.files("ceecore") / "data" / "presets"
        known = sorted(p.name[:-5] for p in presets.iterdir() if p.name.endswith(".toml"))
        if name not in known:
            raise ValueError(f"unknown column preset {name!r}; known: {', '.join(known)}")
        return cls._from_doc(tomllib.loads((presets / f"{name}.toml").read_text()), f"preset {name}")

    @classmethod
    def from_pairs(cls, pairs: Iterable[str]) -> ColumnMapping:
        """Parses ``source=canonical`` options (as given to ``--map``)."""
        columns = {}
        for pair in pairs:
            source, sep, canonical = pair.partition("=")
            if not sep or not source or not canonical:
                raise ValueError(f"--map takes source=canonical, got {pair!r}")
            columns[source] = canonical.strip()
        return cls(columns)

    @classmethod
    def _from_doc(cls, doc: dict[str, Any], where: str) -> ColumnMapping:
        unknown = set(doc) - {"columns", "constants", "options", "history"}
        if unknown:
            raise ValueError(f"{where}: unknown sections {sorted(unknown)}")
        for name, section in doc.items():
            if not isinstance(section, dict):
                raise ValueError(f"{where}: [{name}] must be a table of keys, got {section!r}")
        columns = doc.get("columns", {})
        bad = [source for source, target in columns.items() if not isinstance(target, str)]
        if bad:
            raise ValueError(f"{where}: [columns] maps source names to canonical names (text); not {bad[0]!r}")
        constants = doc.get("constants", {})
        bad = [name for name, value in constants.items()
               if not isinstance(value, (str, int, float, bool, dt.date)) or isinstance(value, dt.time)]
        if bad:
            raise ValueError(f"{where}: [constants] {bad[0]} must be a text, number, date or true/false")
        options = doc.get("options", {})
        if set(options) - {"date_format"}:
            raise ValueError(f"{where}: [options] knows only date_format")
        date_format = options.get("date_format")
        if date_format is not None and not (isinstance(date_format, str) and date_format):
            raise ValueError(f"{where}: [options] date_format must be a strptime format such as \"%m/%d/%Y\"")
        history = doc.get("history", {})
        keys, combined = history.get("keys", []), history.get("combined", [])
        if set(history) - {"keys", "combined"} or not isinstance(keys, list) \
                or not all(isinstance(k, str) and k for k in keys):
            raise ValueError(f"{where}: [history] keys must be a list of column names")
        if not isinstance(combined, list) or not all(isinstance(c, list) and all(isinstance(k, str) and k for k in c)
                                                     for c in combined):
            raise ValueError(f"{where}: [history] combined must be a list of lists of key names")
        try:
            return cls(dict(columns), dict(constants), date_format, tuple(keys), tuple(tuple(c) for c in combined))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc

    def then(self, other: ColumnMapping) -> ColumnMapping:
        """This mapping with ``other`` layered on top (other wins on conflicts)."""
        columns = {s: c for s, c in self.columns.items() if c not in other.columns.values()}
        columns.update(other.columns)
        date_format = other.date_format if other.date_format is not None else self.date_format
        return ColumnMapping(columns, {**self.constants, **other.constants}, date_format,
                             tuple(dict.fromkeys(self.history_keys + other.history_keys)),
                             tuple(dict.fromkeys(self.history_combined + other.history_combined)))

    def source_of(self, canonical: str) -> str:
        """The source column that feeds ``canonical`` (its own name if not renamed)."""
        for source, target in self.columns.items():
            if target == canonical:
                return source
        return canonical

    def sources_of(self, canonical: Iterable[str]) -> set[str]:
        """The source columns that feed the ``canonical`` ones."""
        return {self.source_of(c) for c in canonical}


def canonicalize(
    batch: pa.RecordBatch,
    mapping: ColumnMapping,
    columns: Collection[str],
    source: str,
) -> tuple[pa.RecordBatch, np.ndarray]:
    """The canonical columns ``columns`` of ``batch``, and a reject code per row.

    A name in ``columns`` outside the contract is passed through as text, if present.

    The code is 0 where every value parsed; otherwise the first unparseable column's
    ``bad_<column>`` reason. Raises :class:`ContractError` for structural problems.
    """
    n = batch.num_rows
    codes = np.zeros(n, dtype=np.uint8)
    names = batch.schema.names
    arrays, fields = [], []
    for canonical in columns:
        src = mapping.source_of(canonical)
        if src in names:
            array = batch.column(names.index(src))
        elif canonical in mapping.constants:
            array = _constant(mapping.constants[canonical], CANONICAL[canonical], n, source, canonical)
        elif canonical == "filer_code" and "entry_number" in columns:
            continue  # derived below from the entry number
        elif canonical in REQUIRED:
            hint = f" (looked for {src!r})" if src != canonical else ""
            raise ContractError(source, f"required column is missing{hint}", canonical)
        else:
            continue
        # Columns outside the contract (extra keys a user declares) are read as text.
        array, bad = _cast(array, CANONICAL.get(canonical, "text"), mapping.date_format or _ISO_DATE, source,
                           canonical)
        if bad is not None:
            first = (codes == 0) & bad
            codes[first] = reason_code(f"bad_{canonical}")
        arrays.append(array)
        fields.append(pa.field(canonical, array.type))
    if "filer_code" in columns and "filer_code" not in [f.name for f in fields]:
        entry = arrays[[f.name for f in fields].index("entry_number")]
        arrays.append(pc.utf8_slice_codeunits(plain_rows(entry), 0, 3))
        fields.append(pa.field("filer_code", arrays[-1].type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields)), codes


def parse_column(array: pa.Array, kind: str, source: str, column: str,
                 date_format: str = _ISO_DATE) -> tuple[pa.Array, np.ndarray | None]:
    """One column as its kind ("text", "int", "number", "date", "bool") reads it, the way
    the contract does, with a mask of the cells that do not parse (None if all do)."""
    return _cast(array, kind, date_format, source, column)


def _constant(value: Any, kind: str, n: int, source: str, column: str) -> pa.Array:
    try:
        scalar = pa.scalar(str(value) if kind == "text" else value)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ContractError(source, f"constant {value!r} does not fit: {exc}", column) from exc
    return pa.repeat(scalar, n)


def is_text(t: pa.DataType) -> bool:
    """Text, or bytes the kernel reads the same way."""
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
            or pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t))


def plain_rows(array: pa.Array, rows: pa.Array | None = None, kind: pa.DataType = pa.large_string()) -> pa.Array:
    """``array[rows]`` (every row if None) as ``kind``, from any layout the contract reads.

    Views, which pyarrow cannot take from, are made plain first; dictionaries are taken
    and then decoded, so their unused values never matter; bytes that are not UTF-8
    (binary columns: their rows are rejected) get replacement characters rather than
    failing the batch.
    """
    if pa.types.is_dictionary(array.type):
        array = decoded(array if rows is None else array.take(rows))
    else:
        if pa.types.is_string_view(array.type) or pa.types.is_binary_view(array.type):
            array = array.cast(pa.large_binary())
        if rows is not None:
            array = array.take(rows)
    try:
        return array.cast(kind)
    except pa.ArrowInvalid:
        values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array.to_pylist()]
        return pa.array(values, kind)


def decoded(array: pa.Array) -> pa.Array:
    """A dictionary array's values per row. pyarrow cannot take from view values (polars
    Categoricals are string_view dictionaries), so those are made plain first: the
    dictionary is small, the rows are not."""
    values = array.dictionary
    if pa.types.is_string_view(values.type) or pa.types.is_binary_view(values.type):
        plain = pa.large_string() if pa.types.is_string_view(values.type) else pa.large_binary()
        array = pa.DictionaryArray.from_arrays(array.indices, values.cast(plain))
    return array.dictionary_decode()


def _integer_text(array: pa.Array, column: str) -> pa.Array:
    """Integers as text. HTS numbers have 6, 8 or 10 digits: an odd count lost a leading zero."""
    text = array.cast(pa.string())
    if column != "hts_code":
        return text
    odd = pc.equal(pc.bit_wise_and(pc.utf8_length(text), 1), 1)
    return pc.if_else(odd, pc.binary_join_element_wise("0", text, ""), text)


def _cast(array: pa.Array, kind: str, date_format: str, source: str, column: str
          ) -> tuple[pa.Array, np.ndarray | None]:
    """Casts one column to its canonical type; also returns a mask of unparseable rows."""
    t = array.type
    if kind == "text":
        # Keys stay in whatever string layout they came in: the kernel reads them all.
        if is_text(t) or (pa.types.is_dictionary(t) and is_text(t.value_type)):
            return array, None
        if pa.types.is_null(t):
            return array.cast(pa.string()), None
        if pa.types.is_integer(t):
            return _integer_text(array, column), None
        if pa.types.is_dictionary(t) and pa.types.is_integer(t.value_type):
            return _integer_text(decoded(array), column), None
        raise ContractError(source, f"has type {t}, which cannot be read as text", column)
    if pa.types.is_dictionary(t):
        array, t = decoded(array), t.value_type
    target = _ARROW_TYPES[kind]
    if t == target:
        return array, None
    if is_text(t):
        return _parse_text(plain_rows(array), kind, date_format)
    if pa.types.is_null(t):
        return pa.nulls(len(array), target), None
    numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    try:
        if kind == "int" and pa.types.is_integer(t):
            if t != pa.uint64():
                return array.cast(target), None
            fits = pc.fill_null(pc.less_equal(array, pa.scalar(2**63 - 1, t)), True)
            return _keep(array, fits, target)
        if kind == "int" and numeric:  # floats and decimals: whole numbers that fit int64
            as_float = array.cast(pa.float64(), safe=False)
            whole = pc.equal(as_float, pc.floor(as_float))
            fits = pc.fill_null(pc.and_(whole, pc.less(pc.abs(as_float), _INT64_LIMIT)), True)
            return _keep(as_float, fits, target)
        if kind == "bool" and (pa.types.is_integer(t) or pa.types.is_floating(t)):
            return pc.not_equal(array, 0), None
        if kind == "number" and numeric:
            return array.cast(target, safe=False), None  # beyond 2**53 dollars, float rounding is moot
        if kind in ("int", "number") or (kind == "date" and not pa.types.is_temporal(t)):
            raise TypeError
        return array.cast(target), None
    except (TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ContractError(source, f"has type {t}, which cannot be cast to {target}", column) from exc


def _keep(array: pa.Array, fits: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray | None]:
    """``array`` cast to ``target`` where ``fits``; elsewhere null, and flagged."""
    bad = ~np.asarray(fits.to_numpy(zero_copy_only=False), dtype=bool)
    kept = pc.if_else(fits, array, pa.scalar(None, array.type)).cast(target, safe=False)
    return kept, bad if bad.any() else None


def _parse_text(array: pa.Array, kind: str, date_format: str) -> tuple[pa.Array, np.ndarray | None]:
    """Parses text cells; cells that do not parse become null and are flagged."""
    trimmed = pc.utf8_trim_whitespace(array)
    blank = pc.equal(trimmed, "")
    present = pc.and_(pc.is_valid(array), pc.invert(pc.fill_null(blank, False)))
    if kind == "date":
        stamps = pc.strptime(trimmed, format=date_format, unit="s", error_is_null=True)
        # strptime rolls impossible days over (2024-02-30 -> 03-01); a date must print back as read.
        same = pc.equal(_unpadded(pc.strftime(stamps, format=date_format)), _unpadded(trimmed))
        ok = pc.fill_null(same, False)
        parsed = stamps.cast(pa.date32())
    elif kind == "bool":
        lower = pc.utf8_lower(trimmed)
        is_true, is_false = pc.is_in(lower, pa.array(_TRUE)), pc.is_in(lower, pa.array(_FALSE))
        ok = pc.or_(is_true, is_false)
        parsed = pc.if_else(ok, is_true, pa.scalar(None, pa.bool_()))
    else:
        ok = pc.fill_null(pc.match_substring_regex(trimmed, _INT_RE if kind == "int" else _NUMBER_RE), False)
        clean = pc.if_else(ok, trimmed, pa.scalar(None, trimmed.type))
        parsed = clean.cast(_ARROW_TYPES[kind])
    bad = np.asarray(pc.and_(present, pc.invert(ok)).to_numpy(zero_copy_only=False), dtype=bool)
    parsed = pc.if_else(present, parsed, pa.scalar(None, parsed.type))
    return parsed, bad if bad.any() else None


def _unpadded(text: pa.Array) -> pa.Array:
    """Text with leading zeros of every number dropped ("2024-03-01" -> "2024-3-1")."""
    return pc.replace_substring_regex(text, r"(^|\D)0+(\d)", r"\1\2")
