"""Ablation: what each indicator adds to detection, on the default and the variant shapes.

    python -m benchmarks.ablation --lines 300000 [--seed 22]

For each shape, generated lines of one seed are fitted once with the default config,
then scored with every indicator on and with each indicator turned off in turn (weight
0, the rest as shipped). Printed per shape: recall at 5% per scheme family, precision
in the top 5%, and the share of the top 1% of lines whose score another line shares
(a tie the ranking cannot order). An indicator earns its place where turning it off
loses recall somewhere (or precision, or adds ties).
"""

from __future__ import annotations

import argparse

import pyarrow as pa

import ceecore
from ceecore import synth
from ceecore.indicators import INDICATORS
from ceecore.scoring import Model, ScoringConfig

__all__ = ["ablation", "main"]


def ablation(lines: pa.Table) -> dict[str, tuple[dict[str, float], float, float]]:
    """Per configuration ("all", then "-name" for each indicator turned off): the measures
    of :func:`synth.detection_measures` on ``lines``, fitted once with the default config."""
    model = ceecore.fit(lines)
    weights = ScoringConfig.default().weights
    out = {"all": synth.detection_measures(ceecore.score(lines, model).lines, lines)}
    for name in INDICATORS:
        if weights[name] == 0:
            continue
        config = ScoringConfig.from_doc({"weights": {name: 0.0}})
        scored = ceecore.score(lines, Model(model.baselines, config, meta=model.meta)).lines
        out[f"-{name}"] = synth.detection_measures(scored, lines)
    return out


def _table(title: str, results: dict[str, tuple[dict[str, float], float, float]]) -> str:
    """A Markdown table: a row per configuration, a column per family, then precision and ties."""
    families = list(synth.SCHEMES)
    head = ["indicators", *[f[:12] for f in families], "precision", "tied"]
    rows = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, (recall, precision, tied) in results.items():
        cells = [name, *[f"{recall.get(f, float('nan')):.3f}" for f in families], f"{precision:.3f}", f"{tied:.3f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300_000, help="generated lines per shape")
    parser.add_argument("--seed", type=int, default=22)
    args = parser.parse_args(argv)
    for title, variants in (("default shapes", False), ("variant shapes", True)):
        lines = synth.generate_table(lines=args.lines, seed=args.seed, variants=variants)
        print(_table(f"{title}, {args.lines:,} lines, seed {args.seed}: recall@5% per family", ablation(lines)))
        print()


if __name__ == "__main__":
    main()
