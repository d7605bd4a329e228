"""A plain-Python reference of the baselines and indicators (ceecore.baselines, ceecore.scoring).

Written from the documented definitions with dicts and loops over row dicts, sharing
no code with the library beyond its constants, so that the tests can compare the
compiled and vectorised implementation against it on random data. Rows must already
pass the data contract.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from typing import Any

import numpy as np

from ceecore.baselines import BIN_WIDTH, LOG_LOW, N_BINS, SPREAD_MIN_LINES, SPREAD_SAMPLING
from ceecore.indicators.unit_value import ORIGIN_FIT_ROUNDS
from ceecore.scoring import ACCOUNT_INDICATORS, INDICATORS, ScoringConfig

EPOCH = dt.date(1970, 1, 1)


def _ramp(x: float | None, start: float, end: float) -> float:
    """Linear from 0 at ``start`` to 0.9 at 0.9 of the way to ``end``, then 1 - 0.01 / (r - 0.8):
    the same slope there, rising towards 1 without reaching it."""
    if x is None or x != x:
        return 0.0
    r = (x - start) / (end - start)
    if r != r or r <= 0:
        return 0.0
    return r if r <= 0.9 else 1 - 0.01 / (r - 0.8)


def _chi2_evidence(x: float, k: int) -> float:
    """-log10 of the chance a chi-square of ``k`` degrees of freedom reaches ``x`` (Wilson-Hilferty), at most 300."""
    if not x > 0 or k < 1:
        return 0.0
    v = 2 / (9 * k)
    w = ((x / k) ** (1 / 3) - (1 - v)) / math.sqrt(v)
    return -math.log10(max(0.5 * math.erfc(w / math.sqrt(2)), 1e-300))


def _spread_evidence(lines: int, ports: int, usual: list[float]) -> float:
    """-log10 of the chance that ``lines`` drawn at the shares ``usual`` (their count
    Poisson: each port reached independently, with chance 1 - exp(-lines * share))
    reach at least ``ports`` ports, at most 300."""
    chances = [1.0]  # chances[j]: j ports reached among those seen so far
    for share in usual:
        hit = 1 - math.exp(-lines * share)
        chances = [(chances[j] if j < len(chances) else 0.0) * (1 - hit) + (chances[j - 1] * hit if j > 0 else 0.0)
                   for j in range(len(chances) + 1)]
    return -math.log10(max(sum(chances[ports:]), 1e-300))


def parse(row: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one accepted row, as the kernel and fields.py define them."""
    digits = "".join(ch for ch in row["hts_code"] if ch not in ". ")
    value_cents = round(row["entered_value"] * 100)
    if row.get("duty_paid") is not None:
        duty_cents = round(row["duty_paid"] * 100)
    elif row.get("duty_rate") is not None:
        duty_cents = round(value_cents * row["duty_rate"] / 100)
    else:
        duty_cents = 0
    value, duty = value_cents / 100, duty_cents / 100
    quantity, weight = row.get("quantity"), row.get("gross_weight_kg")
    if quantity is not None and quantity > 0 and value > 0:
        log_uv, basis = math.log(value / quantity), 0
    elif weight is not None and weight > 0 and value > 0:
        log_uv, basis = math.log(value / weight), 1
    else:
        log_uv, basis = None, 1
    mfr = row.get("manufacturer_id") or ""
    return {
        "importer": row["importer_id"], "maker": (row["importer_id"], mfr) if mfr else None,
        "day": (row["entry_date"] - EPOCH).days, "country": row["country_of_origin"].upper(),
        "port": int(row["port_code"]), "value": value,
        "rate_bp": round(duty_cents / value_cents * 10_000) if value_cents > 0 else 0,
        "hts10": digits, "hts6": digits[:6], "hts4": digits[:4],
        "spi": (row.get("spi") or "").strip().upper(), "log_uv": log_uv, "basis": basis, "value_cents": value_cents,
        "duty_cents": duty_cents, "month": (row["entry_date"].year, row["entry_date"].month),
    }


