"""The indicator registry: every risk indicator, in scoring order.

An indicator is declared in the module of its family (:class:`Indicator`: its name,
the baselines it reads, the lookups it derives from them, its raw values, its config
thresholds, whether it judges whole accounts) and computed by the function of the same
name in the compiled scoring kernel (``ceecore/_kernels/_indicators.pyx``). Everything
else — the tallies ``fit`` builds for a config, the output columns, the config keys
checked, the kernel's columns — is derived from :data:`REGISTRY`.

Adding an indicator: declare it in its family's module (or a new one), add its kernel
function and id to ``_indicators.pyx``, a line to :data:`REGISTRY` (kernel order), and
its weight and thresholds to ``ceecore/data/scoring.toml``; the plain reference in
``tests/scoring_reference.py`` gets its definition too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ceecore._kernels._indicators import INDICATOR_IDS, RAW_IDS, THRESHOLDS
from ceecore.indicators.account import NEW_IMPORTER, PORT_SPREAD, VOLUME_SURGE
from ceecore.indicators.base import Indicator, Lookup, LookupBuilder
from ceecore.indicators.classification import CLASSIFICATION_DISPARITY, CLASSIFICATION_PRICE
from ceecore.indicators.duty import DUTY_BELOW_PEERS
from ceecore.indicators.origin import ORIGIN_RARE, ORIGIN_SWITCH
from ceecore.indicators.preference import PREFERENCE_RARE
from ceecore.indicators.unit_value import PORT_UNIT_VALUE_LOW, UNIT_VALUE_LOW, UNIT_VALUE_OUTLIER

__all__ = ["ACCOUNT_INDICATORS", "INDICATORS", "INDICATOR_RAW_VALUES", "INDICATOR_TALLIES", "RAW_VALUES", "REGISTRY",
           "Indicator", "Lookup", "by_name", "check_thresholds", "lookups", "raw_values", "tallies"]

REGISTRY: tuple[Indicator, ...] = (
    UNIT_VALUE_LOW,
    UNIT_VALUE_OUTLIER,
    DUTY_BELOW_PEERS,
    PREFERENCE_RARE,
    ORIGIN_RARE,
    ORIGIN_SWITCH,
    CLASSIFICATION_DISPARITY,
    PORT_SPREAD,
    NEW_IMPORTER,
    VOLUME_SURGE,
    PORT_UNIT_VALUE_LOW,
    CLASSIFICATION_PRICE,
)

INDICATORS: tuple[str, ...] = tuple(indicator.name for indicator in REGISTRY)
ACCOUNT_INDICATORS: tuple[str, ...] = tuple(indicator.name for indicator in REGISTRY if indicator.account_level)
INDICATOR_TALLIES: dict[str, tuple[str, ...]] = {indicator.name: indicator.tallies for indicator in REGISTRY}
INDICATOR_RAW_VALUES: dict[str, tuple[str, ...]] = {indicator.name: indicator.raw for indicator in REGISTRY}
# Every raw value, in the kernel's order (output columns follow it).
RAW_VALUES: tuple[str, ...] = tuple(RAW_IDS)

# The registry and the kernel must describe the same indicators, in the same order.
if INDICATORS != tuple(INDICATOR_IDS):
    raise ImportError(f"the indicator registry {INDICATORS} does not match the scoring kernel's {tuple(INDICATOR_IDS)}")
if {raw for indicator in REGISTRY for raw in indicator.raw} != set(RAW_VALUES):
    raise ImportError("the registry's raw values do not match the scoring kernel's")
if not set(THRESHOLDS) <= {key for indicator in REGISTRY for key in indicator.thresholds}:
    raise ImportError("the scoring kernel reads thresholds no indicator declares")


def by_name(name: str) -> Indicator:
    return REGISTRY[INDICATORS.index(name)]


def raw_values(indicators: Iterable[str]) -> tuple[str, ...]:
    """The raw values behind ``indicators``, in :data:`RAW_VALUES` order."""
    wanted = {raw for name in indicators for raw in by_name(name).raw}
    return tuple(name for name in RAW_VALUES if name in wanted)


def tallies(indicators: Iterable[str]) -> tuple[str, ...]:
    """The baseline tallies ``indicators`` read ("acct", every account's lines and days, always)."""
    return tuple(dict.fromkeys(["acct"] + [t for name in indicators for t in by_name(name).tallies]))


def check_thresholds(thresholds: Mapping[str, float], where: str) -> None:
    """Refuses a config whose thresholds do not match the registry's declarations."""
    declared = {key for indicator in REGISTRY for key in indicator.thresholds}
    if set(thresholds) != declared:
        raise ValueError(f"{where}: thresholds {sorted(set(thresholds) ^ declared)} are not those the indicators "
                         "declare")


def lookups(indicators: Iterable[str], fitted: Mapping[str, Lookup], thresholds: Mapping[str, float]
            ) -> dict[str, Lookup]:
    """What scoring ``indicators`` reads: the fitted tallies, and the lookups each
    indicator derives from them (each builder run once)."""
    out: dict[str, Lookup] = dict(fitted)
    built: set[LookupBuilder] = set()
    for name in indicators:
        builder = by_name(name).lookups
        if builder is not None and builder not in built:
            built.add(builder)
            out.update(builder(fitted, thresholds))
    return out
