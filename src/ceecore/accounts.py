"""The account book: every importer's entry lines consolidated nationwide.

An :class:`AccountBook` is mergeable state. Feed it record batches with
:meth:`~AccountBook.update`, combine partial books with :meth:`~AccountBook.merge`,
ship it across processes with :meth:`~AccountBook.to_arrow` /
:meth:`~AccountBook.from_arrow`, and read the consolidated accounts, each assigned to
its Center, with :meth:`~AccountBook.result`.

Everything in the state is exact (integer cents, min/max dates, sets of distinct
keys), so the same lines give the same book whatever the batching, merge order or
thread count. State grows with accounts and their distinct keys, never with lines.
Distinct entry numbers and manufacturers are kept as 64-bit hashes of each (importer,
key) pair (see ``_kernels/_accounts.pyx``), 12 bytes a key: the state never holds their
text, and two of one account's keys count as one only if their hashes collide.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceecore._kernels._accounts import ACCOUNT_DTYPE, AccountKernel
from ceecore._threads import resolve_threads
from ceecore.centers import CenterMap, Override
from ceecore.io import BATCH_ROWS, check_batch
from ceecore.schema import ColumnMapping, canonicalize

__all__ = ["AccountBook", "CONSOLIDATION_COLUMNS", "Intake", "assign_centers"]

# The canonical columns consolidation reads (and checks).
CONSOLIDATION_COLUMNS: tuple[str, ...] = (
    "entry_number", "line_number", "importer_id", "port_code", "entry_date", "hts_code",
    "country_of_origin", "entered_value", "duty_paid", "duty_rate", "quantity",
    "gross_weight_kg", "manufacturer_id",
)
# 2: distinct entries and manufacturers as their (importer, key) pair hashes, not their text.
STATE_KIND = b"ceecore.accounts/2"

_COUNTRY_NAMES = np.array([chr(65 + k // 26) + chr(65 + k % 26) for k in range(676)], dtype=object)
_PORT_NAMES = np.array([f"{k:04d}" for k in range(10000)], dtype=object)
_MONEY = pa.decimal128(38, 2)  # the unscaled value is the kernel's 128-bit cents


def _map_digest(centers: CenterMap) -> str:
    """A fingerprint of the HTS -> Center map as the kernel applies it."""
    starts, table = centers.lookup_tables()
    return hashlib.sha256(starts.tobytes() + table.tobytes() + ",".join(centers.codes).encode()).hexdigest()[:16]


def _state_schema(centers: CenterMap) -> pa.Schema:
    codes = centers.codes
    nc = len(codes)
    return pa.schema([
        ("importer_id", pa.large_string()),
        ("lines", pa.int64()),
        ("entered_value", _MONEY),
        ("duty", _MONEY),
        ("first_date", pa.date32()),
        ("last_date", pa.date32()),
        ("center_lines", pa.list_(pa.int64(), nc)),
        ("center_value", pa.list_(_MONEY, nc)),
        ("hts_chapters", pa.list_(pa.int8())),
        ("countries", pa.list_(pa.string())),
        ("ports", pa.list_(pa.string())),
        ("entry_hashes", pa.large_list(pa.uint64())),
        ("manufacturer_hashes", pa.large_list(pa.uint64())),
    ], metadata={b"ceecore.state": STATE_KIND, b"ceecore.centers": ",".join(codes).encode(),
                 b"ceecore.center_map": _map_digest(centers).encode()})


class Intake(NamedTuple):
    """One batch as consolidation saw it: its canonical columns, each row's reject code
    (0 = accepted), and the kernel's parse of the accepted rows (see
    :data:`ceecore._kernels._accounts.PARSED_COLUMNS`): checked, parsed and hashed once,
    for every job that reads the batch."""

    canonical: pa.RecordBatch
    codes: np.ndarray
    parsed: dict[str, np.ndarray]


class AccountBook:
    """Per-importer consolidation state, exact and mergeable.

    ``threads`` (default: ``OMP_NUM_THREADS``, else the CPU count) sets how many
    threads fold lines; results do not depend on it. One book may be updated from one
    thread at a time (calls are serialised by a lock); use one book per worker and
    :meth:`merge` them to scale out.
    """

    def __init__(self, centers: CenterMap | None = None, threads: int | None = None) -> None:
        self.centers = centers if centers is not None else CenterMap.default()
        self.threads = resolve_threads(threads)
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Empties the book: a job that has taken its accounts (:meth:`result`) lets their
        state go before its next phase (at 5M lines about 120 MB: the distinct entries,
        manufacturers and ports of every account)."""
        starts, table = self.centers.lookup_tables()
        with self._lock:
            self._kernel = AccountKernel(self.threads, len(self.centers.codes), starts, table)

    # ------------------------------------------------------------------ updating

    def ingest(self, batch: pa.RecordBatch, mapping: ColumnMapping | None = None, source: str = "<batch>",
               columns: tuple[str, ...] = (), *, checked: bool = False) -> Intake:
        """Folds one record batch (at most BATCH_ROWS rows) in, for pipelines that need more
        than the codes: also the canonical batch (consolidation's columns plus ``columns``)
        and the kernel's parse of each row. Its buffers are validated first, unless
        ``checked`` (see :meth:`update`)."""
        if batch.num_rows > BATCH_ROWS:
            raise ValueError(f"ingest takes at most {BATCH_ROWS} rows at a time, got {batch.num_rows}")
        return self._fold(batch, mapping, source, columns, checked, parse=True)

    def parse(self, batch: pa.RecordBatch, mapping: ColumnMapping | None = None, source: str = "<batch>",
              columns: tuple[str, ...] = (), *, checked: bool = False) -> Intake:
        """What :meth:`ingest` returns, without folding the batch in: the book is unchanged."""
        if batch.num_rows > BATCH_ROWS:
            raise ValueError(f"parse takes at most {BATCH_ROWS} rows at a time, got {batch.num_rows}")
        return self._fold(batch, mapping, source, columns, checked, parse=True, fold=False)

    def _fold(self, batch: pa.RecordBatch, mapping: ColumnMapping | None, source: str, columns: tuple[str, ...],
              checked: bool, parse: bool, fold: bool = True) -> Intake:
        mapping = mapping or ColumnMapping()
        wanted = tuple(dict.fromkeys(CONSOLIDATION_COLUMNS + tuple(columns)))
        if not checked:
            check_batch(batch, source, columns=mapping.sources_of(wanted))
        canonical, prechecked = canonicalize(batch, mapping, wanted, source)
        with self._lock:
            codes = self._kernel.update(canonical, prechecked, self.threads, fold)
            parsed = self._kernel.parsed(canonical, codes) if parse else {}
        return Intake(canonical, codes, parsed)

    def update(self, batch: Any, mapping: ColumnMapping | None = None, source: str = "<batch>", *,
               checked: bool = False) -> np.ndarray:
        """Folds Arrow data in; returns each row's reject code (0 = accepted).

        ``batch`` is a record batch (``__arrow_c_array__``) or a stream of them
        (``__arrow_c_stream__``: a table, a reader, a polars frame) with canonical
        column names, or names that ``mapping`` renames. Codes index
        :data:`ceecore.schema.REJECT_REASONS`. Its buffers are validated first
        (:func:`ceecore.io.check_batch`: the kernels must never read past one), unless
        ``checked`` (batches read by :func:`ceecore.io.open_sources` were).
        """
        if not isinstance(batch, pa.RecordBatch) and hasattr(batch, "__arrow_c_stream__"):
            codes = [self.update(b, mapping, source, checked=checked) for b in pa.RecordBatchReader.from_stream(batch)]
            return np.concatenate(codes) if codes else np.zeros(0, np.uint8)
        if not isinstance(batch, pa.RecordBatch):
            batch = pa.record_batch(batch)
        if not checked:
            check_batch(batch, source, columns=(mapping or ColumnMapping()).sources_of(CONSOLIDATION_COLUMNS))
        if batch.num_rows > BATCH_ROWS:  # bounded scratch memory, whatever the caller's chunking
            return np.concatenate([self.update(batch.slice(start, BATCH_ROWS), mapping, source, checked=True)
                                   for start in range(0, batch.num_rows, BATCH_ROWS)])
        return self._fold(batch, mapping, source, (), checked=True, parse=False).codes

    def merge(self, other: AccountBook) -> None:
        """Adds another book's accounts to this one (exact: order does not matter)."""
        if _map_digest(other.centers) != _map_digest(self.centers):
            raise ValueError("cannot merge account books built with different Centers or HTS -> Center maps")
        self._absorb(other._export(canonical=False))

    # ------------------------------------------------------------------ state

    def to_arrow(self) -> pa.Table:
        """The state as a table, one row per importer, sorted; equal books give equal tables."""
        return self._export(canonical=True)

    @classmethod
    def from_arrow(cls, table: pa.Table, centers: CenterMap | None = None, threads: int | None = None
                   ) -> AccountBook:
        """Rebuilds a book from :meth:`to_arrow` output, checking its metadata, types and values."""
        book = cls(centers, threads)
        meta = table.schema.metadata or {}
        kind = meta.get(b"ceecore.state")
        if kind == b"ceecore.accounts/1":
            raise ValueError("an account state of an older ceecore (ceecore.accounts/1, which kept entry numbers as "
                             "text): consolidate its lines again with this version")
        if kind != STATE_KIND:
            raise ValueError("not a ceecore account state (missing or unknown 'ceecore.state' metadata)")
        codes = tuple(meta.get(b"ceecore.centers", b"").decode().split(","))
        if codes != book.centers.codes:
            raise ValueError(f"account state was built with Centers {codes}, this book has {book.centers.codes}")
        if meta.get(b"ceecore.center_map", b"").decode() != _map_digest(book.centers):
            raise ValueError("account state was built with another HTS -> Center map than this book's")
        expected = _state_schema(book.centers)
        check_batch(table, "account state")  # read back from a file: its buffers are checked before anything reads them
        try:
            table = table.select(expected.names).cast(expected)
        except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"account state does not have the expected columns and types: {exc}") from exc
        for name in table.column_names:
            column = table[name]
            values = pc.list_flatten(column) if pa.types.is_list(column.type) or \
                pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type) else None
            if column.null_count or (values is not None and values.null_count):
                raise ValueError(f"account state column {name!r} holds nulls")
            numbers = values if values is not None else column
            if pa.types.is_integer(numbers.type) or pa.types.is_decimal(numbers.type):
                smallest = 1 if name == "lines" else 0
                if len(numbers) and pc.min(numbers).as_py() < smallest:
                    raise ValueError(f"account state column {name!r} holds values below {smallest}")
        book._absorb(table)
        return book

    def __len__(self) -> int:
        with self._lock:
            return sum(len(self._kernel.account_views(k)["accounts"]) for k in range(self._kernel.n_shards))

    def _gather(self, sort: bool, keys: bool = False) -> _Gathered:
        """All shards' accounts in one set of arrays: sorted by importer, or in shard order."""
        kernel, nc = self._kernel, len(self.centers.codes)
        with self._lock:
            views = [kernel.account_views(k) for k in range(kernel.n_shards)]
            sizes = [len(v["accounts"]) for v in views]
            bases = np.cumsum([0] + sizes)
            n = int(bases[-1])
            importers = pa.concat_arrays([_strings(v["importer_offsets"], v["importer_data"]) for v in views])
            order = np.asarray(pc.sort_indices(importers)) if sort else np.arange(n)
            importers = importers.take(order)  # a copy: the views die with the next update
            rank = np.empty(n, np.int64)
            rank[order] = np.arange(n)
            accounts = np.empty(n, ACCOUNT_DTYPE)
            lines_by = np.empty((n, nc), np.int64)
            cents_by = np.empty((n, nc, 2), np.int64)
            for view, base, size in zip(views, bases, sizes):  # one scatter per shard, no other copy
                where = rank[base:base + size]
                accounts[where] = view["accounts"]
                lines_by[where] = view["center_lines"]
                cents_by[where] = view["center_cents"]
            shard_keys = [kernel.export_keys(k) for k in range(kernel.n_shards)] if keys else []
        return _Gathered(importers, accounts, lines_by, cents_by, rank, bases[:-1], shard_keys)

    def _export(self, canonical: bool) -> pa.Table:
        g = self._gather(sort=canonical, keys=True)
        n = len(g.accounts)

        def keyed_lists(prefix: str) -> pa.Array:
            """Each account's pair hashes: sorted, when canonical."""
            rows = np.concatenate([s[f"{prefix}_account"].astype(np.int64) + b for s, b in zip(g.keys, g.bases)])
            values = np.concatenate([s[f"{prefix}_hash"] for s in g.keys])
            r = g.rank[rows]
            perm = np.lexsort((values, r)) if canonical else np.argsort(r, kind="stable")
            return pa.LargeListArray.from_arrays(_offsets(r, n), pa.array(values[perm], pa.uint64()))

        port_rows = g.rank[np.concatenate([s["port_account"] + b for s, b in zip(g.keys, g.bases)])]
        port_codes = np.concatenate([s["port_code"] for s in g.keys])
        port_perm = np.lexsort((port_codes, port_rows))
        ports = pa.ListArray.from_arrays(_offsets(port_rows, n),
                                         pa.array(_PORT_NAMES[port_codes[port_perm]], pa.string()))
        nc = len(self.centers.codes)
        acc = g.accounts
        columns = [
            g.importers,
            acc["lines"], _money(acc["value_cents"]), _money(acc["duty_cents"]),
            pa.array(acc["first_date"], pa.int32()).cast(pa.date32()),
            pa.array(acc["last_date"], pa.int32()).cast(pa.date32()),
            pa.FixedSizeListArray.from_arrays(g.lines_by.ravel(), nc),
            pa.FixedSizeListArray.from_arrays(_money(g.cents_by.reshape(-1, 2)), nc),
            _bit_lists(acc["chapters"], 100, None),
            _bit_lists(acc["countries"], 676, _COUNTRY_NAMES),
            ports,
            keyed_lists("entry"),
            keyed_lists("manufacturer"),
        ]
        return pa.Table.from_arrays(columns, schema=_state_schema(self.centers))

    def _absorb(self, table: pa.Table) -> None:
        table = table.combine_chunks()
        n = table.num_rows
        accounts = np.zeros(n, ACCOUNT_DTYPE)
        accounts["lines"] = table["lines"].to_numpy()
        accounts["value_cents"] = _cent_words(table["entered_value"])
        accounts["duty_cents"] = _cent_words(table["duty"])
        accounts["first_date"] = table["first_date"].cast(pa.int32()).to_numpy()
        accounts["last_date"] = table["last_date"].cast(pa.int32()).to_numpy()
        accounts["chapters"] = _bits_of(table["hts_chapters"], 100,
                                        lambda v: v.to_numpy(zero_copy_only=False).astype(np.int64))
        accounts["countries"] = _bits_of(table["countries"], 676, _country_codes)
        nc = len(self.centers.codes)

        def keys(name: str) -> tuple[np.ndarray, np.ndarray]:
            col = table[name].combine_chunks()
            return (np.asarray(pc.list_parent_indices(col), dtype=np.int64),
                    pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.uint64, copy=False))

        importer_batch = pa.record_batch([table["importer_id"].combine_chunks()], names=["key"])
        port_col = table["ports"].combine_chunks()
        port_codes = pc.list_flatten(port_col)
        if pc.any(pc.invert(pc.match_substring_regex(port_codes, r"^\d{4}$"))).as_py():
            raise ValueError("account state holds a port code that is not four digits")
        entry_rows, entries = keys("entry_hashes")
        mfr_rows, mfrs = keys("manufacturer_hashes")
        with self._lock:
            self._kernel.absorb(
                importer_batch, accounts,
                np.ascontiguousarray(pc.list_flatten(table["center_lines"]).to_numpy().reshape(n, nc)),
                _cent_words(pc.list_flatten(table["center_value"])).reshape(n, nc, 2),
                entry_rows, entries, mfr_rows, mfrs,
                np.asarray(pc.list_parent_indices(port_col), dtype=np.int64),
                port_codes.cast(pa.int16()).to_numpy(zero_copy_only=False).astype(np.int16),
            )

    # ------------------------------------------------------------------ result

    def result(self, assign_by: Literal["lines", "value"] = "lines",
               overrides: Mapping[str, Override] | None = None) -> pa.Table:
        """The consolidated accounts, one row per importer, sorted by importer id."""
        g = self._gather(sort=True)
        importers, acc, lines_by, cents_by = g.importers, g.accounts, g.lines_by, g.cents_by
        nc = len(self.centers.codes)
        assignment = assign_centers(self.centers, importers, lines_by, _comparable(cents_by), assign_by,
                                    overrides or {})
        value, duty = acc["value_cents"], acc["duty_cents"]
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(_as_float(value) > 0, 100.0 * _as_float(duty) / _as_float(value), np.nan)
        codes = self.centers.codes
        columns: dict[str, Any] = {
            "importer_id": importers,
            **assignment,
            "lines": acc["lines"],
            "entries": acc["entries"],
            "ports": acc["ports"],
            "countries": _popcount(acc["countries"]),
            "manufacturers": acc["manufacturers"],
            "hts_chapters": _popcount(acc["chapters"]),
            "entered_value": _money(value),
            "duty": _money(duty),
            "effective_duty_rate": pa.array(rate, pa.float64(), from_pandas=True),
            "first_entry_date": pa.array(acc["first_date"], pa.int32()).cast(pa.date32()),
            "last_entry_date": pa.array(acc["last_date"], pa.int32()).cast(pa.date32()),
            "lines_by_center": pa.StructArray.from_arrays(
                [pa.array(lines_by[:, k]) for k in range(nc)], names=list(codes)),
            "value_by_center": pa.StructArray.from_arrays(
                [_money(cents_by[:, k, :]) for k in range(nc)], names=list(codes)),
        }
        return pa.table(columns)


