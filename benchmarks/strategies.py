"""Tuning strategies compared at equal budget on objectives with known optima.

    python -m benchmarks.strategies [--quick] [--seeds 30] [--per-candidate 10 | --budget B]
        [--families smooth noisy ...] [--multipliers 0.5 1 2] [--workers 2]
        [--plot docs/strategies.png]

Budget = objective evaluations ("samples"). Strategies
(``benchmarks/_strategies/catalog.py``): three-stage (the real ``engine.Tuner`` with its
defaults), the same with surfaces centred on PSM's matched means and with per-candidate TPE
proposals instead of Thompson sampling (its ablations), two-stage (random screen by mean,
then tune the winner from scratch; the baseline), naive pooling (the Tuner's flow, selection
by raw mean), tune everything, random search, and peers from the literature
(``benchmarks/_strategies/peers.py``): joint TPE and joint GP (one Optuna study over
candidate and parameters; joint GP on 10 seeds), FLAML's BlendSearch, successive halving and
MaxUCB over per-candidate TPE, and share, then GP mean (equal TPE shares, then the best GP
posterior mean). Families: synthetic ones (``benchmarks/_strategies/landscapes.py``) with a
deterministic true score per candidate plus observation noise (Gaussian, or a pass rate over
N problems), and ``replay``, real HumanEval evaluations of the bundled model served as an
oracle (``benchmarks/_strategies/replay.py``); a strategy's *true score* is its choice's
score without noise.

Each family's budget ``B`` is ``--per-candidate`` (10) evaluations per candidate (30 for
three candidates, 50 for five, 80 for eight), or ``--budget`` for all. Every strategy runs
once per (family, seed, budget) with budgets ``multiplier * B``. Reported per family and
strategy, at ``B``:

- median true score, and that over the family's best score ("of optimum");
- the per-seed ratio to two-stage's (median (q25-q75)) and to the *best peer*'s: the
  strategy other than the three-stage ones with the highest median true score there;
- right candidate: fraction of seeds whose choice is the truly best candidate;
- budget ratio: the budget at which the strategy's median ratio curve reaches 1, over
  ``B``. The curve is ``r(m)`` = median over seeds of (the strategy's true score at budget
  ``m * B``) / (two-stage's true score at ``B``, same seed), on the multiplier grid, linearly
  interpolated between grid points; the first crossing counts, the grid's smallest budget
  stands for "that or less", and ``inf`` means no budget on the grid reached it.
  Two-stage's own figure is at most 1.00 by construction. Runs at different budgets are
  independent runs, not prefixes of one run (a three-stage run's split depends on its
  budget): a per-seed "first budget that beats the target" would reward luck across those
  independent runs (two-stage "needed" 0.73 of its own budget that way), the median curve
  does not.

Each family's label says whether it *qualifies* as a fair test of choosing a candidate
(:func:`~benchmarks._strategies.landscapes.qualification`: the best candidate's tuned
optimum beats the runner-up's by at least 5%, and its peak region is at least 0.1 wide on
every parameter in unit coordinates). The label also gives the *winning share*
(:func:`~benchmarks._strategies.landscapes.winning_share`): the share of the space where
the best candidate's true score reaches the runner-up's optimum, which does not decide
but says how hard the best is to find. After the table, one line per family where
three-stage's median is below the best peer's, naming both, and one per family with the
P(best) three-stage stated for its choice beside how often it was right.

The last line sums it up over every (family, seed) run (ratios and curve pooled):
``three-stage vs two-stage: score ratio X.XX, budget ratio Y.YY, right-candidate rate Z.ZZ``;
the lines before it say the same of every other strategy.
A plot of median true score against budget (one panel per family) goes to ``--plot``.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks._strategies import landscapes
from benchmarks._strategies.catalog import AT_B_ONLY, BASELINE, FEWER_SEEDS, PEERS, STRATEGIES
from benchmarks._strategies.landscapes import Family, Qualification, qualification
from benchmarks._strategies.replay import replay_family

#: Every family: the synthetic ones and the replay of recorded HumanEval evaluations.
FAMILIES = (*landscapes.FAMILIES, "replay")
THREE_STAGE = "three-stage"


def get_family(name: str) -> Family:
    """The family called ``name`` (the replay one is read from disk on first use)."""
    return replay_family() if name == "replay" else landscapes.FAMILIES[name]


@functools.cache
def family_qualification(name: str) -> Qualification:
    """:func:`qualification` of family ``name``, computed once (its winning share is a
    Monte Carlo over 100,000 points), for the table and the findability lines alike."""
    return qualification(get_family(name))


DEFAULT_PLOT = "docs/strategies.png"
DEFAULT_RELIABILITY_PLOT = "docs/reliability.png"
DEFAULT_MULTIPLIERS = (0.5, 1.0)
QUICK_MULTIPLIERS = (0.5, 1.0)


@dataclass(frozen=True)
class Record:
    """One strategy's run: its choice's true score and whether it is the best candidate;
    ``scale`` is its budget over the family's ``B``, ``seconds`` its wall time,
    ``prob_best`` the P(best) it stated for its choice (NaN if none), at the end and
    ``switch_prob_best`` when it chose."""

    family: str
    strategy: str
    seed: int
    budget: int
    score: float
    right: bool
    scale: float = 1.0
    seconds: float = 0.0
    prob_best: float = math.nan
    switch_prob_best: float = math.nan


def run_cell(family: str, seed: int, budgets: tuple[int, ...], base: int) -> list[Record]:
    """Every strategy at every budget for one (family, seed): the unit of parallel work."""
    fam = get_family(family)
    records = []
    for budget in budgets:
        for name, strategy in STRATEGIES.items():
            if (name in AT_B_ONLY and budget != base) or seed >= FEWER_SEEDS.get(name, seed + 1):
                continue
            start = time.perf_counter()
            choice = strategy(fam, budget, seed)
            seconds = time.perf_counter() - start
            score = fam.true(choice.candidate, choice.params)
            right = choice.candidate == fam.best_candidate
            records.append(Record(family, name, seed, budget, score, right,
                                  round(budget / base, 4), seconds, choice.prob_best,
                                  choice.switch_prob_best))  # fmt: skip
    return records


def collect(
    grids: Mapping[str, tuple[int, ...]],
    bases: Mapping[str, int],
    seeds: int,
    workers: int,
) -> list[Record]:
    """All records; ``workers > 1`` spreads the (family, seed) cells over processes,
    the costliest families first."""
    cells = [(f, s, grids[f], bases[f]) for f in grids for s in range(seeds)]
    cells.sort(key=lambda c: -sum(c[2]))
    if workers <= 1:
        return [r for cell in cells for r in run_cell(*cell)]
    with ProcessPoolExecutor(workers) as pool:
        return [r for rs in pool.map(run_cell, *zip(*cells, strict=True)) for r in rs]


# -- statistics ---------------------------------------------------------------------------


def budget_to_match(curve: dict[float, float], budget: float) -> float:
    """Where the ratio ``curve`` (grid budget -> median ratio to the target) first reaches
    1, linearly interpolated, as a fraction of ``budget``; ``inf`` if it never does.

    >>> budget_to_match({10: 0.8, 20: 1.2}, 20)
    0.75
    """
    points = sorted(curve.items())
    if points and points[0][1] >= 1:
        return points[0][0] / budget
    for (b0, r0), (b1, r1) in zip(points, points[1:], strict=False):
        if r1 >= 1:
            return (b0 + (1 - r0) / (r1 - r0) * (b1 - b0)) / budget
    return math.inf


@dataclass(frozen=True)
class Row:
    """Per-seed figures of one (family, strategy) against a target strategy at ``B``."""

    scores: np.ndarray  # true score at B, per seed
    ratios: dict[float, np.ndarray]  # budget / B -> per-seed score / the target's at B
    rights: np.ndarray  # chose the truly best candidate at B, per seed

    def budget_ratio(self) -> float:
        """NaN for a strategy run at ``B`` alone (:data:`AT_B_ONLY`): no curve to read."""
        if len(self.ratios) < 2:
            return math.nan
        return budget_to_match({m: float(np.median(r)) for m, r in self.ratios.items()}, 1.0)


def summarise(records: list[Record], family: str, strategy: str, target: str = BASELINE) -> Row:
    index = {(r.strategy, r.seed, r.scale): r for r in records if r.family == family}
    # The seeds both ran (a strategy of FEWER_SEEDS ran the first few alone).
    seeds = sorted({s for name, s, m in index if name == strategy and m == 1.0}
                   & {s for name, s, m in index if name == target and m == 1.0})  # fmt: skip
    grid = sorted({m for name, _, m in index if name == strategy})
    base = np.array([index[target, s, 1.0].score for s in seeds])
    own = {m: np.array([index[strategy, s, m].score for s in seeds]) for m in grid}
    rights = np.array([index[strategy, s, 1.0].right for s in seeds])
    ratios = {m: scores / np.maximum(base, 1e-9) for m, scores in own.items()}
    return Row(own[1.0], ratios, rights)


def pooled(rows: Sequence[Row]) -> Row:
    """The rows of several families as one, every (family, seed) run counted once (on the
    multipliers every family ran)."""
    grid = set.intersection(*(set(r.ratios) for r in rows))
    return Row(
        np.concatenate([r.scores for r in rows]),
        {m: np.concatenate([r.ratios[m] for r in rows]) for m in sorted(grid)},
        np.concatenate([r.rights for r in rows]),
    )


def summary_line(
    records: list[Record], families: Sequence[str], strategy: str = THREE_STAGE
) -> str:
    """The one-line verdict of ``strategy`` over every (family, seed) run (format fixed by
    the brief for three-stage)."""
    row = pooled([summarise(records, f, strategy) for f in families])
    return (
        f"{strategy} vs {BASELINE}: score ratio {np.median(row.ratios[1.0]):.2f}, "
        f"budget ratio {_ratio(row.budget_ratio())}, "
        f"right-candidate rate {row.rights.mean():.2f}"
    )


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def best_peer(records: list[Record], family: str) -> str:
    """The strategy other than the three-stage ones with the highest median true score in
    ``family`` at its ``B`` (ties: the first in table order)."""
    present = {r.strategy for r in records if r.family == family}
    return max((p for p in PEERS if p in present),
               key=lambda p: float(np.median(summarise(records, family, p).scores)))  # fmt: skip


def losses(records: list[Record], families: Sequence[str], bases: Mapping[str, int]) -> list[str]:
    """A line per family where three-stage's median true score is below the best peer's,
    both over the seeds the peer ran (all of them but for :data:`FEWER_SEEDS`)."""
    lines = []
    for family in families:
        peer = best_peer(records, family)
        own = float(np.median(summarise(records, family, THREE_STAGE, target=peer).scores))
        theirs = float(np.median(summarise(records, family, peer).scores))
        if own < theirs:
            lines.append(f"{family}: {THREE_STAGE} {own:.3f} < best peer {peer} {theirs:.3f} "
                         f"(median true score at budget {bases[family]})")  # fmt: skip
    return lines


def calibration(records: list[Record], families: Sequence[str]) -> list[str]:
    """Per family, the mean P(best) three-stage stated for its choice at ``B`` beside how
    often that choice was the best candidate: whether its confidence can be trusted."""
    lines = []
    for family in families:
        mine = [r for r in records
                if (r.family, r.strategy, r.scale) == (family, THREE_STAGE, 1.0)]  # fmt: skip
        stated = float(np.mean([r.prob_best for r in mine]))
        right = float(np.mean([r.right for r in mine]))
        lines.append(f"{family}: stated {stated:.2f}, right {right:.2f}")
    return lines


def findability(
    records: list[Record], families: Sequence[str], bases: Mapping[str, int]
) -> list[str]:
    """Per family, ``winning share x B/K`` (the random hits on the best candidate's winning
    region a budget of ``B`` split over ``K`` candidates expects) beside how often
    three-stage, and the peer most often right, chose the best candidate at ``B``;
    families sorted by that expectation."""
    rows = []
    for family in families:
        fam = get_family(family)
        hits = family_qualification(family).share * bases[family] / len(fam.candidates)
        at_b = [r for r in records if r.family == family and r.scale == 1.0]

        def rate(name: str, runs: list[Record] = at_b) -> float:
            return float(np.mean([r.right for r in runs if r.strategy == name]))

        peer = max(PEERS, key=rate)
        line = (f"{family}: share x B/K {hits:.2f}, right: {THREE_STAGE} "
                f"{rate(THREE_STAGE):.2f}, best peer {peer} {rate(peer):.2f}")  # fmt: skip
        rows.append((hits, line))
    return [line for _, line in sorted(rows)]


#: Edges of the bins of stated P(best) in the reliability table.
RELIABILITY_BINS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)


#: When three-stage states the P(best) of its choice, and the :class:`Record` field
#: holding it.
MOMENTS = (("at the switch", "switch_prob_best"), ("at the end", "prob_best"))


@dataclass(frozen=True)
class ReliabilityBin:
    """The runs whose stated P(best) is in ``[low, high)`` (the last bin closed): how
    many, their mean stated P(best) and how often their choice was right."""

    low: float
    high: float
    runs: int
    stated: float
    right: float


def reliability_bins(stated: Sequence[float], right: Sequence[bool]) -> list[ReliabilityBin]:
    """The bins of :data:`RELIABILITY_BINS` that hold a run, in order."""
    stated, right = np.asarray(stated, float), np.asarray(right, float)
    index = np.digitize(stated, RELIABILITY_BINS[1:-1])
    return [
        ReliabilityBin(RELIABILITY_BINS[b], RELIABILITY_BINS[b + 1], int((index == b).sum()),
                       float(stated[index == b].mean()), float(right[index == b].mean()))
        for b in np.unique(index)
    ]  # fmt: skip


def expected_calibration_error(stated: Sequence[float], right: Sequence[bool]) -> float:
    """The runs' mean gap between stated P(best) and the right rate, bin by bin
    (:data:`RELIABILITY_BINS`), weighted by the runs in each bin.

    >>> round(expected_calibration_error([0.9, 0.9, 0.3, 0.3], [True, False, False, False]), 3)
    0.35
    """
    bins = reliability_bins(stated, right)
    return sum(abs(b.stated - b.right) * b.runs for b in bins) / sum(b.runs for b in bins)


def stated_runs(records: list[Record], field: str) -> list[Record]:
    """Three-stage's runs at ``B`` that stated a P(best) in ``field`` (a :data:`MOMENTS`
    field)."""
    return [r for r in records if (r.strategy, r.scale) == (THREE_STAGE, 1.0)
            and not math.isnan(getattr(r, field))]  # fmt: skip


def reliability(records: list[Record], families: Sequence[str]) -> list[str]:
    """Three-stage's stated P(best) of its choice at ``B`` (at the switch and at the end),
    binned, against how often the choice was the best candidate; then the expected
    calibration error pooled and per family."""
    lines = []
    for when, field in MOMENTS:
        runs = stated_runs(records, field)
        if not runs:
            continue
        stated, right = [getattr(r, field) for r in runs], [r.right for r in runs]
        lines.append(f"{when}: {len(runs)} runs, pooled ECE "
                     f"{expected_calibration_error(stated, right):.3f}")  # fmt: skip
        for b in reliability_bins(stated, right):
            lines.append(f"  P(best) in [{b.low:.2f}, {b.high:.2f}]: {b.runs} runs, "
                         f"stated {b.stated:.2f}, right {b.right:.2f}")  # fmt: skip
        per_family = []
        for family in families:
            own = [r for r in runs if r.family == family]
            if own:
                ece = expected_calibration_error([getattr(r, field) for r in own],
                                                 [r.right for r in own])  # fmt: skip
                per_family.append(f"{family} {ece:.2f}")
        lines.append(f"  ECE per family: {', '.join(per_family)}")
    return lines


def costs(records: list[Record]) -> list[str]:
    """Median seconds per run of each strategy, at the budgets of the first family with the
    most candidates (its grid is the costliest)."""
    out = []
    for name in STRATEGIES:
        mine = [r for r in records if r.strategy == name]
        per_budget = {}
        for r in mine:
            per_budget.setdefault(r.budget, []).append(r.seconds)
        cells = ", ".join(f"{b}: {np.median(t):.2f}" for b, t in sorted(per_budget.items()))
        total = sum(r.seconds for r in mine)
        out.append(f"  {name}: {total:.0f} s in all; median s per run by budget {cells}")
    return out


# -- output -------------------------------------------------------------------------------


def table(
    records: list[Record], families: Sequence[str], bases: Mapping[str, int], seeds: int
) -> Table:
    fewer = "".join(f", {name} {min(n, seeds)}" for name, n in FEWER_SEEDS.items())
    out = Table(title=f"True score of each strategy's choice at budget B, {seeds} seeds{fewer} "
                      f"(ratios per seed vs {BASELINE} and vs the best peer: "
                      "median (q25-q75))")  # fmt: skip
    for column in ("family (optimum)", "strategy", "median score", "of optimum", f"vs {BASELINE}",
                   "vs best peer", "right cand.", "budget ratio"):  # fmt: skip
        out.add_column(column, justify="left" if column in ("strategy",) else "right")
    for family in families:
        fam = get_family(family)
        q = family_qualification(family)
        peer = best_peer(records, family)
        labels = [
            f"{family} ({fam.best_score:.2f} {fam.best_candidate})",
            f"B {bases[family]}, {len(fam.candidates)} candidates",
            f"gap {q.gap:.0%}, width {q.width:.2f}",
            f"winning share {q.share:.2%}",
            "qualifies" if q.qualifies else "does NOT qualify",
            f"best peer: {peer}",
        ]
        for i, name in enumerate(STRATEGIES):
            row = summarise(records, family, name)
            vs_peer = summarise(records, family, name, target=peer).ratios[1.0]
            q25, q50, q75 = np.percentile(row.ratios[1.0], [25, 50, 75])
            p25, p50, p75 = np.percentile(vs_peer, [25, 50, 75])
            median = float(np.median(row.scores))
            out.add_row(
                labels[i] if i < len(labels) else "", name, f"{median:.3f}",
                f"{median / fam.best_score:.2f}",
                f"{q50:.2f} ({q25:.2f}-{q75:.2f})", f"{p50:.2f} ({p25:.2f}-{p75:.2f})",
                f"{row.rights.mean():.2f}", _ratio(row.budget_ratio()),
                end_section=i == len(STRATEGIES) - 1,
            )  # fmt: skip
    return out


def plot(records: list[Record], families: Sequence[str], path: str) -> None:
    """Median true score against budget per strategy, one panel per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(families))
    rows = math.ceil(len(families) / cols)
    colours = plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2]
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, family in zip(axes.flat, families, strict=False):
        for i, name in enumerate(STRATEGIES):
            grid = sorted({r.budget for r in records if (r.family, r.strategy) == (family, name)})
            medians = [
                np.median([r.score for r in records
                           if (r.family, r.strategy, r.budget) == (family, name, b)])
                for b in grid
            ]  # fmt: skip
            # 11 strategies: a 20-colour palette keeps each line its own colour; the
            # project's method is drawn thicker
            ours = name == THREE_STAGE
            ax.plot(grid, medians, marker="o", label=name, color=colours[i % len(colours)],
                    linewidth=2.5 if ours else 1.2, zorder=3 if ours else 2)  # fmt: skip
        ax.axhline(get_family(family).best_score, color="grey", linestyle="--", linewidth=1)
        ax.set_title(family)
        ax.set_xlabel("budget (evaluations)")
        ax.set_ylabel("median true score")
    for ax in list(axes.flat)[len(families) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(records: list[Record], path: str) -> None:
    """The reliability diagram of three-stage's stated P(best) of its choice at ``B``, at
    the switch and at the end: per bin (:data:`RELIABILITY_BINS`), the right rate against
    the mean stated P(best), each point as large as its runs; on the diagonal it is honest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.0), squeeze=False)
    for ax, (when, field) in zip(axes.flat, MOMENTS, strict=True):
        runs = stated_runs(records, field)
        stated, right = [getattr(r, field) for r in runs], [r.right for r in runs]
        bins = reliability_bins(stated, right) if runs else []
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        ax.plot([b.stated for b in bins], [b.right for b in bins], color="tab:blue", linewidth=1.2)
        ax.scatter([b.stated for b in bins], [b.right for b in bins],
                   s=[8 * b.runs for b in bins], color="tab:blue", zorder=3)  # fmt: skip
        for b in bins:
            ax.annotate(str(b.runs), (b.stated, b.right), textcoords="offset points",
                        xytext=(6, -10), fontsize=7)  # fmt: skip
        ece = expected_calibration_error(stated, right) if runs else math.nan
        ax.set_title(f"{when}: {len(runs)} runs, ECE {ece:.3f}")
        ax.set_xlabel("stated P(best) of the choice (bin mean)")
        ax.set_ylabel("right-candidate rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tens of seconds: 2 seeds, 4 evaluations per candidate, one process (a smoke test)",
    )
    parser.add_argument("--seeds", type=int, default=None, help="default 30 (quick: 2)")
    parser.add_argument(
        "--per-candidate",
        type=int,
        default=None,
        help="each family's budget B is this many evaluations per candidate "
        "(default 10: B = 30, 50, 80 for 3, 5, 8 candidates; quick: 4)",
    )
    parser.add_argument("--budget", type=int, default=None, help="one B for every family")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument(
        "--multipliers",
        type=float,
        nargs="+",
        default=None,
        help=f"budgets run, as multiples of B (default {' '.join(map(str, DEFAULT_MULTIPLIERS))}; "
        f"quick: {' '.join(map(str, QUICK_MULTIPLIERS))}); 1 is always included",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default 2; quick: 1)")
    parser.add_argument("--plot", default=DEFAULT_PLOT, help="PNG path; '' for no plot")
    parser.add_argument(
        "--reliability-plot", default=DEFAULT_RELIABILITY_PLOT,
        help="PNG path of the reliability diagram of three-stage's P(best); '' for none",
    )  # fmt: skip
    args = parser.parse_args(argv)  # fmt: skip
    quick = args.quick
    args.seeds = args.seeds or (2 if quick else 30)
    per = args.per_candidate or (4 if quick else 10)
    args.workers = args.workers or (1 if quick else 2)
    multipliers = set(args.multipliers or (QUICK_MULTIPLIERS if quick else DEFAULT_MULTIPLIERS))
    args.bases, args.grids = {}, {}
    for family in args.families:
        n = len(get_family(family).candidates)
        base = args.budget or per * n
        # Stage 1 of the Tuner needs 2 samples per candidate: smaller budgets are dropped.
        if base < 2 * n:
            parser.error(f"{family}: B = {base} is below 2 samples per candidate ({2 * n})")
        budgets = sorted({round(m * base) for m in multipliers} | {base})
        args.bases[family] = base
        args.grids[family] = tuple(b for b in budgets if b >= 2 * n)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # A pipe or CI log defaults to 80 columns, which would fold the table's cells.
    console = Console(width=max(160, shutil.get_terminal_size().columns))
    start = time.perf_counter()
    records = collect(args.grids, args.bases, args.seeds, args.workers)
    seconds = time.perf_counter() - start
    console.print(table(records, args.families, args.bases, args.seeds))
    grids = "; ".join(f"{f} {', '.join(map(str, g))}" for f, g in args.grids.items())
    console.print(f"budgets run: {grids}", soft_wrap=True)
    console.print(
        f"wall time: {len(records)} strategy runs in {seconds:.0f} s with {args.workers} "
        "process(es); CPU seconds per strategy:"
    )
    for line in costs(records):
        console.print(line, soft_wrap=True)
    if args.plot:
        plot(records, args.families, args.plot)
        console.print(f"plot: {args.plot}")
    if args.reliability_plot:
        plot_reliability(records, args.reliability_plot)
        console.print(f"reliability diagram: {args.reliability_plot}")
    lost = losses(records, args.families, args.bases)
    console.print(f"families where {THREE_STAGE} is below the best peer: {len(lost)}")
    for line in lost:
        console.print(f"  {line}", soft_wrap=True)
    console.print(
        f"{THREE_STAGE}'s P(best) of its choice at B, mean, against how often the "
        "choice was the best candidate:"
    )
    for line in calibration(records, args.families):
        console.print(f"  {line}", soft_wrap=True)
    console.print(
        "right-candidate rate at B against the random hits expected on the best's winning region:"
    )
    for line in findability(records, args.families, args.bases):
        console.print(f"  {line}", soft_wrap=True)
    console.print(f"reliability of {THREE_STAGE}'s P(best) of its choice at B:")
    for line in reliability(records, args.families):
        console.print(f"  {line}", soft_wrap=True)
    for name in STRATEGIES:  # the others first: the last line is three-stage's verdict
        if name not in (THREE_STAGE, BASELINE):
            console.print(summary_line(records, args.families, name), soft_wrap=True)
    console.print(summary_line(records, args.families), soft_wrap=True)


if __name__ == "__main__":
    main()
