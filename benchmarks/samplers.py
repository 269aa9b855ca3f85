"""Which optimizer per candidate: TPE, GP or random, at the budgets a candidate gets.

    python -m benchmarks.samplers [--quick] [--seeds 20] [--gp-seeds 6]
        [--budgets 5 10 20 40] [--samplers tpe gp random] [--surfaces smooth/a ...]

The engine gives every candidate its own Optuna study; ``--sampler`` picks its optimizer
(``engine.run.make_sampler``, the engine's own configurations: TPE with 4 random startup
trials, multivariate and grouped; GPSampler with 4 startup trials; random). This measures
them on *one* candidate's surface at a time, the way the engine drives a study:

- the first evaluation is at ``SPACE.default_params()``, added to the study with
  ``optuna.trial.create_trial`` as the engine does (``_add_to_study``);
- every later one is ``study.ask()`` -> ``SPACE.suggest`` -> a noisy observation ->
  ``study.tell``, the sampler reseeded before each ask with ``engine.selection.sampler_seed`` (as
  the engine reseeds it, so a resumed run proposes the same points);
- surfaces: every candidate of every synthetic family
  (``benchmarks/_strategies/landscapes.py``, observation noise as the family states) and
  of the replay family (``benchmarks/_strategies/replay.py``, real HumanEval outcomes),
  except a replay candidate whose best true score is 0 (nothing to reach).

A sampler does not know the budget, so the first b trials of a 40-trial run are what a
b-trial run would propose: one run per (surface, seed, sampler) gives every budget.
Reported per budget and sampler, medians over (surface, seed):

- *best tried*: the highest true (noise-free) score among the trials so far, over the
  surface's optimum (``Surface.peak``; the replay family's searched maximum);
- *chosen*: the true score of the trial with the highest *observed* score (what the
  engine would answer), over the optimum;
- seconds per run: wall time of the run up to that budget (asks, tells and observations).

The last line is the verdict: the median fraction of the optimum reached by *chosen*,
pooled over every budget, surface and seed, per sampler.

Cost: GPSampler refits its Gaussian process on every ask: about 3.5 s for a 40-trial
run on one thread of the development machine, against 0.2 s for TPE and almost nothing
for random. 20 surfaces x 20 seeds of it would take about 25 minutes, so GP runs on the
first ``--gp-seeds`` seeds (default 6) and the others on all ``--seeds``; the "vs tpe"
column compares GP with TPE on the same (surface, seed) pairs. Torch runs on one thread
(one process, one core: the machine is shared, and for matrices this small more threads
were slower, not faster).

GPSampler does not support Optuna's dynamic search spaces: the engine's space is
conditional (top_p and top_k exist only when sampling), so GPSampler samples
temperature, top_p and top_k *independently at random* (it says so in a warning,
silenced here) and models only the remaining parameters.
"""

from __future__ import annotations

import argparse
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import optuna
import torch
from rich.console import Console
from rich.table import Table

from benchmarks._strategies.landscapes import FAMILIES, SPACE
from benchmarks._strategies.replay import replay_family
from engine.run import make_sampler
from engine.selection import sampler_seed

SAMPLERS = ("tpe", "gp", "random")
BUDGETS = (5, 10, 20, 40)
QUICK_SURFACES = ("smooth/b", "multimodal/b", "replay/smollm2")


@dataclass(frozen=True)
class Surface:
    """One candidate's surface: ``family/candidate``, its family and its optimum."""

    name: str
    family: object  # a landscapes.Family
    candidate: str
    optimum: float


def surfaces() -> dict[str, Surface]:
    """Every candidate surface of the synthetic families and of the replay family."""
    out = {}
    for fam in FAMILIES.values():
        for c in fam.candidates:
            out[f"{fam.name}/{c}"] = Surface(f"{fam.name}/{c}", fam, c, fam.surfaces[c].peak)
    replay = replay_family()
    for c in replay.candidates:
        best = replay.best(c)
        if best > 0:  # a candidate that never passes a test has nothing to reach
            out[f"replay/{c}"] = Surface(f"replay/{c}", replay, c, best)
    return out


