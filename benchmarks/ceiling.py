"""Ceiling: how far undervaluation can be found on generated lines, knowing the honest norms.

    python -m benchmarks.ceiling --lines 300000 --seeds 7 8 9 [--default]

An oracle that knows every line's label outside undervaluation and the honest prices
of every product ranks lines by the best price evidence there is: the larger of an
account-product's shortfall against the honest lines of the other accounts, in the
standard error of the difference (a shallow shortfall sustained over its lines), and
the line's own shortfall against the product's honest mean (a deep line), both in the
generator's spread of log unit values (``SynthConfig.unit_value_sigma``). Printed per
seed: undervaluation's recall in the top 5% with the whole top 5% given to that
ranking, and with only the slots the other families leave (all their lines found);
beside it, what ``ceecore.fit`` + ``ceecore.score`` reach with the default config.

ceecore estimates the norms from lines that include every scheme and does not know the
spread; the oracle is not a bound on every possible method (it does not use the
scatter of an account's lines, say), but it shows what the prices alone can tell.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import ceecore
from ceecore import synth

__all__ = ["oracle_recall"]


def oracle_recall(lines: pa.Table, sigma: float) -> tuple[float, float]:
    """Undervaluation's recall@5% by the oracle's price evidence: with the whole top 5%,
    and with the slots the other families leave."""
    quantity = lines.column("quantity").to_numpy(zero_copy_only=False).astype(float)
    value = lines.column("entered_value").to_numpy(zero_copy_only=False).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_uv = np.log(value / quantity)
    scheme = lines.column("scheme")
    bad = pc.is_valid(scheme).to_numpy(zero_copy_only=False)
    under = pc.fill_null(pc.equal(scheme, "undervaluation"), False).to_numpy(zero_copy_only=False)
    priced = np.isfinite(log_uv)
    product = _codes(lines, ["hts_code", "country_of_origin"])
    group = _codes(lines, ["importer_id", "hts_code", "country_of_origin"])
    honest = priced & ~bad

    def sums(keys: np.ndarray, mask: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.bincount(keys, np.where(mask, x, 0.0), minlength=keys.max() + 1 if len(keys) else 0)

    honest_n, honest_s = sums(product, honest, np.ones(len(log_uv))), sums(product, honest, log_uv)
    own_honest_n, own_honest_s = sums(group, honest, np.ones(len(log_uv))), sums(group, honest, log_uv)
    group_n, group_s = sums(group, priced, np.ones(len(log_uv))), sums(group, priced, log_uv)
    product_of_group = np.zeros(len(group_n), np.int64)
    product_of_group[group] = product
    with np.errstate(divide="ignore", invalid="ignore"):
        others_n = honest_n[product_of_group] - own_honest_n
        others_mean = (honest_s[product_of_group] - own_honest_s) / others_n
        group_z = (group_s / group_n - others_mean) / (sigma * np.sqrt(1 / group_n + 1 / others_n))
        line_z = (log_uv - honest_s[product] / honest_n[product]) / sigma
    evidence = np.fmax(np.nan_to_num(-group_z[group], nan=-np.inf), np.nan_to_num(-line_z, nan=-np.inf))
    order = np.argsort(-evidence, kind="stable")
    top = round(0.05 * len(order))
    whole = under[order[:top]].sum() / max(under.sum(), 1)
    left = under[order[:max(top - int((bad & ~under).sum()), 0)]].sum() / max(under.sum(), 1)
    return float(whole), float(left)


def _codes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """A dense code per distinct combination of ``columns``."""
    joined = pc.binary_join_element_wise(*[table.column(c).cast(pa.string()) for c in columns], "\x1f")
    return pc.dictionary_encode(joined).combine_chunks().indices.to_numpy(zero_copy_only=False).astype(np.int64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300_000, help="generated lines per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--default", action="store_true", help="the default shapes (else the variants)")
    args = parser.parse_args(argv)
    print("| seed | undervaluation lines | oracle, whole top 5% | oracle, slots the others leave | ceecore |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        config = synth.SynthConfig(lines=args.lines, seed=seed, variants=not args.default)
        lines = synth.generate_table(config)
        whole, left = oracle_recall(lines, config.unit_value_sigma)
        recall, _, _ = synth.detection_measures(ceecore.score(lines, ceecore.fit(lines)).lines, lines)
        count = pc.sum(pc.fill_null(pc.equal(lines.column("scheme"), "undervaluation"), False).cast(pa.int64())).as_py()
        print(f"| {seed} | {count:,} | {whole:.3f} | {left:.3f} | {recall['undervaluation']:.3f} |")


if __name__ == "__main__":
    main()
