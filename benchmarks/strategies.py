"""Tuning strategies compared at equal budget on objectives with known optima.

    python -m benchmarks.strategies [--quick] [--seeds 30] [--budget 30]
        [--families smooth noisy ...] [--multipliers 0.5 0.75 1 1.5 2] [--workers 2]
        [--plot docs/strategies.png] [--exact-psm]

Budget = objective evaluations ("samples"). Strategies (``benchmarks/_strategies/runners.py``):
three-stage (the real ``engine.Tuner`` with its defaults), the same with early
elimination off, two-stage (random screen by mean, then tune the winner from scratch; the
baseline), naive pooling (the Tuner's flow, selection by raw mean), tune everything,
random search. Families: six synthetic ones (``benchmarks/_strategies/landscapes.py``)
with a deterministic true score per candidate plus observation noise, and ``replay``,
real HumanEval evaluations of the bundled model served as an oracle
(``benchmarks/_strategies/replay.py``); a strategy's *true score* is its choice's score
without noise.

Every strategy runs once per (family, seed, budget) with budgets ``multiplier * --budget``.
Reported per family and strategy, at the budget ``B = --budget``:

- median true score, and the per-seed ratio to two-stage's (median (q25-q75));
- right candidate: fraction of seeds whose choice is the truly best candidate;
- budget ratio: the budget at which the strategy's median ratio curve reaches 1, over
  ``B``. The curve is ``r(b)`` = median over seeds of (the strategy's true score at budget
  ``b``) / (two-stage's true score at ``B``, same seed), on the budget grid, linearly
  interpolated between grid points; the first crossing counts, the grid's smallest budget
  stands for "that or less", and ``inf`` means no budget on the grid reached it.
  Two-stage's own figure is at most 1.00 by construction. Runs at different budgets are
  independent runs, not prefixes of one run (a three-stage run's split depends on its
  budget): a per-seed "first budget that beats the target" would reward luck across those
  independent runs (two-stage "needed" 0.73 of its own budget that way), the median curve
  does not.

The last line sums it up over every (family, seed) run (ratios and curve pooled):
``three-stage vs two-stage: score ratio X.XX, budget ratio Y.YY, right-candidate rate Z.ZZ``;
the lines before it say the same of every other strategy.
A plot of median true score against budget (one panel per family) goes to ``--plot``.

Speed: by default the Tuner runs with ``n_bootstrap=0``: its rankings skip the bootstrap
behind their intervals (200 refits after every sample), which cannot change the choice
(the ranking sorts by the point estimate); ``--exact-psm`` keeps it, about 30x slower.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks._strategies import landscapes
from benchmarks._strategies.landscapes import Family
from benchmarks._strategies.replay import replay_family
from benchmarks._strategies.runners import BASELINE, STRATEGIES, TUNER_STRATEGIES

#: Every family: the synthetic ones and the replay of recorded HumanEval evaluations.
FAMILIES = (*landscapes.FAMILIES, "replay")


def get_family(name: str) -> Family:
    """The family called ``name`` (the replay one is read from disk on first use)."""
    return replay_family() if name == "replay" else landscapes.FAMILIES[name]


DEFAULT_PLOT = "docs/strategies.png"


@dataclass(frozen=True)
class Record:
    """One strategy's run: its choice's true score and whether it is the best candidate."""

    family: str
    strategy: str
    seed: int
    budget: int
    score: float
    right: bool


def run_cell(family: str, seed: int, budgets: tuple[int, ...], exact_psm: bool) -> list[Record]:
    """Every strategy at every budget for one (family, seed): the unit of parallel work."""
    fam = get_family(family)
    records = []
    for budget in budgets:
        for name, strategy in STRATEGIES.items():
            if name in TUNER_STRATEGIES:
                choice = strategy(fam, budget, seed, fast=not exact_psm)
            else:
                choice = strategy(fam, budget, seed)
            score = fam.true(choice.candidate, choice.params)
            right = choice.candidate == fam.best_candidate
            records.append(Record(family, name, seed, budget, score, right))
    return records


def collect(
    families: Sequence[str], seeds: int, budgets: tuple[int, ...], workers: int, exact_psm: bool
) -> list[Record]:
    """All records; ``workers > 1`` spreads the (family, seed) cells over processes."""
    cells = [(f, s, budgets, exact_psm) for f in families for s in range(seeds)]
    if workers <= 1:
        return [r for cell in cells for r in run_cell(*cell)]
    with ProcessPoolExecutor(workers) as pool:
        return [r for rs in pool.map(run_cell, *zip(*cells, strict=True)) for r in rs]


# -- statistics ---------------------------------------------------------------------------


def budget_to_match(curve: dict[int, float], budget: int) -> float:
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
    """Per-seed figures of one (family, strategy) against two-stage at budget ``B``."""

    scores: np.ndarray  # true score at B, per seed
    ratios: dict[int, np.ndarray]  # grid budget -> per-seed score / two-stage's at B
    rights: np.ndarray  # chose the truly best candidate at B, per seed

    def budget_ratio(self, budget: int) -> float:
        return budget_to_match({b: float(np.median(r)) for b, r in self.ratios.items()}, budget)


def summarise(records: list[Record], family: str, strategy: str, budget: int) -> Row:
    seeds = sorted({r.seed for r in records if r.family == family})
    grid = sorted({r.budget for r in records})
    index = {(r.family, r.strategy, r.seed, r.budget): r for r in records}
    target = np.array([index[family, BASELINE, s, budget].score for s in seeds])
    own = {b: np.array([index[family, strategy, s, b].score for s in seeds]) for b in grid}
    rights = np.array([index[family, strategy, s, budget].right for s in seeds])
    ratios = {b: scores / np.maximum(target, 1e-9) for b, scores in own.items()}
    return Row(own[budget], ratios, rights)


def pooled(rows: Sequence[Row]) -> Row:
    """The rows of several families as one, every (family, seed) run counted once."""
    grid = rows[0].ratios.keys()
    return Row(
        np.concatenate([r.scores for r in rows]),
        {b: np.concatenate([r.ratios[b] for r in rows]) for b in grid},
        np.concatenate([r.rights for r in rows]),
    )


def summary_line(
    records: list[Record], families: Sequence[str], budget: int, strategy: str = "three-stage"
) -> str:
    """The one-line verdict of ``strategy`` over every (family, seed) run (format fixed by
    the brief for three-stage)."""
    row = pooled([summarise(records, f, strategy, budget) for f in families])
    return (
        f"{strategy} vs {BASELINE}: score ratio {np.median(row.ratios[budget]):.2f}, "
        f"budget ratio {row.budget_ratio(budget):.2f}, "
        f"right-candidate rate {row.rights.mean():.2f}"
    )


# -- output -------------------------------------------------------------------------------


def table(records: list[Record], families: Sequence[str], budget: int, seeds: int) -> Table:
    out = Table(title=f"True score of each strategy's choice at budget {budget}, {seeds} seeds "
                      f"(ratios per seed vs {BASELINE}: median (q25-q75))")  # fmt: skip
    for column in ("family (optimum)", "strategy", "median score", f"vs {BASELINE}",
                   "right cand.", "budget ratio"):  # fmt: skip
        out.add_column(column, justify="left" if column in ("strategy",) else "right")
    for family in families:
        fam = get_family(family)
        for i, name in enumerate(STRATEGIES):
            row = summarise(records, family, name, budget)
            q25, q50, q75 = np.percentile(row.ratios[budget], [25, 50, 75])
            label = f"{family} ({fam.best_score:.2f} {fam.best_candidate})" if i == 0 else ""
            out.add_row(
                label, name, f"{np.median(row.scores):.3f}",
                f"{q50:.2f} ({q25:.2f}-{q75:.2f})", f"{row.rights.mean():.2f}",
                f"{row.budget_ratio(budget):.2f}",
                end_section=i == len(STRATEGIES) - 1,
            )  # fmt: skip
    return out


def plot(records: list[Record], families: Sequence[str], path: str) -> None:
    """Median true score against budget per strategy, one panel per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = sorted({r.budget for r in records})
    cols = min(3, len(families))
    rows = math.ceil(len(families) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, family in zip(axes.flat, families, strict=False):
        for name in STRATEGIES:
            medians = [
                np.median([r.score for r in records
                           if (r.family, r.strategy, r.budget) == (family, name, b)])
                for b in grid
            ]  # fmt: skip
            ax.plot(grid, medians, marker="o", label=name)
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds: 2 seeds, budget 12, one process (a smoke test)",
    )
    parser.add_argument("--seeds", type=int, default=None, help="default 30 (quick: 2)")
    parser.add_argument("--budget", type=int, default=None, help="default 30 (quick: 12)")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument(
        "--multipliers",
        type=float,
        nargs="+",
        default=None,
        help="budgets run, as multiples of --budget (default 0.5 0.75 1 1.5 2; "
        "quick: 0.5 1 2); 1 is always included",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default 2; quick: 1)")
    parser.add_argument("--plot", default=DEFAULT_PLOT, help="PNG path; '' for no plot")
    parser.add_argument(
        "--exact-psm",
        action="store_true",
        help="keep the Tuner's ranking bootstrap (same choices, ~30x slower)",
    )
    args = parser.parse_args(argv)  # fmt: skip
    quick = args.quick
    args.seeds = args.seeds or (2 if quick else 30)
    args.budget = args.budget or (12 if quick else 30)
    args.workers = args.workers or (1 if quick else 2)
    multipliers = set(args.multipliers or ((0.5, 1, 2) if quick else (0.5, 0.75, 1, 1.5, 2)))
    # Stage 1 of the Tuner needs 2 samples per candidate: smaller budgets are dropped.
    least = 2 * max(len(get_family(f).candidates) for f in args.families)
    args.budgets = tuple(sorted({round(m * args.budget) for m in multipliers | {1}}))
    args.budgets = tuple(b for b in args.budgets if b >= least)
    if args.budget < least:
        parser.error(f"--budget must be at least {least} (2 samples per candidate)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # A pipe or CI log defaults to 80 columns, which would fold the table's cells.
    console = Console(width=max(120, shutil.get_terminal_size().columns))
    start = time.perf_counter()
    records = collect(args.families, args.seeds, args.budgets, args.workers, args.exact_psm)
    seconds = time.perf_counter() - start
    console.print(table(records, args.families, args.budget, args.seeds))
    console.print(
        f"budgets run: {', '.join(map(str, args.budgets))}; {len(records)} strategy runs "
        f"in {seconds:.0f} s with {args.workers} process(es)"
    )
    if args.plot:
        plot(records, args.families, args.plot)
        console.print(f"plot: {args.plot}")
    for name in STRATEGIES:  # the others first: the last line is three-stage's verdict
        if name not in ("three-stage", BASELINE):
            console.print(summary_line(records, args.families, args.budget, name), soft_wrap=True)
    console.print(summary_line(records, args.families, args.budget), soft_wrap=True)


if __name__ == "__main__":
    main()
