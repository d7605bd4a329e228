"""A deliberately plain, pure-Python reference for ceecore's account consolidation.

One loop over rows as Python dicts, one dict per importer, sets for distinct keys and
``decimal`` for rounding: no numpy, no Arrow compute, nothing from
``ceecore.accounts`` or the compiled kernel. The only piece of ceecore it uses is
:meth:`ceecore.centers.CenterMap.center_of`, which is the Center table's own
(pure-Python) reference lookup.

The data contract is re-implemented in full (:func:`check_line`), in the kernel's
documented order, so the reference also predicts each row's reject reason. It expects
*canonically typed* values (``str``/``None`` for keys, ``int`` line numbers,
``datetime.date`` dates, ``float`` money), i.e. what ``table.to_pylist()`` gives for a
canonical table; text that fails to parse (a job of ``ceecore.schema.canonicalize``) is
out of its scope.

Contract (what a line must satisfy to be accepted, checked in this order):

- entry_number, importer_id: non-null, non-empty, at most 64 UTF-8 bytes, no control
  characters (< 0x20 or 0x7F);
- line_number: non-null, >= 1;
- port_code: non-null, non-empty, 1-4 ASCII digits (shorter codes are zero-padded);
- entry_date: non-null, from 1900-01-01 to 2199-12-31;
- hts_code: non-null, non-empty, only ASCII digits, '.' and ' ', with 6-10 digits;
- country_of_origin: non-null, non-empty, exactly two ASCII letters (any case);
- entered_value: non-null, finite, 0 <= v <= 1e12;
- duty_paid (if non-null): finite, 0 <= v <= 1e12; then duty_rate (if non-null): finite,
  0 <= rate <= 10000. The line's duty is duty_paid if present, else derived from
  duty_rate, else 0;
- quantity, gross_weight_kg (if non-null): finite, >= 0;
- manufacturer_id (if non-null and non-empty): at most 64 bytes, no control characters.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ceecore.centers import CenterMap, Override

MAX_KEY_BYTES = 64
MAX_MONEY = 1e12
MAX_DUTY_RATE = 10000.0
FIRST_DAY, LAST_DAY = dt.date(1900, 1, 1), dt.date(2199, 12, 31)
DIGITS = "0123456789"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# ----------------------------------------------------------------------- rounding


def round_half_away(x: float) -> int:
    """The integer nearest to the float ``x`` exactly, ties away from zero (C ``llround``)."""
    # Decimal(x) is the float's exact binary value; ROUND_HALF_UP rounds ties away from 0.
    return int(Decimal(x).to_integral_value(rounding=ROUND_HALF_UP))


def cents_of(value: float) -> int:
    """Cents of a dollar amount: round-half-away-from-zero of ``value * 100`` (in float64)."""
    return round_half_away(value * 100.0)


def duty_from_rate(cents: int, rate: float) -> int:
    """Duty cents of an ad valorem ``rate`` percent, computed in float64 as (cents * rate) / 100."""
    return round_half_away((float(cents) * rate) / 100.0)


def money(cents: int) -> Decimal:
    """Exact dollars of integer cents (what a decimal128(38, 2) cell holds)."""
    return Decimal(cents).scaleb(-2)


# ----------------------------------------------------------------------- contract


def _key_ok(s: str) -> bool:
    return len(s.encode("utf-8")) <= MAX_KEY_BYTES and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in s)


def _money_ok(v: float) -> bool:
    return math.isfinite(v) and 0.0 <= v <= MAX_MONEY


def check_line(row: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """(reject reason, parsed line): reason "ok" and the parsed fields, or a reason and None."""
    get = row.get
    entry = get("entry_number")
    if entry is None or entry == "":
        return "missing_entry_number", None
    if not _key_ok(entry):
        return "bad_entry_number", None

    line = get("line_number")
    if line is None:
        return "missing_line_number", None
    if line < 1:
        return "bad_line_number", None

    importer = get("importer_id")
    if importer is None or importer == "":
        return "missing_importer_id", None
    if not _key_ok(importer):
        return "bad_importer_id", None

    port = get("port_code")
    if port is None or port == "":
        return "missing_port_code", None
    if len(port.encode("utf-8")) > 4 or any(ch not in DIGITS for ch in port):
        return "bad_port_code", None
    port = port.rjust(4, "0")

    date = get("entry_date")
    if date is None:
        return "missing_entry_date", None
    if not FIRST_DAY <= date <= LAST_DAY:
        return "bad_entry_date", None

    hts = get("hts_code")
    if hts is None or hts == "":
        return "missing_hts_code", None
    if any(ch not in DIGITS + ". " for ch in hts):
        return "bad_hts_code", None
    digits = hts.replace(".", "").replace(" ", "")
    if not 6 <= len(digits) <= 10:
        return "bad_hts_code", None

    country = get("country_of_origin")
    if country is None or country == "":
        return "missing_country_of_origin", None
    if len(country.encode("utf-8")) != 2 or any(ch not in LETTERS for ch in country):
        return "bad_country_of_origin", None

    value = get("entered_value")
    if value is None:
        return "missing_entered_value", None
    if not _money_ok(value):
        return "bad_entered_value", None
    cents = cents_of(value)

    paid, rate = get("duty_paid"), get("duty_rate")
    if paid is not None and not _money_ok(paid):
        return "bad_duty_paid", None
    if rate is not None and not (math.isfinite(rate) and 0.0 <= rate <= MAX_DUTY_RATE):
        return "bad_duty_rate", None
    if paid is not None:
        duty = cents_of(paid)
    elif rate is not None:  # the rate stands in for the duty only when none was paid
        duty = duty_from_rate(cents, rate)
    else:
        duty = 0

    for name in ("quantity", "gross_weight_kg"):
        q = get(name)
        if q is not None and not (math.isfinite(q) and q >= 0.0):
            return f"bad_{name}", None

    manufacturer = get("manufacturer_id")
    if manufacturer == "":
        manufacturer = None
    if manufacturer is not None and not _key_ok(manufacturer):
        return "bad_manufacturer_id", None

    return "ok", {
        "importer_id": importer, "entry_number": entry, "port": port, "date": date,
        "hts": digits, "chapter": digits[:2], "country": country.upper(),
        "cents": cents, "duty": duty, "manufacturer": manufacturer,
    }


# ----------------------------------------------------------------------- folding


def check_lines(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The reject reason of each row ("ok" if accepted)."""
    return [check_line(r)[0] for r in rows]