@dataclass(frozen=True)
class Run:
    """One sampler's run on one surface: per trial, the true and observed score and the
    wall seconds spent up to and including it."""

    surface: str
    sampler: str
    seed: int
    true: np.ndarray
    observed: np.ndarray
    seconds: np.ndarray
    optimum: float

    def best_tried(self, budget: int) -> float:
        return float(self.true[:budget].max() / self.optimum)

    def chosen(self, budget: int) -> float:
        return float(self.true[int(np.argmax(self.observed[:budget]))] / self.optimum)


def run_one(surface: Surface, sampler: str, seed: int, budget: int) -> Run:
    """``budget`` evaluations of one surface by one sampler, the engine's way."""
    rng = np.random.default_rng([seed, 7919])  # the same noise stream for every sampler
    study = optuna.create_study(direction="maximize")
    true, observed, seconds = [], [], []
    start = time.perf_counter()
    for trial_number in range(budget):
        study.sampler = make_sampler(sampler, sampler_seed(seed, 0, trial_number))
        if trial_number == 0:
            params, trial = SPACE.default_params(), None
        else:
            trial = study.ask()
            params = SPACE.suggest(trial)
        value = surface.family.observe(surface.candidate, params, rng)
        if trial is None:
            values, dists = SPACE.trial_values(params)
            study.add_trial(
                optuna.trial.create_trial(params=values, distributions=dists, value=value)
            )
        else:
            study.tell(trial, value)
        seconds.append(time.perf_counter() - start)
        true.append(surface.family.true(surface.candidate, params))
        observed.append(value)
    return Run(
        surface.name, sampler, seed, np.array(true), np.array(observed), np.array(seconds),
        surface.optimum,
    )  # fmt: skip


def collect(
    names: Sequence[str], samplers: Sequence[str], seeds: int, budget: int, gp_seeds: int
) -> list[Run]:
    """Every (surface, seed, sampler) run; GP only on the first ``gp_seeds`` seeds."""
    table = surfaces()
    return [
        run_one(table[name], sampler, seed, budget)
        for name in names
        for seed in range(seeds)
        for sampler in samplers
        if sampler != "gp" or seed < gp_seeds
    ]


# -- statistics and output ----------------------------------------------------------------


def figures(runs: list[Run], sampler: str, budget: int) -> tuple[float, float, float]:
    """Median best-tried fraction, median chosen fraction, median seconds per run."""
    own = [r for r in runs if r.sampler == sampler]
    return (
        float(np.median([r.best_tried(budget) for r in own])),
        float(np.median([r.chosen(budget) for r in own])),
        float(np.median([r.seconds[budget - 1] for r in own])),
    )


def verdict(runs: list[Run], samplers: Sequence[str], budgets: Sequence[int]) -> str:
    """``samplers: tpe 0.81, gp 0.86, random 0.70 (...)``: the median chosen fraction,
    pooled over budgets, surfaces and seeds."""
    parts = [
        f"{s} {np.median([r.chosen(b) for r in runs if r.sampler == s for b in budgets]):.2f}"
        for s in samplers
    ]
    return (
        f"samplers: {', '.join(parts)} (median fraction of the optimum reached, "
        "pooled over budgets)"
    )


def table(runs: list[Run], samplers: Sequence[str], budgets: Sequence[int], title: str) -> Table:
    out = Table(title=title, title_justify="left")
    for column in ("budget", "sampler", "runs", "best tried / optimum", "chosen / optimum",
                   "s per run", "chosen vs tpe"):  # fmt: skip
        out.add_column(column, justify="left" if column == "sampler" else "right")
    for budget in budgets:
        for i, sampler in enumerate(samplers):
            tried, chosen, seconds = figures(runs, sampler, budget)
            n = sum(r.sampler == sampler for r in runs)
            out.add_row(
                str(budget) if i == 0 else "", sampler, str(n), f"{tried:.3f}", f"{chosen:.3f}",
                f"{seconds:.2f}", _wins(runs, sampler, budget),
                end_section=i == len(samplers) - 1,
            )  # fmt: skip
    return out


