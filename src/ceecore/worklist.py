"""What analysts get from scored lines: account scores and each Center's worklist.

Scoring streams batches through two collectors that keep only what these need —
:class:`BestLinesPerAccount` (each account's best lines, for its score and reasons)
and :class:`BestLinesPerCenter` (each Center's best lines, and a random draw of the
rest for exploration picks) — so memory follows accounts and Centers, not lines.
Both give the same result whatever the batching or thread count.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceecore._kernels._tally import Tally, combine, hash_strings
from ceecore.baselines import TALLIES
from ceecore.scoring import ACCOUNT_INDICATORS, Model, reason_lists, top_contributors

__all__ = ["AccountEvidence", "BestLinesPerAccount", "BestLinesPerCenter", "account_scores", "group_ranks", "worklist"]


def group_ranks(keys: np.ndarray) -> np.ndarray:
    """0-based rank of each element within its run of equal ``keys`` (sorted by group)."""
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    first = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    return np.arange(len(keys)) - np.repeat(first, np.diff(np.r_[first, len(keys)]))


class BestLinesPerAccount:
    """Each account's ``k`` best lines so far: importer hash, score, the strengths of ``names``.

    Each batch is cut down to its own best ``k`` lines per account (:meth:`of`, on the
    worker that scored it); those are buffered and cut down again whenever the buffer
    grows by half, so the memory stays about ``k`` lines per account. Of two lines with
    the same score, the one added first ranks first. Once an account has ``k`` lines kept,
    a later line that does not beat the ``k``-th of them cannot enter: :meth:`of` leaves it
    out on the worker (by the floors of the last cut: lines added before any batch still
    being scored), so the buffer grows slowly once accounts fill up.
    """

    def __init__(self, k: int, names: tuple[str, ...]) -> None:
        self.k = k
        self.names = names
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.kept = 0
        self.buffered = 0
        self._floors: Tally | None = None  # importer hash -> the k-th best score (float64 bits) of a full account
        self.cut_rows = 1 << 18  # the buffer is cut down once past this, or past 1.5 x what the last cut kept

    def of(self, lines: pa.RecordBatch, importers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A batch's best ``k`` lines per account, for :meth:`add`, without the lines that
        cannot enter (see the class); ``importers`` are the lines' importer hashes (from the
        parse: the ids are not hashed again)."""
        scores = lines.column("score").to_numpy(zero_copy_only=False)
        columns = [lines.column(name).to_numpy(zero_copy_only=False) for name in self.names]
        floors = self._floors  # (a cut replaces it whole: read once)
        if floors is not None and len(importers):
            floor = floors.get(np.ascontiguousarray(importers, np.uint64), _NO_FLOOR).view(np.float64).ravel()
            rows = np.flatnonzero(~(scores <= floor))
            importers, scores, columns = importers[rows], scores[rows], [column[rows] for column in columns]
        strengths = np.stack(columns, axis=1) if self.names else np.zeros((len(scores), 0))
        return self._best(importers, scores, strengths)

    def _best(self, hashes: np.ndarray, scores: np.ndarray, strengths: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order = np.lexsort((-scores, hashes))
        keep = order[group_ranks(hashes[order]) < self.k]
        return hashes[keep], scores[keep], strengths[keep]

    def add(self, part: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        self.parts.append(part)
        self.buffered += len(part[0])
        if self.buffered > max(self.cut_rows, self.kept + self.kept // 2):
            self._reduce()

    def _reduce(self) -> None:
        joined = [np.concatenate([p[i] for p in self.parts]) for i in range(3)]
        self.parts = []  # freed before the cut, not held beside it
        best = self._best(*joined)
        self.parts = [best]
        self.kept = self.buffered = len(best[0])
        full = np.flatnonzero(group_ranks(best[0]) == self.k - 1)  # (each full account's k-th best line)
        floors = Tally("max")
        floors.add(np.ascontiguousarray(best[0][full], np.uint64), best[1][full].astype(np.float64).view(np.int64))
        self._floors = floors

    def summary(self, model: Model) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[str]]]:
        """Per account (sorted importer hashes): the mean of its top line scores, its
        highest line score, and the indicators contributing most over those lines."""
        if self.parts:
            self._reduce()
        hashes, scores, strengths = self.parts[0] if self.parts else (
            np.zeros(0, np.uint64), np.zeros(0), np.zeros((0, len(self.names))))
        accounts, start = np.unique(hashes, return_index=True)
        counts = np.diff(np.r_[start, len(hashes)])
        means = np.add.reduceat(scores, start) / counts if len(hashes) else np.zeros(0)
        weights = np.array([model.config.weights[name] for name in self.names])
        totals = np.add.reduceat(strengths * weights, start, axis=0) if len(hashes) else \
            np.zeros((0, len(self.names)))
        top, fired = top_contributors(totals, model.config.reasons)
        return accounts, means, scores[start], reason_lists(top, fired, self.names).to_pylist()


_NO_FLOOR = int(np.float64(np.nan).view(np.int64))  # (no line compares <= NaN: every line may enter)


class AccountEvidence:
    """Per account, over all its scored lines: the inspected lines, the violations found
    among them (of the lines a learned model's outcome history does not hold already),
    and the highest strength of each indicator of ``names`` (in thousandths). Exact
    integer sums and maxima: the same whatever the batching or thread count."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.tally = Tally("sum", "sum", *["max"] * len(names))
        self.inspected = 0

    def of(self, lines: pa.RecordBatch, importers: np.ndarray, inspected: np.ndarray, violation: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
        """A batch's evidence as (importer hashes, rows), for :meth:`add`."""
        strengths = [np.round(lines.column(name).to_numpy(zero_copy_only=False) * 1000) for name in self.names]
        rows = np.stack([inspected, violation & inspected, *strengths], axis=1).astype(np.int64) \
            if len(importers) else np.zeros((0, 2 + len(self.names)), np.int64)
        return np.ascontiguousarray(importers, np.uint64), rows

    def add(self, part: tuple[np.ndarray, np.ndarray]) -> None:
        if len(part[0]):
            self.tally.add(*part)
            self.inspected += int(part[1][:, 0].sum())

    def merge(self, other: AccountEvidence) -> None:
        """Adds the evidence another collector gathered (another process's lines, say)."""
        if other.names != self.names:
            raise ValueError(f"cannot merge the evidence of indicators {other.names} into that of {self.names}")
        self.tally.merge(other.tally)
        self.inspected += other.inspected

    def to_arrow(self) -> pa.Table:
        """The evidence as a table (importer hash, then one column per field), to cross processes."""
        keys, rows = self.tally.items()
        rows = rows.reshape(len(keys), 2 + len(self.names))
        return pa.table({"importer_hash": keys, "inspected": rows[:, 0], "violations": rows[:, 1],
                         **{name: rows[:, 2 + i] for i, name in enumerate(self.names)}})

    @classmethod
    def from_arrow(cls, table: pa.Table, names: tuple[str, ...]) -> AccountEvidence:
        """The evidence :meth:`to_arrow` wrote (checked: its columns are those of ``names``)."""
        columns = ["importer_hash", "inspected", "violations", *names]
        if table.column_names != columns:
            raise ValueError(f"account evidence with columns {table.column_names}, expected {columns}")
        evidence = cls(names)
        keys = table.column(0).to_numpy().astype(np.uint64)
        rows = np.stack([table.column(i).to_numpy().astype(np.int64) for i in range(1, len(columns))], axis=1)
        evidence.add((keys, rows.reshape(len(keys), len(columns) - 1)))
        return evidence

    def get(self, importers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per importer hash: inspected lines, violations, and each indicator's highest strength."""
        rows = self.tally.get(np.ascontiguousarray(importers, np.uint64)).reshape(len(importers), 2 + len(self.names))
        return rows[:, 0], rows[:, 1], rows[:, 2:] / 1000.0


class BestLinesPerCenter:
    """Per Center, the ``n`` highest-scoring lines so far (ties: the earlier line), and the
    ``n`` lines of lowest draw: a hash of entry and line number, so a random sample that
    no batching or thread count changes, for the worklist's exploration picks."""

    COLUMNS = ["center", "entry_number", "line_number", "importer_id", "entry_date", "hts_code", "country_of_origin",
               "port_code", "score", "reasons"]

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.seed = seed
        self.by_score: pa.Table | None = None
        self.by_draw: pa.Table | None = None

    def of(self, lines: pa.RecordBatch, entries: np.ndarray) -> tuple[pa.Table, pa.Table]:
        """A batch's own best ``n`` lines per Center by score and by draw, for :meth:`add`;
        ``entries`` are the lines' entry hashes (from the parse: the draw hashes no text)."""
        table = pa.Table.from_batches([lines]).select(self.COLUMNS)
        draws = combine(_DRAW_TAG, np.full(len(entries), self.seed, np.int64), entries,
                        table.column("line_number").to_numpy().astype(np.int64))
        table = table.append_column("draw", pa.array(draws))
        center = pc.fill_null(pc.dictionary_encode(table.column("center")).combine_chunks().indices, -1) \
            .to_numpy(zero_copy_only=False)
        score = table.column("score").to_numpy()
        # Only the lines that can be among a Center's best are sorted (ties included).
        return (self._best(table.take(_smallest_per_group(center, -score, self.n)), "score"),
                self._best(table.take(_smallest_per_group(center, draws, self.n)), "draw"))

    def _best(self, table: pa.Table, by: str) -> pa.Table:
        codes = pc.dictionary_encode(table.column("center")).combine_chunks()
        center = pc.fill_null(codes.indices, -1).to_numpy(zero_copy_only=False)
        key = table.column(by).to_numpy(zero_copy_only=False)
        order = np.lexsort((-key if by == "score" else key, center))  # stable: ties keep input order
        return table.take(pa.array(order[group_ranks(center[order]) < self.n])).combine_chunks()

    def add(self, best: tuple[pa.Table, pa.Table]) -> None:
        by_score, by_draw = best
        self.by_score = by_score if self.by_score is None else self._best(pa.concat_tables([self.by_score, by_score]),
                                                                          "score")
        self.by_draw = by_draw if self.by_draw is None else self._best(pa.concat_tables([self.by_draw, by_draw]), "draw")

    def picks(self, explore: int) -> pa.Table | None:
        """Per Center, the ``n - explore`` best-scoring lines, then ``explore`` lines of the
        lowest draw among the rest, ranked in that order (``pick``: "score" or "exploration")."""
        if self.by_score is None or self.by_draw is None:
            return None
        best = self.by_score.filter(pa.array(group_ranks(self._centers(self.by_score)) < self.n - explore))
        taken = set(zip(best.column("entry_number").to_pylist(), best.column("line_number").to_pylist()))
        rest = self.by_draw.filter(pa.array([(e, n) not in taken for e, n in zip(
            self.by_draw.column("entry_number").to_pylist(), self.by_draw.column("line_number").to_pylist())], pa.bool_()))
        rest = rest.filter(pa.array(group_ranks(self._centers(rest)) < explore))
        both = pa.concat_tables([best.append_column("pick", pa.array(["score"] * best.num_rows, pa.string())),
                                 rest.append_column("pick", pa.array(["exploration"] * rest.num_rows, pa.string()))])
        center = self._centers(both)
        order = np.argsort(center, kind="stable")  # each Center's best lines, then its exploration picks
        both = both.take(pa.array(order)).drop_columns(["draw"])
        return both.append_column("rank", pa.array(group_ranks(center[order]) + 1, pa.int64()))

    @staticmethod
    def _centers(table: pa.Table) -> np.ndarray:
        """Center codes as sortable integers (no Center last)."""
        return np.array([c if c is not None else "~" for c in table.column("center").to_pylist()], dtype=object) \
            .astype(str)


def _smallest_per_group(groups: np.ndarray, key: np.ndarray, n: int) -> np.ndarray:
    """The rows whose ``key`` is among the ``n`` smallest of their group, and every row
    tied with the n-th: a superset of any ordering's first ``n`` (in row order)."""
    keep = np.zeros(len(key), bool)
    for group in np.unique(groups):  # a few: the Centers
        rows = np.flatnonzero(groups == group)
        if len(rows) <= n:
            keep[rows] = True
            continue
        nth = np.partition(key[rows], n - 1)[n - 1]
        keep[rows[key[rows] <= nth]] = True
    return np.flatnonzero(keep)


def _draws(seed: int, keys: pa.ChunkedArray) -> np.ndarray:
    """A pseudo-random draw per row from the seed and the row's key alone."""
    if len(keys) == 0:
        return np.zeros(0, np.uint64)
    hashes = hash_strings(pa.record_batch({"k": keys.combine_chunks()}), "k")
    return combine(_DRAW_TAG, np.full(len(keys), seed, np.int64), hashes)


_DRAW_TAG = 77


def account_scores(accounts: pa.Table, top_lines: tuple[np.ndarray, np.ndarray, np.ndarray, list[list[str]]],
                   model: Model, evidence: AccountEvidence | None = None) -> pa.Table:
    """Consolidated accounts with their risk score, reasons, rank within their Center and,
    given the ``evidence`` of their scored lines, facilitation tier (see :func:`facilitation`).

    An account's score is the larger of its account-level indicators (combined like a
    line's) and the mean of its top lines' scores; its reasons are the account-level
    indicators that fired, then the indicators contributing most to its top lines.
    ``top_lines`` is :meth:`BestLinesPerAccount.summary`.
    """
    ids = accounts.column("importer_id").combine_chunks()
    hashes = hash_strings(pa.record_batch({"importer_id": ids}), "importer_id")
    line_accounts, line_means, line_maxes, line_reasons = top_lines
    at = np.minimum(np.searchsorted(line_accounts, hashes), max(len(line_accounts) - 1, 0))
    found = (len(line_accounts) > 0) & (line_accounts[at] == hashes) if len(line_accounts) else np.zeros(len(hashes), bool)
    line_score = np.where(found, line_means[at] if len(line_means) else 0.0, 0.0)
    strengths = model.account_strengths(hashes)
    own, account_reasons = model.combine_account(strengths)
    reasons = [list(dict.fromkeys(mine + (line_reasons[i] if ok else [])))[:model.config.reasons]
               for mine, i, ok in zip(account_reasons, at.tolist(), found.tolist())]
    score = np.maximum(own, line_score)
    table = accounts.append_column("score", pa.array(score))
    table = table.append_column("line_score", pa.array(line_score)).append_column(
        "reasons", pa.array(reasons, pa.list_(pa.string())))
    for i, name in enumerate(ACCOUNT_INDICATORS):
        if name in model.enabled:
            table = table.append_column(name, pa.array(strengths[:, i].astype(np.float32)))
    if evidence is not None:
        record = model.baselines.tallies["acct"].get(hashes).reshape(len(hashes), len(TALLIES["acct"]))
        inspected, violations, highest = evidence.get(hashes)
        known = evidence.inspected > 0
        if model.learned is not None:  # (the outcomes the model learned from: the lines before the scored ones)
            past = model.history.of_importers(hashes)
            inspected, violations = inspected + past[:, 0], violations + past[:, 1]
            known = known or bool(past[:, 0].any())
        tier, why = facilitation(table.column("center").to_numpy(zero_copy_only=False), score,
                                 np.where(found, line_maxes[at] if len(line_maxes) else 0.0, 0.0),
                                 record[:, 1] - record[:, 0] + 1, inspected, violations, known,
                                 np.c_[highest, strengths], [*evidence.names, *ACCOUNT_INDICATORS],
                                 model.config.facilitation)
        table = table.append_column("facilitation", pa.array(tier, pa.string())).append_column(
            "facilitation_reasons", pa.array(why, pa.string()))
    order = table.sort_by([("center", "ascending"), ("score", "descending"), ("importer_id", "ascending")])
    rank = group_ranks(order.column("center").to_numpy(zero_copy_only=False)) + 1
    return order.append_column("rank_in_center", pa.array(rank, pa.int64()))


def facilitation(centers: np.ndarray, score: np.ndarray, line_max: np.ndarray, record_days: np.ndarray,
                 inspected: np.ndarray, violations: np.ndarray, outcomes_known: bool, strengths: np.ndarray,
                 names: list[str], rule: dict[str, float]) -> tuple[list[str], list[str]]:
    """Each account's facilitation tier, "expedite" or "standard", and why, in plain words.

    An account is eligible for expedited release when all its evidence says so: a long
    record (``min_record_days`` from its first entry on record, the model's history
    included, to its last), many inspected lines (``min_inspected_lines``) and no
    violation among them (data without outcomes expedite no account unless that is 0:
    the absence of alarms alone is no evidence); a low score (within the
    lowest ``score_quantile`` of its Center's, or at most ``low_score``) that stays low (no line above
    ``max_line_score``); and no indicator open (none at ``open_strength`` or more on the
    account or any of its lines: ``strengths`` are each account's highest, by ``names``).
    An "expedite" account's reasons are its evidence; a "standard" one's, the tests it failed.
    """
    n = len(score)
    low_bar = np.zeros(n)
    key = np.array(["~" if c is None else c for c in centers.tolist()], dtype=object).astype(str) \
        if n else np.zeros(0, str)
    for center in np.unique(key):
        mine = key == center
        low_bar[mine] = max(np.quantile(score[mine], rule["score_quantile"]), rule["low_score"])
    share, needed, steady = f"{rule['score_quantile']:.0%}", rule["min_inspected_lines"], rule["max_line_score"]
    opened = [""] * n
    rows, columns = np.nonzero(strengths >= rule["open_strength"])
    for i, j in zip(rows.tolist(), columns.tolist()):
        opened[i] += f"{', ' if opened[i] else 'open: '}{names[j]} {strengths[i, j]:.2f}"
    tiers, why = [], []
    for days, seen, found, mine, bar, highest, open_ in zip(record_days.tolist(), inspected.tolist(),
                                                             violations.tolist(), score.tolist(), low_bar.tolist(),
                                                             line_max.tolist(), opened):
        good, bad = [], []
        (good if days >= rule["min_record_days"] else bad).append(f"{days:,} days of record")
        if found:
            bad.append(f"{found:,} violation{'s' if found > 1 else ''} in {seen:,} inspected lines")
        elif seen >= needed:
            good.append(f"{seen:,} inspected lines, no violation" if outcomes_known else "no inspection outcomes")
        elif not outcomes_known:
            bad.append("no inspection outcomes in the data")
        else:
            bad.append(f"only {seen:,} inspected line{'' if seen == 1 else 's'} ({needed:g} needed)")
        if mine > bar:
            bad.append(f"score {mine:.2f}, above the lowest {share} of its Center")
        elif highest > steady:
            bad.append(f"a line scored {highest:.2f}")
        else:
            good.append(f"score in the lowest {share} of its Center, no line above {steady:g}")
        (bad if open_ else good).append(open_ or "no indicator open")
        tiers.append("standard" if bad else "expedite")
        why.append("; ".join(bad if bad else good))
    return tiers, why


def worklist(top_lines: pa.Table | None, accounts: pa.Table, n: int, explore: int = 0, seed: int = 0) -> pa.Table:
    """The worklist: per Center, ``n`` accounts and ``n`` lines in one table (``kind`` says
    which). Of each ``n``, ``explore`` are exploration picks (``pick`` "exploration"): a
    random draw among the rest (by ``seed``), so that outcomes keep arriving from
    everywhere and a model does not only confirm itself; the others are the highest
    scores."""
    columns = ["center", "importer_id", "score", "reasons"]
    best = accounts.filter(pc.less_equal(accounts.column("rank_in_center"), n - explore)).select(columns)
    rest = accounts.filter(pc.greater(accounts.column("rank_in_center"), n - explore)).select(columns)
    rest = rest.append_column("draw", pa.array(_draws(seed, rest.column("importer_id").cast(pa.string())))).sort_by([("center", "ascending"), ("draw", "ascending")])
    rest = rest.filter(pa.array(group_ranks(BestLinesPerCenter._centers(rest)) < explore)).drop_columns(["draw"])
    acc = pa.concat_tables([best.append_column("pick", pa.array(["score"] * best.num_rows, pa.string())),
                            rest.append_column("pick", pa.array(["exploration"] * rest.num_rows, pa.string()))])
    acc = acc.take(pa.array(np.argsort(BestLinesPerCenter._centers(acc), kind="stable")))  # best, then picks, per Center
    account_rows = pa.table({
        "kind": pa.array(["account"] * acc.num_rows), "center": acc.column("center"),
        "rank": pa.array(group_ranks(BestLinesPerCenter._centers(acc)) + 1, pa.int64()), "pick": acc.column("pick"),
        "importer_id": acc.column("importer_id").cast(pa.string()),
        "entry_number": pa.nulls(acc.num_rows, pa.string()), "line_number": pa.nulls(acc.num_rows, pa.int64()),
        "score": acc.column("score"), "reasons": acc.column("reasons"),
    })
    if top_lines is None or top_lines.num_rows == 0:
        return account_rows
    line_rows = pa.table({
        "kind": pa.array(["line"] * top_lines.num_rows), "center": top_lines.column("center"),
        "rank": top_lines.column("rank"), "pick": top_lines.column("pick"),
        "importer_id": top_lines.column("importer_id").cast(pa.string()),
        "entry_number": top_lines.column("entry_number").cast(pa.string()),
        "line_number": top_lines.column("line_number"), "score": top_lines.column("score"),
        "reasons": top_lines.column("reasons"),
    })
    return pa.concat_tables([account_rows, line_rows])