class _Gathered(NamedTuple):
    """The book's accounts gathered from its shards (see :meth:`AccountBook._gather`)."""

    importers: pa.Array         # importer ids, in output order
    accounts: np.ndarray        # ACCOUNT_DTYPE, in output order
    lines_by: np.ndarray        # (n, Centers) lines
    cents_by: np.ndarray        # (n, Centers, 2) 128-bit cents as words
    rank: np.ndarray            # output row of each account, shard after shard
    bases: np.ndarray           # first account of each shard in that shard-after-shard order
    keys: list[dict[str, np.ndarray]]  # each shard's distinct keys, if asked for


def assign_centers(centers: CenterMap, importers: pa.Array, lines_by: np.ndarray, cents_by: np.ndarray,
                   by: Literal["lines", "value"], overrides: Mapping[str, Override]) -> dict[str, pa.Array]:
    """Each importer's Center: the predominant one by ``by``, unless overridden.

    Ties on ``by`` go to the Center with more of the other measure, then to the lowest
    Center code. ``center_share`` is the Center's share of the account's ``by`` over
    lines that have a Center (null when that total is 0); chapters 98/99 and unmapped
    chapters have none. Accounts with no line that has a Center get none, unless
    overridden.
    """
    if by not in ("lines", "value"):
        raise ValueError(f"assign_by must be 'lines' or 'value', not {by!r}")
    primary, secondary = (lines_by, cents_by) if by == "lines" else (cents_by, lines_by)
    n = len(primary)
    top = primary == primary.max(axis=1, keepdims=True)
    tied = np.where(top, secondary, -1)
    winner = np.argmax(tied == tied.max(axis=1, keepdims=True), axis=1)
    total = primary.sum(axis=1)
    method = np.where(lines_by.sum(axis=1) > 0, "rule", None).astype(object)
    notes = np.full(n, None, dtype=object)
    if overrides:
        listed = list(overrides)
        found = pc.index_in(pa.array(listed, pa.large_string()), importers.cast(pa.large_string()))
        for importer, row in zip(listed, found.fill_null(-1).to_numpy()):  # per override, not per account
            if row >= 0:
                winner[row] = centers.index_of(overrides[importer].center)
                method[row] = "override"
                notes[row] = overrides[importer].note
    assigned = method != None  # noqa: E711 (elementwise on an object array)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, primary[np.arange(n), winner] / np.maximum(total, 1), np.nan)
    info = centers.centers

    chosen = pa.array(winner, mask=~assigned)

    def pick(values: list[str]) -> pa.Array:
        return pa.array(values, pa.string()).take(chosen)

    return {
        "center": pick([c.code for c in info]),
        "center_name": pick([c.name for c in info]),
        "field_office": pick([c.field_office for c in info]),
        "center_share": pa.array(share, pa.float64(), from_pandas=True),
        "assigned_by": pa.array(method, pa.string()),
        "override_note": pa.array(notes, pa.string()),
    }