def _wins(runs: list[Run], sampler: str, budget: int) -> str:
    """On the (surface, seed) pairs both ran: median of (chosen - TPE's chosen) and the
    share of pairs where ``sampler`` beats TPE (ties count half)."""
    if sampler == "tpe":
        return "-"
    tpe = {(r.surface, r.seed): r.chosen(budget) for r in runs if r.sampler == "tpe"}
    pairs = np.array([(r.chosen(budget), tpe[r.surface, r.seed]) for r in runs
                      if r.sampler == sampler and (r.surface, r.seed) in tpe])  # fmt: skip
    if not pairs.size:
        return "-"
    a, b = pairs[:, 0], pairs[:, 1]
    share = np.mean(np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)))
    return f"{np.median(a - b):+.3f}, wins {share:.2f}"


def per_surface(runs: list[Run], samplers: Sequence[str], budget: int) -> Table:
    out = Table(title=f"chosen / optimum per surface at budget {budget} (median over seeds)",
                title_justify="left")  # fmt: skip
    out.add_column("surface")
    for s in samplers:
        out.add_column(s, justify="right")
    for name in dict.fromkeys(r.surface for r in runs):
        cells = []
        for s in samplers:
            own = [r.chosen(budget) for r in runs if (r.surface, r.sampler) == (name, s)]
            cells.append(f"{np.median(own):.3f}" if own else "-")
        out.add_row(name, *cells)
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 2 seeds, budgets 5 10, three surfaces")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=None, help="default 20 (quick: 2)")
    parser.add_argument("--gp-seeds", type=int, default=None,
                        help="GP runs the first of --seeds (default 6; quick: 2)")  # fmt: skip
    parser.add_argument("--budgets", type=int, nargs="+", default=None,
                        help="default 5 10 20 40 (quick: 5 10)")  # fmt: skip
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--surfaces", nargs="+", default=None,
                        help="family/candidate names (default: all; quick: three)")  # fmt: skip
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (2 if args.quick else 20)
    args.gp_seeds = min(args.seeds, args.gp_seeds or (2 if args.quick else 6))
    args.budgets = tuple(sorted(set(args.budgets or ((5, 10) if args.quick else BUDGETS))))
    known = surfaces()
    args.surfaces = args.surfaces or list(QUICK_SURFACES if args.quick else known)
    unknown = [s for s in args.surfaces if s not in known]
    if unknown:
        parser.error(f"unknown surface(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if min(args.budgets) < 1:
        parser.error("budgets must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(width=max(120, shutil.get_terminal_size().columns))
    # GPSampler warns on every ask that it samples the conditional parameters at random
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    torch.set_num_threads(1)
    start = time.perf_counter()
    runs = collect(args.surfaces, args.samplers, args.seeds, max(args.budgets), args.gp_seeds)
    seconds = time.perf_counter() - start
    gp = f" (gp: {args.gp_seeds})" if "gp" in args.samplers else ""
    title = (
        f"Per-candidate samplers: {len(args.surfaces)} surfaces x {args.seeds} seeds{gp}, "
        "medians over (surface, seed); fractions of each surface's optimum"
    )
    console.print(table(runs, args.samplers, args.budgets, title))
    console.print(per_surface(runs, args.samplers, max(args.budgets)))
    console.print(f"{len(runs)} runs of {max(args.budgets)} evaluations in {seconds:.0f} s, "
                  "one process")  # fmt: skip
    console.print(verdict(runs, args.samplers, args.budgets), soft_wrap=True)


if __name__ == "__main__":
    main()