def _groups(p: dict[str, Any]) -> list[tuple]:
    """The unit-value group of a line at each level: HTS10 x origin, HTS10, HTS6, HTS4."""
    return [(0, p["basis"], p["hts10"], p["country"]), (1, p["basis"], p["hts10"], None),
            (2, p["basis"], p["hts6"], None), (3, p["basis"], p["hts4"], None)]


def _bin(x: float) -> int:
    return int(min(N_BINS - 1, max(0, math.floor((x - LOG_LOW) / BIN_WIDTH))))


def _quantile(bins: dict[int, int], q: float) -> float:
    n = sum(bins.values())
    target = q * n
    cum = 0
    keys = sorted(bins)
    for b in keys:
        if cum + bins[b] >= target:
            frac = min(1.0, max(0.0, (target - cum) / max(bins[b], 1)))
            return LOG_LOW + BIN_WIDTH * (b + frac)
        cum += bins[b]
    return LOG_LOW + BIN_WIDTH * (keys[-1] + 1)


class Reference:
    """Baselines of ``rows`` and the indicator strengths of each of them."""

    def __init__(self, rows: list[dict[str, Any]], config: ScoringConfig) -> None:
        self.config = config
        self.lines = [parse(r) for r in rows]
        hist: dict[tuple, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.moments: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.ap: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.ap_port: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])  # (importer, level-0 group, port)
        self.duty: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        self.origin: dict[tuple, int] = defaultdict(int)
        self.claims: dict[tuple, int] = defaultdict(int)
        self.ap_days: dict[tuple, list[int]] = {}
        self.earliest: dict[tuple, tuple[int, str]] = {}
        self.group_max: dict[tuple, int] = {}
        self.dearest: dict[tuple, tuple[int, int, str]] = {}  # (maker, hts4) -> its dearest line's (rate, code, hts10)
        self.port_max: dict[tuple, int] = {}
        self.numbers: dict[tuple, set[str]] = defaultdict(set)
        self.cls_lines: dict[tuple, int] = defaultdict(int)
        self.branches: dict[str, int] = defaultdict(int)  # lines a strength came from each evidence branch
        self.port_lines: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.account: dict[str, list[int]] = {}
        self.account_values: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.months: dict[str, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
        for p in self.lines:
            x = p["log_uv"]
            if x is not None:
                micro, micro_sq = round(x * 1e6), round(x * x * 1e6)
                for level, group in enumerate(_groups(p)):
                    hist[group][_bin(x)] += 1
                    if level < 2:
                        m = self.moments[group]
                        m[0] += 1; m[1] += micro; m[2] += micro_sq  # noqa: E702
                a = self.ap[(p["importer"], p["hts10"], p["country"], p["basis"])]
                a[0] += 1; a[1] += micro; a[2] += micro_sq  # noqa: E702
                c = self.ap_port[(p["importer"], _groups(p)[0], p["port"])]
                c[0] += 1; c[1] += micro  # noqa: E702
            d = self.duty[(bool(p["spi"]), p["hts10"], p["country"])]
            d[0] += p["value_cents"]; d[1] += p["duty_cents"]  # noqa: E702
            self.origin[(p["hts6"], p["country"])] += 1
            self.origin[(p["hts6"], None)] += 1
            self.claims[(p["country"], "")] += 1
            if p["spi"]:
                self.claims[(p["country"], p["spi"])] += 1
            key = (p["importer"], p["hts10"], p["country"])
            first, last, n = self.ap_days.get(key, (p["day"], p["day"], 0))
            self.ap_days[key] = [min(first, p["day"]), max(last, p["day"]), n + 1]
            product = (p["importer"], p["hts10"])
            self.earliest[product] = min(self.earliest.get(product, (p["day"], p["country"])), (p["day"], p["country"]))
            if p["maker"] is not None:
                group = (p["maker"], p["hts4"])
                self.port_max[group + (p["port"],)] = max(self.port_max.get(group + (p["port"],), -1), p["rate_bp"])
                self.numbers[group].add(p["hts10"])
                dearest = (min(max(p["rate_bp"], 0), 2**24 - 1), int(p["hts10"]) * 16 + len(p["hts10"]), p["hts10"])
                self.dearest[group] = max(self.dearest.get(group, dearest), dearest)
                self.group_max[group] = self.dearest[group][0]  # the rate as the model keeps it (capped)
                for key in (("hts", p["maker"], p["hts10"]), ("hts", p["maker"], p["hts10"], p["port"]),
                            ("heading", group), ("heading", group, p["port"])):
                    self.cls_lines[key] += 1
            self.port_lines[p["importer"]][p["port"]] += 1
            self.months[p["importer"]][p["month"]] += 1
            first, last, n = self.account.get(p["importer"], (p["day"], p["day"], 0))
            self.account[p["importer"]] = [min(first, p["day"]), max(last, p["day"]), n + 1]
            if p["value_cents"] > 0:  # its lines' log values (as the model keeps them: millionths)
                log_value = math.log(p["value_cents"] / 100)
                v = self.account_values[p["importer"]]
                v[0] += 1; v[1] += round(log_value * 1e6); v[2] += round(log_value * log_value * 1e6)  # noqa: E702
        self.norms = {g: (sum(b.values()), _quantile(b, 0.5),
                          max((_quantile(b, 0.75) - _quantile(b, 0.25)) / 1.349, BIN_WIDTH)) for g, b in hist.items()}
        self._shrink_spreads()
        self._origin_index()
        self._account_norms()
        self._port_prices()

    def _shrink_spreads(self) -> None:
        """Per level: each spread drawn towards the level's median spread (in logs) by
        between / (between + 1.36 / lines), between the spreads' variance beyond sampling."""
        for level in {g[0] for g in self.norms}:
            groups = [g for g in self.norms if g[0] == level]
            big = [g for g in groups if self.norms[g][0] >= SPREAD_MIN_LINES]
            if len(big) < 10:
                continue
            centre = statistics.median(math.log(self.norms[g][2]) for g in big)
            deviation = statistics.median(abs(math.log(self.norms[g][2]) - centre) for g in big) / 0.6745
            between = max(deviation**2 - statistics.median(SPREAD_SAMPLING / self.norms[g][0] for g in big), 0.0)
            for g in groups:
                n, median, spread = self.norms[g]
                weight = between / (between + SPREAD_SAMPLING / max(n, 1))
                self.norms[g] = (n, median, math.exp(centre + weight * (math.log(spread) - centre)))

    def _origin_index(self) -> None:
        # Each origin's part in an additive fit, HTS number + origin, by alternating means.
        cells = [(basis, hts, country, n, s / n / 1e6) for (level, basis, hts, country), (n, s, _)
                 in self.moments.items() if level == 0 and n > 0]
        part: dict[tuple, float] = defaultdict(float)
        for _ in range(ORIGIN_FIT_ROUNDS):
            number: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for basis, hts, country, n, mean in cells:
                number[(basis, hts)][0] += n * (mean - part[(country, basis)])
                number[(basis, hts)][1] += n
            sums: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for basis, hts, country, n, mean in cells:
                level_ = number[(basis, hts)][0] / number[(basis, hts)][1]
                sums[(country, basis)][0] += n * (mean - level_)
                sums[(country, basis)][1] += n
            fitted = {k: v[0] / v[1] for k, v in sums.items()}
            done = all(abs(v - part[k]) < 1e-9 for k, v in fitted.items())
            part = defaultdict(float, fitted)
            if done:
                break
        centre = {b: sum(sums[k][1] * v for k, v in part.items() if k[1] == b)
                  / max(sum(sums[k][1] for k in part if k[1] == b), 1) for b in (0, 1)}
        self.origin_price = {k: v - centre[k[1]] for k, v in part.items()}
        # Per HTS10 (and basis): the mean price index of its lines' origins.
        mix: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for (level, basis, hts, country), (n, _, _) in self.moments.items():
            if level == 0:
                mix[(basis, hts)][0] += n * self.origin_price.get((country, basis), 0.0)
                mix[(basis, hts)][1] += n
        self.origin_mix = {k: round(v[0] / max(v[1], 1) * 1e6) / 1e6 for k, v in mix.items()}
        # How far an origin's price for one HTS number strays from its index, beyond the
        # sampling error of the means (over origins and rest with others_min_lines lines).
        least = self.config.thresholds["others_min_lines"]
        squared_shares: dict[tuple, float] = defaultdict(float)  # per HTS number: its origins' shares squared
        for (level, basis, hts, country), (n, _, _) in self.moments.items():
            if level == 0:
                squared_shares[(basis, hts)] += (n / self.moments[(1, basis, hts, None)][0]) ** 2
        total, weights = 0.0, 0.0
        for (level, basis, hts, country), (n, s, q) in self.moments.items():
            whole_n, whole_s, whole_q = self.moments.get((1, basis, hts, None), (0, 0, 0))
            rest = whole_n - n
            if level != 0 or n < least or rest < least:
                continue
            mean, rest_mean = s / n / 1e6, (whole_s - s) / rest / 1e6
            var = max(q / n / 1e6 - mean**2, 0.0)
            rest_var = max((whole_q - q) / rest / 1e6 - rest_mean**2, 0.0)
            expected = whole_s / whole_n / 1e6 + self.origin_price.get((country, basis), 0.0) \
                - self.origin_mix.get((basis, hts), 0.0)
            sampling = (rest / whole_n) ** 2 * (var / n + rest_var / rest)
            total += min(n, rest) * ((mean - expected) ** 2 - sampling)
            weights += min(n, rest) * (1 - 2 * n / whole_n + squared_shares[(basis, hts)])  # the stray it shows
        self.origin_variance = max(total / weights, 0.0) if weights else 0.0

    def _account_norms(self) -> None:
        th = self.config.thresholds
        self.effective = {}
        for importer, ports in self.port_lines.items():
            total = sum(ports.values())
            entropy = -sum(c / total * math.log(c / total) for c in ports.values())
            self.effective[importer] = round(math.exp(entropy) * 1000) / 1000
        big = [i for i, (_, _, n) in self.account.items() if n >= th["account_min_lines"]]
        self.ports_norm = float(np.quantile([self.effective[i] for i in big], th["port_spread_quantile"])) if big else 1.0
        # The industry's usual concentration: the mean share of a big account's lines at
        # its busiest port, its second ...; an account's spread against it, given its lines.
        usual: dict[int, float] = defaultdict(float)
        for importer in big:
            counts = sorted(self.port_lines[importer].values(), reverse=True)
            for rank, count in enumerate(counts):
                usual[rank] += count / sum(counts) / len(big)
        self.port_evidence = {importer: round(_spread_evidence(sum(ports.values()), len(ports),
                                                               [usual[k] for k in range(len(usual))]) * 1000) / 1000
                              if big else 0.0 for importer, ports in self.port_lines.items()}
        per_day = {i: n / (last - first + 1) for i, (first, last, n) in self.account.items()}
        self.per_day = per_day
        self.rate_norm = float(np.quantile([per_day[i] for i in big], th["new_importer_quantile"])) if big else 1.0
        # The value of a line: big accounts' mean log values, their spread between accounts, and within one.
        valued = [self.account_values[i] for i in big if self.account_values[i][0] > 1]
        self.value_centre, self.value_between, self.value_within = 0.0, 1.0, 0.0
        if valued:
            means = [s / k / 1e6 for k, s, _ in valued]
            q1, median, q3 = np.quantile(means, [0.25, 0.5, 0.75])
            self.value_centre, self.value_between = float(median), float(max(((q3 - q1) / 1.349) ** 2, 1e-6))
            self.value_within = float(np.median([max(q / k / 1e6 - (s / k / 1e6) ** 2, 0.0) * k / (k - 1)
                                                 for k, s, q in valued]))
        self.first_day = min(first for first, _, _ in self.account.values())

    def _port_prices(self) -> None:
        """Per (importer, port): the z and log gap of the account's prices away from its
        main port against the same goods there (on the port's side: at the main port,
        the other way round), each rounded to millionths as the model keeps them."""
        min_lines = self.config.thresholds["others_min_lines"]
        by_port: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for (importer, _, port), (n, _) in self.ap_port.items():
            by_port[importer][port] += n
        # Per (importer, port): its price level against the norms (sum of n / s^2 (mean - median), sum of n / s^2).
        levels: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for (importer, (_, basis, hts, country), port), (n, total) in self.ap_port.items():
            for group in ((0, basis, hts, country), (1, basis, hts, None)):
                if group in self.norms and self.norms[group][0] >= min_lines:
                    _, median, spread = self.norms[group]
                    levels[(importer, port)][0] += n / spread**2 * (total / n / 1e6 - median)
                    levels[(importer, port)][1] += n / spread**2
                    break

        def rank(importer: str, port: int) -> tuple:  # the main port sorts first
            ports = by_port[importer]
            weighted, weight = levels.get((importer, port), (0.0, 0.0))
            major = ports[port] >= 0.2 * sum(ports.values()) and weight > 0
            return (not major, -weighted / weight if major else 0.0, -ports[port], port)
        main = {importer: min(ports, key=lambda port: rank(importer, port)) for importer, ports in by_port.items()}
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # importer -> sum(w), sum(w d)
        products: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # n and sum at the main port, in all
        for (importer, group, port), (n, total) in self.ap_port.items():
            cell = products[(importer, group)]
            if port == main[importer]:
                cell[0] += n; cell[1] += total  # noqa: E702
            cell[2] += n; cell[3] += total  # noqa: E702
        for (importer, (_, basis, hts, country)), (n, s_main, n_all, s_all) in products.items():
            spread = math.nan
            for group in ((0, basis, hts, country), (1, basis, hts, None)):
                if group in self.norms and self.norms[group][0] >= min_lines:
                    spread = self.norms[group][2]
                    break
            if n == 0 or n_all == n or spread != spread:
                continue
            m = n_all - n
            w = n * m / (n + m) / spread**2
            sums[importer][0] += w
            sums[importer][1] += w * ((s_all - s_main) / m - s_main / n) / 1e6
        self.port_price = {}
        for importer, ports in by_port.items():
            weight, pooled = sums.get(importer, (0.0, 0.0))
            # Against the national norms: the port's z, and its level below the account's dearest port.
            dearest = max((levels[(importer, port)][0] / levels[(importer, port)][1] for port in ports
                           if ports[port] >= 5 and levels.get((importer, port), (0.0, 0.0))[1] > 0), default=-math.inf)
            for port in ports if weight > 0 else ():
                side = -1 if port == main[importer] else 1
                z, gap = side * pooled / math.sqrt(weight), side * pooled / weight
                weighted, place_weight = levels.get((importer, port), (0.0, 0.0))
                level = weighted / place_weight if place_weight > 0 else 0.0
                norm_z, norm_gap = level * math.sqrt(place_weight), level - dearest
                if norm_z < z and math.isfinite(norm_gap):
                    z, gap = norm_z, norm_gap
                self.port_price[(importer, port)] = (round(z * 1e6) / 1e6, round(gap * 1e6) / 1e6)

    def _norm(self, p: dict[str, Any], own: int, max_level: int, max_own_share: float, min_level: int = 0
              ) -> tuple[float, float, int]:
        for level, group in enumerate(_groups(p)[:max_level + 1]):
            if level >= min_level and group in self.norms:
                n, median, spread = self.norms[group]
                if n - own >= self.config.min_group_lines and own <= max_own_share * n:
                    return median, spread, level
        return math.nan, math.nan, -1

    def _account_price(self, p: dict[str, Any], own_n: int, own_s: int, own_q: int
                       ) -> tuple[float, float, float, float, int, float]:
        """The account's mean for the line's product, and the norm it is judged against:
        (mean, centre, spread, the lines the norm rests on besides the account's, level,
        the norm's error beyond theirs)."""
        th = self.config.thresholds
        mean = own_s / own_n / 1e6 if own_n else p["log_uv"]
        for level, group in enumerate(_groups(p)[:2]):  # per level: the robust median, else the others' mean
            centre, spread, used = self._norm(p, own_n, level, 0.1, min_level=level)
            if used == level:
                others = self.norms[group][0] - own_n
                break
            n, total, squares = self.moments.get(group, (0, 0, 0))
            others = n - own_n
            if others >= th["others_min_lines"]:
                centre = (total - own_s) / others / 1e6
                var = (squares - own_q) / others / 1e6 - centre**2
                spread = math.sqrt(max(var, BIN_WIDTH**2))
                robust = self._norm(p, 0, level, 0.25)[1]
                if robust == robust:
                    spread = max(spread, robust)
                used = level
                break
        else:
            return mean, math.nan, math.nan, math.nan, -1, 0.0
        if used == 1:
            centre += self.origin_price.get((p["country"], p["basis"]), 0.0) \
                - self.origin_mix.get((p["basis"], p["hts10"]), 0.0)
            return mean, centre, spread, others, used, self.origin_variance
        return mean, centre, spread, others, used, 0.0

    def strengths(self, p: dict[str, Any]) -> dict[str, float]:
        th = self.config.thresholds
        s: dict[str, float] = {}
        x = p["log_uv"]
        own_n, own_s, own_q = self.ap.get((p["importer"], p["hts10"], p["country"], p["basis"]), (0, 0, 0))
        if x is None:
            s["unit_value_low"] = s["unit_value_outlier"] = 0.0
        else:
            mean, centre, spread, others, used, stray = self._account_price(p, own_n, own_s, own_q)
            size = (mean - centre) / spread if centre == centre else math.nan
            n = max(own_n, 1)  # the shortfall in the standard error of the account's mean and of the norm's
            evidence = -size / math.sqrt(1 / n + 1 / max(others, 1) + stray / spread**2) if size == size else None
            s["unit_value_low"] = min(
                _ramp(evidence, th["unit_value_low_z_from"], th["unit_value_low_z_to"]),
                _ramp(-size if size == size else None, th["unit_value_low_size_from"], th["unit_value_low_size_to"]))
            if used >= 0 and 1 - math.exp(mean - centre) >= th["unit_value_low_shortfall"]:  # sustained, shallow
                s["unit_value_low"] = max(s["unit_value_low"], _ramp(evidence, th["unit_value_low_sustained_from"],
                                                                     th["unit_value_low_sustained_to"]))
            median, spread, _ = self._norm(p, 0, 3, 0.25)
            z = abs(x - median) / spread if median == median else None
            s["unit_value_outlier"] = _ramp(z, th["unit_value_outlier_from"], th["unit_value_outlier_to"])
            if own_n > 2 and median == median:  # a few deep lines: the account's scatter
                var = max(own_q / own_n / 1e6 - mean * mean, 0.0)
                scatter = _chi2_evidence(own_n * var / spread**2, own_n - 1)
                if scatter >= th["unit_value_low_scatter_from"]:  # the shortfall is its low lines', not all
                    below = max(0.0, (median - x) / spread)
                    s["unit_value_low"] *= min(1.0, below / th["unit_value_low_depth_from"])
                if x < median:
                    s["unit_value_low"] = max(s["unit_value_low"], min(
                        _ramp(z, th["unit_value_low_depth_from"], th["unit_value_low_depth_to"]),
                        _ramp(scatter, th["unit_value_low_scatter_from"], th["unit_value_low_scatter_to"])))

        z, gap = self.port_price.get((p["importer"], p["port"]), (math.nan, math.nan))
        s["port_unit_value_low"] = _ramp(-z, th["port_unit_value_from"], th["port_unit_value_to"]) \
            if 1 - math.exp(gap) >= th["unit_value_low_shortfall"] else 0.0

        value_cents, duty_cents = self.duty.get((False, p["hts10"], p["country"]), (0, 0))
        peer = duty_cents / value_cents if value_cents > 0 else None
        gap = 1 - (p["rate_bp"] / 1e4) / peer if not p["spi"] and peer else None
        s["duty_below_peers"] = _ramp(gap, th["duty_gap_from"], th["duty_gap_to"])

        share = self.claims[(p["country"], p["spi"])] / self.claims[(p["country"], "")] if p["spi"] else None
        s["preference_rare"] = _ramp(share, th["preference_share_from"], th["preference_share_to"])

        total = self.origin[(p["hts6"], None)]
        share = self.origin[(p["hts6"], p["country"])] / total if total >= th["origin_min_lines"] else None
        s["origin_rare"] = _ramp(share, th["origin_share_from"], th["origin_share_to"])

        product_first, first_origin = self.earliest[(p["importer"], p["hts10"])]
        mine = self.ap_days[(p["importer"], p["hts10"], p["country"])]
        old = self.ap_days.get((p["importer"], p["hts10"], first_origin), (-1, -1, 0))
        switched = (p["country"] != first_origin and old[2] >= th["switch_min_lines"]
                    and mine[2] >= th["switch_min_lines"])
        gap_days = mine[0] - product_first
        strength = _ramp(gap_days, th["switch_gap_days"], 3 * th["switch_gap_days"]) if switched else 0.0
        if switched and old[1] > mine[0] + th["switch_overlap_days"]:  # the old origin went on
            gone_by = gap_days / (max(old[1], mine[1]) - product_first + 1)
            late = -mine[2] * math.log10(1 - gone_by)
            strength = min(strength, _ramp(late, th["switch_evidence_from"], th["switch_evidence_to"]))
            self.branches["switch_old_origin_going_on"] += strength > 0
        value_cents, duty_cents = self.duty.get((False, p["hts10"], first_origin), (0, 0))
        if value_cents > 0 and p["rate_bp"] / 1e4 >= duty_cents / value_cents:  # no duty saved: no transshipment
            strength = 0.0
        s["origin_switch"] = strength

        strength = 0.0
        if p["maker"] is not None:
            group = (p["maker"], p["hts4"])
            top, here = self.group_max[group], max(self.port_max[group + (p["port"],)], p["rate_bp"])
            if len(self.numbers[group]) >= 2 and p["rate_bp"] < top and top > 0:
                strength = _ramp((top - here) / top, 0.0, th["disparity_gap_to"])
                mine = self.cls_lines[("hts", p["maker"], p["hts10"], p["port"])]
                heading = self.cls_lines[("heading", group, p["port"])]
                elsewhere = self.cls_lines[("heading", group)] - heading
                if 0 < mine == self.cls_lines[("hts", p["maker"], p["hts10"])] and mine < heading and elsewhere > 0:
                    late = -elsewhere * math.log10(1 - mine / heading)
                    chance = min(_ramp((top - p["rate_bp"]) / top, 0.0, th["disparity_gap_to"]),
                                 _ramp(late, th["disparity_evidence_from"], th["disparity_evidence_to"]))
                    self.branches["disparity_number_here_only"] += chance > strength
                    strength = max(strength, chance)
        s["classification_disparity"] = strength

        # Priced like the dearest number of the importer + manufacturer's heading.
        strength = 0.0
        if p["maker"] is not None:
            rate, _, number = self.dearest[(p["maker"], p["hts4"])]
            own_n, own_s, own_q = self.ap.get((p["importer"], p["hts10"], p["country"], p["basis"]), (0, 0, 0))
            theirs = self.ap.get((p["importer"], number, p["country"], p["basis"]), (0, 0, 0))
            if number != p["hts10"] and rate > p["rate_bp"] and own_n and theirs[0]:
                mean, centre, spread, others, used, _ = self._account_price(p, own_n, own_s, own_q)
                if used >= 0:
                    own = (mean - centre) ** 2 / (spread**2 * (1 / own_n + 1 / max(others, 1)))
                    dearer = (mean - theirs[1] / theirs[0] / 1e6) ** 2 / (spread**2 * (1 / own_n + 1 / theirs[0]))
                    strength = _ramp((own - dearer) / (2 * math.log(10)), th["classification_price_from"],
                                     th["classification_price_to"])
        s["classification_price"] = strength

        s.update(self.account_strengths(p["importer"]))
        if self.is_new(p["importer"]):  # its lines by their value against their product's mean line
            value = sum(self.duty.get((claimed, p["hts10"], p["country"]), (0, 0))[0] for claimed in (False, True))
            lines = sum(self.moments.get((0, basis, p["hts10"], p["country"]), (0, 0, 0))[0] for basis in (0, 1))
            if lines >= th["others_min_lines"] and value > 0 and p["value_cents"] >= 0:
                v = p["value_cents"] / 100 / (value / 100 / lines)
                s["new_importer"] = s["new_importer"] * v / (1 + v)
            else:
                s["new_importer"] = 0.0
        months = self.months[p["importer"]]
        typical = float(np.median(sorted(months.values())))
        lines = months[p["month"]]
        enough = len(months) >= th["surge_min_months"] and lines >= th["surge_min_lines"]
        s["volume_surge"] = _ramp(lines / (round(typical * 1000) / 1000), th["surge_from"], th["surge_to"]) if enough else 0.0
        return s

    def is_new(self, importer: str) -> bool:
        return self.account[importer][0] >= self.first_day + self.config.thresholds["new_importer_after_days"]

    def account_strengths(self, importer: str) -> dict[str, float]:
        th = self.config.thresholds
        ports = self.effective[importer]
        new = self.is_new(importer)
        return {
            "port_spread": max(_ramp(ports / self.ports_norm, th["port_spread_from"], th["port_spread_to"]),
                               _ramp(self.port_evidence[importer], th["port_spread_evidence_from"],
                                     th["port_spread_evidence_to"])),
            "new_importer": max(_ramp(self.per_day[importer] / self.rate_norm, th["new_importer_from"],
                                      th["new_importer_to"]),
                                _ramp(self.value_z(importer), th["new_importer_value_from"],
                                      th["new_importer_value_to"])) if new else 0.0,
        }

    def value_z(self, importer: str) -> float | None:
        """The account's mean log value per line against big accounts', in its standard error."""
        k, total, _ = self.account_values[importer]
        if not k:
            return None
        return (total / k / 1e6 - self.value_centre) / math.sqrt(self.value_between + self.value_within / k)

    def score(self, strengths: dict[str, float], p: dict[str, Any]) -> float:
        """The combined strengths, less 1% / (1 + log(1 + value)): the dearer of two lines
        with the same evidence ranks first."""
        out = 1.0
        for name in INDICATORS:
            out *= 1 - self.config.weights[name] * strengths[name]
        return (1 - out) * (1 - 0.01 / (1 + math.log1p(max(p["value_cents"], 0) / 100)))


assert set(ACCOUNT_INDICATORS) <= set(INDICATORS)