def _strings(offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    """A large_string array over kernel-exported offsets and bytes (no per-string work)."""
    return pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))


def _offsets(rows: np.ndarray, n: int) -> pa.Array:
    counts = np.bincount(rows, minlength=n) if len(rows) else np.zeros(n, np.int64)
    return pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


def _bit_lists(words: np.ndarray, n_bits: int, names: np.ndarray | None) -> pa.Array:
    """A list per row of the set bits of ``words`` (as ints, or mapped through ``names``)."""
    bits = np.unpackbits(np.ascontiguousarray(words).view(np.uint8), axis=1, bitorder="little")[:, :n_bits]
    rows, cols = np.nonzero(bits)
    offsets = np.concatenate([[0], np.cumsum(bits.sum(axis=1, dtype=np.int64))]).astype(np.int32)
    values = pa.array(cols.astype(np.int8)) if names is None else pa.array(names[cols], pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _bits_of(lists: pa.ChunkedArray, n_bits: int, to_index: Any) -> np.ndarray:
    """Inverse of :func:`_bit_lists`: set bits from list values."""
    n = len(lists)
    words = np.zeros((n, (n_bits + 63) // 64), np.uint64)
    col = lists.combine_chunks()
    rows = np.asarray(pc.list_parent_indices(col), dtype=np.int64)
    idx = to_index(pc.list_flatten(col))
    if len(idx) and (idx.min() < 0 or idx.max() >= n_bits):
        raise ValueError("account state holds an out-of-range chapter or country")
    np.bitwise_or.at(words, (rows, idx // 64), np.left_shift(np.uint64(1), (idx % 64).astype(np.uint64)))
    return words


def _country_codes(names: pa.Array) -> np.ndarray:
    """Two upper-case letters -> 0..675 (the kernel's code); -1 for anything else."""
    valid = np.asarray(pc.fill_null(pc.match_substring_regex(names, r"^[A-Z]{2}$"), False), dtype=bool)
    codes = np.full(len(names), -1, np.int64)
    kept = pc.filter(names, pa.array(valid)).cast(pa.binary())  # a fresh array: offsets start at 0
    letters = np.frombuffer(kept.buffers()[2], np.uint8) if len(kept) else np.zeros(0, np.uint8)
    pairs = letters[: 2 * len(kept)].reshape(-1, 2).astype(np.int64) - 65
    codes[valid] = pairs[:, 0] * 26 + pairs[:, 1]
    return codes


def _popcount(words: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words).sum(axis=1, dtype=np.int64)


def _money(words: np.ndarray) -> pa.Array:
    """Exact decimal dollars from 128-bit cents given as (low, high) int64 words."""
    words = np.ascontiguousarray(words, dtype=np.int64).reshape(-1, 2)
    return pa.Array.from_buffers(_MONEY, len(words), [None, pa.py_buffer(words)])


def _cent_words(money: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Inverse of :func:`_money`: the (low, high) words of a decimal(38, 2) column."""
    if isinstance(money, pa.ChunkedArray):
        money = money.combine_chunks()
    words = np.frombuffer(money.buffers()[1], np.int64).reshape(-1, 2) if len(money) else np.zeros((0, 2), np.int64)
    return words[money.offset:money.offset + len(money)].copy()


def _as_float(words: np.ndarray) -> np.ndarray:
    return words[..., 1].astype(np.float64) * 2.0**64 + words[..., 0].view(np.uint64).astype(np.float64)


def _comparable(words: np.ndarray) -> np.ndarray:
    """128-bit cents as int64 where every value fits (always, in practice), else Python ints."""
    low, high = words[..., 0], words[..., 1]
    if np.array_equal(high, low >> 63):
        return low.copy()
    return np.vectorize(lambda lo, hi: (int(hi) << 64) + (int(lo) & (2**64 - 1)), otypes=[object])(low, high)