def fold(rows: Iterable[Mapping[str, Any]], centers: CenterMap | None = None) -> dict[str, dict[str, Any]]:
    """Raw per-importer aggregates of the accepted rows (sets still as sets)."""
    centers = centers or CenterMap.default()
    accounts: dict[str, dict[str, Any]] = {}
    for row in rows:
        reason, line = check_line(row)
        if reason != "ok":
            continue
        acc = accounts.get(line["importer_id"])
        if acc is None:
            acc = accounts[line["importer_id"]] = {
                "lines": 0, "entries": set(), "ports": set(), "countries": set(),
                "manufacturers": set(), "hts_chapters": set(), "cents": 0, "duty": 0,
                "first": None, "last": None,
                "center_lines": {c: 0 for c in centers.codes},
                "center_cents": {c: 0 for c in centers.codes},
            }
        acc["lines"] += 1
        acc["entries"].add(line["entry_number"])
        acc["ports"].add(line["port"])
        acc["countries"].add(line["country"])
        if line["manufacturer"] is not None:
            acc["manufacturers"].add(line["manufacturer"])
        acc["hts_chapters"].add(line["chapter"])
        acc["cents"] += line["cents"]
        acc["duty"] += line["duty"]
        if acc["first"] is None or line["date"] < acc["first"]:
            acc["first"] = line["date"]
        if acc["last"] is None or line["date"] > acc["last"]:
            acc["last"] = line["date"]
        center = centers.center_of(line["hts"], line["date"])
        if center is not None:
            acc["center_lines"][center] += 1
            acc["center_cents"][center] += line["cents"]
    return accounts


# ----------------------------------------------------------------------- assignment


def _ratio(a: int, b: int) -> float:
    # float64 division of the two counts, as any columnar engine computes it
    return float(a) / float(b)


def assign(center_lines: Mapping[str, int], center_cents: Mapping[str, int], by: str,
           override: Override | None, codes: Iterable[str]) -> tuple[str | None, float | None, str | None]:
    """(center code, center_share, assigned_by) of one account.

    The predominant Center by ``by`` ("lines" or "value"); ties go to more of the other
    measure, then to the lowest code (so with ``by="value"`` an account whose lines
    with a Center all have zero value goes to the Center with the most such lines).
    No Center when no line has a Center. An override always wins. The share is the
    Center's part of the ``by`` total (None when that total is zero).
    """
    primary, secondary = (center_lines, center_cents) if by == "lines" else (center_cents, center_lines)
    total = sum(primary.values())
    winner, method = None, None
    if sum(center_lines.values()) > 0:
        best = None
        for code in sorted(codes):
            key = (primary[code], secondary[code])
            if best is None or key > best:  # strict: equal keys keep the lower code
                best, winner = key, code
        method = "rule"
    if override is not None:
        winner, method = override.center, "override"
    share = _ratio(primary[winner], total) if winner is not None and total > 0 else None
    return winner, share, method


