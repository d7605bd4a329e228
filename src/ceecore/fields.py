"""Per-line numbers the baselines and the scorer share, from one ingested batch.

Consolidation's kernel has already checked every line and parsed most of what
scoring needs (importer and manufacturer hashes, cents, day, Center, country, port);
this module adds the rest from the canonical columns — the HTS number at each level,
the preference claim (SPI), and the unit value — for the accepted lines only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceecore.accounts import Intake
from ceecore.schema import plain_rows

__all__ = ["OUTCOME_COLUMNS", "SCORING_COLUMNS", "LineFields", "line_fields", "spi_code"]

# Canonical columns scoring reads beyond consolidation's: the preference claim, and the
# outcomes of inspections where known (passed through to the scored lines).
OUTCOME_COLUMNS: tuple[str, ...] = ("inspected", "violation", "revenue_recovered")
SCORING_COLUMNS: tuple[str, ...] = ("spi", *OUTCOME_COLUMNS)


def spi_code(text: str | bytes) -> int:
    """A stable integer for a special program indicator ("A+", "S", "KR", ...); 0 for none."""
    raw = (text.encode() if isinstance(text, str) else text).strip().upper()[:7]
    return int.from_bytes(raw, "big") if raw else 0


@dataclass(frozen=True)
class LineFields:
    """Numbers per accepted line; ``rows`` are their positions in the batch.

    ``hts10`` identifies the HTS number as declared (digits * 16 + digit count, so
    "0101..." and "101..." differ); ``hts6`` and ``hts4`` are its first 6 and 4
    digits. ``maker`` is the (importer, manufacturer) hash, 0 when none was given.
    ``rate_bp`` is the line's effective duty rate in basis points. ``log_uv`` is the
    natural log of the unit value, per unit of quantity (``basis`` 0) or else per kg
    (``basis`` 1); NaN when neither can be computed.
    """

    rows: np.ndarray
    importer: np.ndarray
    maker: np.ndarray
    day: np.ndarray
    center: np.ndarray
    country: np.ndarray
    port: np.ndarray
    value_cents: np.ndarray
    duty_cents: np.ndarray
    rate_bp: np.ndarray
    hts10: np.ndarray
    hts6: np.ndarray
    hts4: np.ndarray
    spi: np.ndarray
    log_uv: np.ndarray
    basis: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


def _spi_codes(column: pa.Array) -> np.ndarray:
    encoded = pc.dictionary_encode(column)
    names = encoded.dictionary.to_pylist()
    codes = np.array([spi_code(name or "") for name in names] + [0], np.int64)
    index = encoded.indices.fill_null(len(names)).to_numpy(zero_copy_only=False)
    return codes[index]


def line_fields(intake: Intake) -> LineFields:
    """The numbers of the accepted lines of an ingested batch."""
    rows = np.flatnonzero(intake.codes == 0)
    parsed = {name: values[rows] for name, values in intake.parsed.items()}
    batch = intake.canonical
    take = pa.array(rows)

    def column(name: str) -> pa.Array | None:
        return batch.column(name).take(take) if name in batch.schema.names else None

    # The kernel parsed the HTS number (digits * 16 + digit count); SPI text is not
    # checked, so it is read as bytes.
    hts_value, hts_len = parsed["hts"] >> 4, parsed["hts"] & 15
    hts6 = hts_value // 10 ** np.maximum(hts_len - 6, 0)
    hts4 = hts_value // 10 ** np.maximum(hts_len - 4, 0)
    spi = plain_rows(batch.column("spi"), take, pa.large_binary()) if "spi" in batch.schema.names else None
    value = parsed["value_cents"] / 100.0
    rate_bp = np.where(value > 0, np.round(parsed["duty_cents"] / np.where(value > 0, parsed["value_cents"], 1)
                                           * 10_000), 0).astype(np.int64)

    def numbers(name: str) -> np.ndarray:
        array = column(name)
        return np.full(len(rows), np.nan) if array is None else array.to_numpy(zero_copy_only=False).astype(float)

    quantity, weight = numbers("quantity"), numbers("gross_weight_kg")
    per_unit = (quantity > 0) & (value > 0)
    per_kg = ~per_unit & (weight > 0) & (value > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_uv = np.where(per_unit, np.log(value / quantity), np.where(per_kg, np.log(value / weight), np.nan))
    log_uv[~np.isfinite(log_uv)] = np.nan  # a quantity like 1e-310 gives no usable unit value
    return LineFields(
        rows=rows,
        importer=parsed["importer_hash"],
        maker=parsed["manufacturer_hash"],
        day=parsed["day"].astype(np.int64),
        center=parsed["center"].astype(np.int64),
        country=parsed["country"].astype(np.int64),
        port=parsed["port"].astype(np.int64),
        value_cents=parsed["value_cents"],
        duty_cents=parsed["duty_cents"],
        rate_bp=rate_bp,
        hts10=parsed["hts"],
        hts6=hts6,
        hts4=hts4,
        spi=_spi_codes(spi) if spi is not None else np.zeros(len(rows), np.int64),
        log_uv=log_uv,
        basis=np.where(per_unit, 0, 1).astype(np.int64),
    )
