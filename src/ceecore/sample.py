"""A small, plausible, deterministic set of canonical entry lines.

Used by the default ``ceecore consolidate`` run, by the tests and by the benchmarks.
Accounts have heavy-tailed sizes and a home industry (most of their lines come from
their Center's HTS chapters); entries have one to many lines; a few ports, origins and
manufacturers per account. Built column-wise with numpy: millions of lines per second.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from ceecore.centers import CenterMap

__all__ = ["sample_lines"]

_PORTS = np.array([1001, 1303, 1401, 1703, 2704, 2709, 2809, 3001, 3901, 4601, 5301, 5201,
                   2304, 2402, 1101, 4101, 3801, 3004, 5203, 2006, 1601, 3307, 4701, 2101])
_COUNTRIES = np.array(["CN", "MX", "CA", "DE", "JP", "VN", "KR", "IN", "TW", "IT", "GB", "FR",
                       "TH", "MY", "ID", "CH", "IE", "BR", "TR", "PL", "BD", "PK", "ES", "NL"])
_DUTY_RATES = np.array([0.0, 0.0, 0.0, 2.5, 3.9, 5.0, 6.5, 10.0, 16.0, 25.0])


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative ints, as an (n, width) uint8 matrix."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + 48).astype(np.uint8)


def _letters(values: np.ndarray, width: int) -> np.ndarray:
    powers = 26 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 26 + 65).astype(np.uint8)


def _text(matrix: np.ndarray) -> pa.Array:
    """A string array from an (n, width) matrix of ASCII bytes, with no per-row work."""
    n, width = matrix.shape
    offsets = np.arange(n + 1, dtype=np.int32) * width
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix)))


def _home_chapters(centers: CenterMap) -> list[np.ndarray]:
    chapters: list[list[int]] = [[] for _ in centers.codes]
    for rule in centers.rules:
        if rule.level == "chapter" and rule.center and rule.effective_to is None:
            chapters[centers.index_of(rule.center)].append(int(rule.prefix))
    return [np.array(c or [99]) for c in chapters]


def sample_lines(lines: int = 100_000, accounts: int = 2_000, seed: int = 0,
                 start: dt.date = dt.date(2025, 1, 1), days: int = 365) -> pa.Table:
    """``lines`` canonical entry lines from about ``accounts`` importers (fewer if small)."""
    rng = np.random.default_rng(seed)
    centers = CenterMap.default()
    home = _home_chapters(centers)

    # Entries of 1..many lines, owned by accounts with Zipf-like sizes.
    lines_per_entry = np.minimum(rng.geometric(0.4, size=lines), 40)
    ends = np.cumsum(lines_per_entry)
    n_entries = int(np.searchsorted(ends, lines) + 1)
    lines_per_entry = lines_per_entry[:n_entries]
    lines_per_entry[-1] -= int(ends[n_entries - 1] - lines)
    weight = 1.0 / np.arange(1, accounts + 1) ** 0.9
    entry_account = rng.choice(accounts, size=n_entries, p=weight / weight.sum())
    line_entry = np.repeat(np.arange(n_entries), lines_per_entry)
    entry_start = np.cumsum(lines_per_entry) - lines_per_entry
    line_number = np.arange(lines) - np.repeat(entry_start, lines_per_entry) + 1
    account = entry_account[line_entry]

    # Per-account traits: home Center, a few ports and origins.
    account_center = rng.integers(0, len(home), size=accounts)
    account_ports = rng.choice(_PORTS, size=(accounts, 3))
    account_origins = rng.integers(0, len(_COUNTRIES), size=(accounts, 3))
    entry_port = account_ports[entry_account, rng.integers(0, 3, size=n_entries)]
    entry_day = rng.integers(0, days, size=n_entries)
    origin_slot = rng.integers(0, 3, size=lines)
    origin = account_origins[account, origin_slot]

    # HTS: 85% from the home Center's chapters, the rest from anywhere.
    at_home = rng.random(lines) < 0.85
    chapter = np.empty(lines, np.int64)
    for c, chapters in enumerate(home):
        mine = at_home & (account_center[account] == c)
        chapter[mine] = rng.choice(chapters, size=int(mine.sum()))
    all_chapters = np.concatenate(home)
    chapter[~at_home] = rng.choice(all_chapters, size=int((~at_home).sum()))
    hts = chapter * 10**8 + rng.integers(0, 10**8, size=lines)

    importer = np.concatenate([_digits(np.arange(accounts) * 7919 % 100, 2), np.full((accounts, 1), 45, np.uint8),
                               _digits(np.arange(accounts) * 104729 % 10**7, 7),
                               _letters(np.arange(accounts) * 31 % 676, 2)], axis=1)
    filer = _letters(rng.integers(0, 26**3, size=n_entries), 3)
    serial = _digits((np.arange(n_entries) + seed * 7_777_777) % 10**7, 7)
    check = ((serial - 48).sum(axis=1) % 10 + 48).astype(np.uint8)[:, None]
    entry_number = np.concatenate([filer, serial, check], axis=1)
    country_bytes = np.frombuffer("".join(_COUNTRIES).encode(), np.uint8).reshape(-1, 2)
    manufacturer = np.concatenate([country_bytes[origin], _letters(account * 3 + origin_slot, 6),
                                   _digits(account % 10**4, 4)], axis=1)

    value = np.round(rng.lognormal(8.0, 1.6, size=lines), 2)
    rate = _DUTY_RATES[chapter % len(_DUTY_RATES)]
    quantity = np.maximum(1, np.round(value / rng.lognormal(3.0, 1.0, size=lines)))
    return pa.table({
        "entry_number": _text(entry_number[line_entry]),
        "line_number": pa.array(line_number, pa.int64()),
        "importer_id": _text(importer[account]),
        "port_code": _text(_digits(entry_port[line_entry], 4)),
        "entry_date": pa.array((np.datetime64(start, "D") + entry_day[line_entry]).astype("datetime64[D]")),
        "hts_code": _text(_digits(hts, 10)),
        "country_of_origin": _text(country_bytes[origin]),
        "entered_value": pa.array(value),
        "duty_rate": pa.array(rate),
        "quantity": pa.array(quantity),
        "gross_weight_kg": pa.array(np.round(value / rng.lognormal(2.0, 0.8, size=lines), 1)),
        "manufacturer_id": _text(manufacturer),
    })