def consolidate(rows: Iterable[Mapping[str, Any]], centers: CenterMap | None = None,
                assign_by: str = "lines", overrides: Mapping[str, Override] | None = None
                ) -> list[dict[str, Any]]:
    """The consolidated accounts, one dict per importer (sorted by importer id).

    Keys and values match ``AccountBook.result().to_pylist()``: money as exact
    ``Decimal`` dollars, dates as ``datetime.date``, rates as floats or None.
    """
    centers = centers or CenterMap.default()
    return accounts_of(fold(rows, centers), centers, assign_by, overrides)


def accounts_of(folded: Mapping[str, dict[str, Any]], centers: CenterMap, assign_by: str = "lines",
                overrides: Mapping[str, Override] | None = None) -> list[dict[str, Any]]:
    """:func:`consolidate` from aggregates already folded by :func:`fold`."""
    if assign_by not in ("lines", "value"):
        raise ValueError(assign_by)
    overrides = overrides or {}
    out = []
    # str order is code point order, which for UTF-8 is byte order (Arrow's string sort)
    for importer, acc in sorted(folded.items()):
        override = overrides.get(importer)
        code, share, method = assign(acc["center_lines"], acc["center_cents"], assign_by, override,
                                     centers.codes)
        info = centers.center(code) if code is not None else None
        out.append({
            "importer_id": importer,
            "center": code,
            "center_name": info.name if info else None,
            "field_office": info.field_office if info else None,
            "center_share": share,
            "assigned_by": method,
            "override_note": override.note if override is not None else None,
            "lines": acc["lines"],
            "entries": len(acc["entries"]),
            "ports": len(acc["ports"]),
            "countries": len(acc["countries"]),
            "manufacturers": len(acc["manufacturers"]),
            "hts_chapters": len(acc["hts_chapters"]),
            "entered_value": money(acc["cents"]),
            "duty": money(acc["duty"]),
            "effective_duty_rate": 100.0 * acc["duty"] / acc["cents"] if acc["cents"] > 0 else None,
            "first_entry_date": acc["first"],
            "last_entry_date": acc["last"],
            "lines_by_center": dict(acc["center_lines"]),
            "value_by_center": {c: money(v) for c, v in acc["center_cents"].items()},
        })
    return out


def state(rows: Iterable[Mapping[str, Any]], centers: CenterMap | None = None,
          folded: Mapping[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The distinct-key sets per importer, shaped like ``AccountBook.to_arrow().to_pylist()``."""
    centers = centers or CenterMap.default()
    out = []
    for importer, acc in sorted((folded if folded is not None else fold(rows, centers)).items()):
        out.append({
            "importer_id": importer,
            "lines": acc["lines"],
            "entered_value": money(acc["cents"]),
            "duty": money(acc["duty"]),
            "first_date": acc["first"],
            "last_date": acc["last"],
            "center_lines": [acc["center_lines"][c] for c in centers.codes],
            "center_value": [money(acc["center_cents"][c]) for c in centers.codes],
            "hts_chapters": sorted(int(c) for c in acc["hts_chapters"]),
            "countries": sorted(acc["countries"]),
            "ports": sorted(acc["ports"]),
            "entry_hashes": sorted(pair_hash(hash_bytes(e), hash_bytes(importer)) for e in acc["entries"]),
            "manufacturer_hashes": sorted(pair_hash(hash_bytes(m), hash_bytes(importer)) | 1
                                          for m in acc["manufacturers"]),
        })
    return out


_M64 = 2**64 - 1
_GOLDEN, _ODD = 0x9E3779B97F4A7C15, 0x632BE59BD9B4E019


def mix64(x: int) -> int:
    """The kernels' 64-bit finaliser (``_kernels/_hashtable.pxd``), on Python ints."""
    x ^= x >> 33
    x = x * 0xFF51AFD7ED558CCD & _M64
    x ^= x >> 33
    x = x * 0xC4CEB9FE1A85EC53 & _M64
    return x ^ (x >> 33)


def hash_bytes(text: str) -> int:
    """The kernels' hash of a key's UTF-8 bytes: 8-byte little-endian words, then the tail."""
    data = text.encode("utf-8")
    h = mix64(len(data) * _GOLDEN & _M64)
    full = len(data) - len(data) % 8
    for k in range(0, full, 8):
        h = (mix64(h ^ int.from_bytes(data[k:k + 8], "little")) + _GOLDEN) & _M64
    tail = data[full:]
    if tail:
        h = mix64(h ^ int.from_bytes(tail, "little") ^ (len(tail) << 59 & _M64))
    return h


def pair_hash(key: int, owner: int) -> int:
    """The hash of a key held per owner (an account's entry number, say)."""
    return mix64(key ^ ((owner * _GOLDEN + _ODD) & _M64))


