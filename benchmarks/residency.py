"""Many candidates, one device: the time spent loading models when they cannot all be
resident, against every model resident.

    python -m benchmarks.residency [--seeds 10] [--quick]

The real engine (``engine.Tuner`` with its defaults) tunes a strategy family
(``benchmarks/_strategies/landscapes.py``) whose every evaluation goes through the real
:class:`engine.generation.Residency` to a stand-in backend: a model of a configured size
whose load and evaluation take configured seconds on a virtual clock, so a case of 7B
models, 20 s loads and 30 s evaluations runs in seconds, and the order of loads is the
run's own. Each case is run three ways: every model resident (the lower bound: the budget
holds them all), the budget of the device with every sample chosen afresh (naive LRU,
``--switch-block 1``), and switch-aware (``--switch-block auto``, the default: the run
reads the seconds its samples spent switching models, which the Residency times here on
the virtual clock, and keeps a candidate for a block of samples). Reported per case,
median over seeds: the run's time (loads plus evaluations), the number of loads, and
that over the all-resident time, and the tuning result (right-candidate rate, median
true score) all-resident and switch-aware. Naive LRU decides exactly as all-resident
(asserted): residency alone changes when a model is loaded, never what the run decides.

Cases: 3 and 5 candidates of 15 GB on one 24 GB device (one fits), 20 s loads and 30 s
evaluations; 4 candidates on 2 devices (each holding one of its two models; jobs split
by candidate); and two where a switch costs more or less against an evaluation (vLLM
engines that start in 60 s against 10 s evaluations; 5 s loads against 30 s ones).
``--quick`` is a seconds-long smoke test.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks._strategies.landscapes import FAMILIES, SPACE, Family
from engine import Tuner
from engine.evaluation import Evaluation, ObjectiveEvaluator
from engine.generation import Residency
from engine.generation.backends import Backend, Generation

GB = 10**9


@dataclass(frozen=True)
class Case:
    """``family`` tuned with its candidates' models of ``model_gb`` on ``devices`` devices
    of ``device_gb`` each; a load takes ``load_s``, an evaluation ``eval_s``."""

    name: str
    family: str
    model_gb: float
    device_gb: float
    devices: int
    load_s: float
    eval_s: float


CASES = (
    Case("3 x 15 GB on 24 GB", "hot_nucleus", 15, 24, 1, 20, 30),
    Case("5 x 15 GB on 24 GB", "penalty", 15, 24, 1, 20, 30),
    Case("4 x 15 GB on 2 x 24 GB", "sampling_only", 15, 24, 2, 20, 30),
    # The block is sized from what a switch costs against an evaluation: a vLLM engine's
    # start against short evaluations, and a quick load against long ones.
    Case("3 x 15 GB on 24 GB, 60/10 s", "smooth", 15, 24, 1, 60, 10),
    Case("3 x 15 GB on 24 GB, 5/30 s", "noisy", 15, 24, 1, 5, 30),
)


class StandIn(Backend):
    """A model of ``size`` bytes that adds ``eval_s`` to ``clock`` per evaluation."""

    fingerprint = "stand-in"

    def __init__(self, size: int, clock: list[float], eval_s: float) -> None:
        self.size, self.clock, self.eval_s = size, clock, eval_s

    def memory_bytes(self) -> int:
        return self.size

    def generate(self, prompts, generation_kwargs, *, seed, stop=()) -> list[Generation]:
        self.clock[0] += self.eval_s
        return [Generation("", 0, 0) for _ in prompts]


class Device:
    """One device: its residency and its clock."""

    def __init__(self, case: Case, all_resident: bool) -> None:
        self.clock = [0.0]
        self.case = case
        budget = None if all_resident else int(case.device_gb * GB)
        self.residency = Residency(budget, clock=lambda: self.clock[0])

    def evaluate(self, candidate: str) -> None:
        case, size = self.case, int(self.case.model_gb * GB)

        def load() -> Backend:
            self.clock[0] += case.load_s
            return StandIn(size, self.clock, case.eval_s)

        self.residency.get(candidate, candidate, size, load).generate([""], {}, seed=0)


class VirtualEvaluator(ObjectiveEvaluator):
    """The objective's evaluations with their seconds, and those of switching models,
    read on the virtual clock of the device that made them (what a run's
    :class:`~engine.evaluation.TaskEvaluator` measures on a real one)."""

    def __init__(self, objective: Callable, names: list[str], devices: list[Device]) -> None:
        super().__init__(objective, names)
        self.devices = devices

    def evaluate(self, candidate: str, params: dict, **kwargs) -> Evaluation:
        device = self.devices[self.candidates.index(candidate) % len(self.devices)]
        start, switched = device.clock[0], device.residency.switch_seconds
        evaluation = super().evaluate(candidate, params, **kwargs)
        return replace(evaluation, seconds=device.clock[0] - start,
                       switch_seconds=device.residency.switch_seconds - switched)  # fmt: skip


def run(case: Case, seed: int, all_resident: bool, block: int | str = "auto") -> dict:
    """One run of the real Tuner on ``case`` (``--switch-block`` ``block``); its virtual
    time, loads and choice."""
    family: Family = FAMILIES[case.family]
    devices = [Device(case, all_resident) for _ in range(case.devices)]
    names = list(family.candidates)
    rng = np.random.default_rng(seed)

    def objective(candidate: str, params: dict) -> float:
        devices[names.index(candidate) % len(devices)].evaluate(candidate)
        return family.observe(candidate, params, rng)

    class VirtualTuner(Tuner):
        def _evaluator(self) -> VirtualEvaluator:
            return VirtualEvaluator(objective, names, devices)

    budget = 10 * len(names)
    result = VirtualTuner(objective=objective, candidates=names, budget=budget, seed=seed,
                          space=SPACE, switch_block=block).run()  # fmt: skip
    return {
        "seconds": max(d.clock[0] for d in devices),
        "loads": sum(d.residency.loads for d in devices),
        "right": result.best_candidate == family.best_candidate,
        "score": family.true(result.best_candidate, result.best_params),
    }


def table(cases: Sequence[Case], seeds: int) -> Table:
    out = Table(
        title=f"Time of one run (loads + evaluations, virtual clock), median of {seeds} "
        "seeds; budget 10 evaluations per candidate; a load 20 s and an evaluation 30 s "
        "unless the case says (load/evaluation); blocks: --switch-block auto"
    )
    columns = ("case", "all resident", "loads", "naive LRU", "loads", "/ all", "blocks", "loads",
               "/ all", "right: evidence, blocks", "median score: evidence, blocks")  # fmt: skip
    for column in columns:
        first = column == "case"
        out.add_column(column, justify="left" if first else "right", no_wrap=first)
    for case in cases:
        resident = [run(case, s, True) for s in range(seeds)]
        lru = [run(case, s, False, block=1) for s in range(seeds)]
        blocks = [run(case, s, False) for s in range(seeds)]
        assert [r["score"] for r in resident] == [r["score"] for r in lru]  # same decisions

        def median(rows: list[dict], key: str) -> float:
            return float(np.median([r[key] for r in rows]))

        def over_resident(rows: list[dict], resident: list[dict] = resident) -> str:
            ratios = [b["seconds"] / a["seconds"] for a, b in zip(resident, rows, strict=True)]
            return f"{np.median(ratios):.2f}"

        def right(rows: list[dict]) -> str:
            return f"{np.mean([r['right'] for r in rows]):.2f}"

        out.add_row(
            case.name,
            f"{median(resident, 'seconds') / 60:.1f} min", f"{median(resident, 'loads'):.0f}",
            f"{median(lru, 'seconds') / 60:.1f} min", f"{median(lru, 'loads'):.0f}",
            over_resident(lru),
            f"{median(blocks, 'seconds') / 60:.1f} min", f"{median(blocks, 'loads'):.0f}",
            over_resident(blocks), f"{right(resident)}, {right(blocks)}",
            f"{median(resident, 'score'):.3f}, {median(blocks, 'score'):.3f}",
        )  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 seeds, the first case")
    args = parser.parse_args(argv)
    cases = CASES[:1] if args.quick else CASES
    Console(width=160).print(table(cases, 2 if args.quick else args.seeds))


if __name__ == "__main__":
    main()
