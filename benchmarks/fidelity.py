"""Multi-fidelity over problems: what stopping configurations early saves, in tokens.

    python -m benchmarks.fidelity [--quick] [--seeds 20] [--families smooth ...]
        [--multipliers 0.25 0.5 1] [--workers 2]

Every strategy of :mod:`benchmarks._fidelity` tunes the same per-problem families (each
synthetic family's candidates on 40 problems of fixed difficulty, with per-problem token
costs) at the same *generated-tokens* budgets: ``multiplier * T``, where ``T`` is what
``--per-candidate`` (10) whole samples per candidate cost at the default point. Reported
per family and pooled over families:

- the median true score of each strategy's choice over the family's optimum, at every
  budget, and how often it chose the truly best candidate at ``T``;
- the **tokens ratio**: the budget at which fidelity auto's median curve reaches fidelity
  off's median at ``T``, over ``T`` (linearly interpolated on the grid, as
  ``benchmarks.strategies`` reads its budget ratio; ``inf``: never on the grid).

The last line: ``fidelity auto vs off: tokens ratio X.XX at equal score; at equal tokens
auto X.XXX, best multi-fidelity peer (name) X.XXX``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks._fidelity import AUTO, OFF, STRATEGIES, ProblemFamily
from benchmarks._strategies import landscapes
from benchmarks._strategies.landscapes import SPACE
from benchmarks.strategies import budget_to_match

#: Synthetic families whose scores are pass rates in [0, 1] with a per-candidate optimum.
FAMILIES = ("smooth", "multimodal", "narrow", "regions", "equal_mean", "pass_at_1", "hidden")
DEFAULT_MULTIPLIERS = (0.25, 0.5, 1.0)


def family(name: str) -> ProblemFamily:
    return ProblemFamily.of(landscapes.FAMILIES[name])


def base_tokens(fam: ProblemFamily, per_candidate: int) -> int:
    """``T``: ``per_candidate`` whole samples per candidate at the default point."""
    default = fam.tokens(SPACE.default_params(), list(range(len(fam.difficulty))))
    return per_candidate * len(fam.candidates) * default


def run_cell(name: str, seed: int, budgets: tuple[tuple[float, int], ...]) -> list[tuple]:
    """Every strategy at every budget for one (family, seed)."""
    fam = family(name)
    rows = []
    for scale, tokens in budgets:
        for strategy, run in STRATEGIES.items():
            choice = run(fam, tokens, seed)
            score = fam.true(choice.candidate, choice.params) / fam.best_score
            rows.append((name, strategy, seed, scale, score,
                         choice.candidate == fam.best_candidate))  # fmt: skip
    return rows


def _pick(rows: list[tuple], families: Sequence[str], strategy: str, scale: float,
          column: int = 4) -> list:  # fmt: skip
    """One column (4: score over the optimum, 5: right candidate) of the runs of
    ``strategy`` at budget ``scale * T`` on ``families``."""
    return [r[column] for r in rows if r[0] in families and r[1] == strategy and r[3] == scale]


def tokens_ratio(rows: list[tuple], families: Sequence[str]) -> float:
    """Where auto's median curve (pooled over ``families``) reaches off's median at 1."""
    target = float(np.median(_pick(rows, families, OFF, 1.0)))
    grid = sorted({r[3] for r in rows if r[1] == AUTO})
    curve = {m: float(np.median(_pick(rows, families, AUTO, m))) / target for m in grid}
    return budget_to_match(curve, 1.0)


def table(rows: list[tuple], families: Sequence[str], grid: Sequence[float]) -> Table:
    out = Table(title="True score of each choice over the optimum (median over seeds), at "
                      "equal generated tokens")  # fmt: skip
    out.add_column("family", justify="right")
    out.add_column("strategy")
    for m in grid:
        out.add_column(f"{m:g} T", justify="right")
    out.add_column("right cand.", justify="right")
    out.add_column("tokens ratio", justify="right")
    for group in [*([f] for f in families), list(families)]:
        label = group[0] if len(group) == 1 else "pooled"
        for i, strategy in enumerate(STRATEGIES):
            cells = [f"{np.median(_pick(rows, group, strategy, m)):.3f}" for m in grid]
            right = np.mean(_pick(rows, group, strategy, 1.0, column=5))
            ratio = f"{tokens_ratio(rows, group):.2f}" if strategy == AUTO else ""
            out.add_row(label if i == 0 else "", strategy, *cells, f"{right:.2f}", ratio,
                        end_section=i == len(STRATEGIES) - 1)  # fmt: skip
    return out


def summary(rows: list[tuple], families: Sequence[str]) -> str:
    at_t = {s: float(np.median(_pick(rows, families, s, 1.0))) for s in STRATEGIES}
    peers = {s: v for s, v in at_t.items() if s not in (AUTO, OFF)}
    peer = max(peers, key=peers.get)
    return (f"fidelity auto vs off: tokens ratio {tokens_ratio(rows, families):.2f} at equal "
            f"score; at equal tokens auto {at_t[AUTO]:.3f}, best multi-fidelity peer "
            f"({peer}) {peers[peer]:.3f}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 2 families, 1 process")
    parser.add_argument("--seeds", type=int, default=None, help="default 20 (quick: 2)")
    parser.add_argument("--per-candidate", type=int, default=10)
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=None)
    parser.add_argument("--multipliers", nargs="+", type=float, default=None)
    parser.add_argument("--workers", type=int, default=None, help="default 2 (quick: 1)")
    args = parser.parse_args(argv)
    seeds = args.seeds or (2 if args.quick else 20)
    families = args.families or (["smooth", "pass_at_1"] if args.quick else list(FAMILIES))
    per_candidate = 3 if args.quick else args.per_candidate
    grid = tuple(sorted(set(args.multipliers or DEFAULT_MULTIPLIERS) | {1.0}))
    workers = args.workers or (1 if args.quick else 2)
    cells = []
    for name in families:
        t = base_tokens(family(name), per_candidate)
        budgets = tuple((m, int(m * t)) for m in grid)
        cells += [(name, s, budgets) for s in range(seeds)]
    start = time.perf_counter()
    if workers <= 1:
        rows = [r for cell in cells for r in run_cell(*cell)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            rows = [r for rs in pool.map(run_cell, *zip(*cells, strict=True)) for r in rs]
    console = Console(width=140)
    console.print(table(rows, families, grid))
    console.print(f"{len(rows)} strategy runs in {time.perf_counter() - start:.0f} s "
                  f"with {workers} process(es)")  # fmt: skip
    print(summary(rows, families))  # one line, never folded


if __name__ == "__main__":
    main()
