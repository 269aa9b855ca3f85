"""Synthetic objective families with known optima, over the engine's default decoding space.

A family is a few candidates, each with a deterministic *true* score ``f(params)`` in
[0, 1], plus Gaussian observation noise of a stated size. The true score of a strategy's
choice is ``f`` without noise. Every candidate's surface is

    f(u) = clip(base + max_m height_m * g_m(u) + ripple(u), 0, 1)

over unit coordinates ``u`` of the parameters (:func:`unit_coordinates`), where ``g_m`` is
a Gaussian bump of value 1 at the mode's centre and ``ripple`` is ``<= 0`` and exactly 0 at
the highest mode's centre. So a candidate's optimum is, by construction, the centre of its
highest mode with value ``base + height`` (the ``peak`` stated in :class:`Surface`), which
``tests/benchmarks/test_strategies_benchmark.py`` checks against random and perturbed points.

Greedy decoding (temperature 0) has no top_p / top_k; it is placed where the engine's
propensity covariates put it (:meth:`engine.space.SearchSpace.covariates`): temperature 0
with no truncation (top_p 1, top_k at the top of its range), i.e. the cold end of the
sampling branch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from engine import MIN_SAMPLING_TEMPERATURE, SearchSpace

SPACE = SearchSpace()
PARAMS = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")


def unit_coordinates(params: Mapping[str, Any]) -> np.ndarray:
    """The 5 parameters of ``params`` mapped to [0, 1] each (log scale where searched so):
    the engine's own unit coordinates, :meth:`engine.SearchSpace.unit`.

    Greedy params (temperature 0, no top_p / top_k) get top_p = 1 and top_k = its maximum.
    """
    return np.array(SPACE.unit(params))


def random_unit_points(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit points distributed like Optuna's RandomSampler over the engine's space:
    greedy or sampling with probability 1/2, then each searched parameter uniform on its
    (log) scale. Integer rounding of top_k / max_new_tokens is ignored (it moves a mean
    by far less than the tolerance the tests use)."""
    u = rng.random((n, len(PARAMS)))
    t = SPACE.ranges["temperature"]
    u[:, 0] = (MIN_SAMPLING_TEMPERATURE + u[:, 0] * (t.high - MIN_SAMPLING_TEMPERATURE)) / t.high
    greedy = rng.random(n) < 0.5
    u[greedy, 0], u[greedy, 1], u[greedy, 2] = 0.0, 1.0, 1.0
    return u


@dataclass(frozen=True)
class Mode:
    """A Gaussian bump ``height * exp(-|(u - centre) / width|^2 / 2)``; ``centre`` is a
    decoding-params dict (so the stated optimum is a real point of the space)."""

    centre: Mapping[str, Any]
    width: float | Sequence[float]
    height: float

    def value(self, u: np.ndarray) -> np.ndarray:
        z = (u - unit_coordinates(self.centre)) / np.asarray(self.width, dtype=float)
        return self.height * np.exp(-0.5 * (z**2).sum(axis=-1))


@dataclass(frozen=True)
class Surface:
    """One candidate's true score. ``ripple`` (amplitude) adds ``<= 0`` wiggles that vanish
    at the top mode's centre, making the surface multimodal without moving its optimum."""

    base: float
    modes: tuple[Mode, ...]
    ripple: float = 0.0
    ripple_frequency: float = 2.0

    @property
    def top(self) -> Mode:
        return max(self.modes, key=lambda m: m.height)

    @property
    def optimum(self) -> dict[str, Any]:
        return dict(self.top.centre)

    @property
    def peak(self) -> float:
        return min(1.0, self.base + self.top.height)

    def values(self, u: np.ndarray) -> np.ndarray:
        """True scores of unit points ``u`` (n, 5) -> (n,)."""
        u = np.atleast_2d(u)
        bumps = np.max([m.value(u) for m in self.modes], axis=0)
        phase = 2 * math.pi * self.ripple_frequency * (u - unit_coordinates(self.top.centre))
        wiggle = self.ripple * (np.cos(phase).prod(axis=-1) - 1) / 2  # in [-ripple, 0]
        return np.clip(self.base + bumps + wiggle, 0.0, 1.0)

    def __call__(self, params: Mapping[str, Any]) -> float:
        return float(self.values(unit_coordinates(params))[0])

    def mean(self, n: int = 20_000, seed: int = 0) -> float:
        """Mean true score over the space's random-search distribution (Monte Carlo)."""
        return float(self.values(random_unit_points(n, np.random.default_rng(seed))).mean())


class Family(Protocol):
    """What a strategy and the report see of a benchmark family."""

    name: str
    description: str
    candidates: tuple[str, ...]

    def true(self, candidate: str, params: Mapping[str, Any]) -> float:
        """The noise-free score of ``params`` (what a choice is judged by)."""

    def observe(self, candidate: str, params: Mapping[str, Any], rng: np.random.Generator) -> float:
        """One noisy evaluation, as a strategy sees it."""

    def unit_values(self, candidate: str, u: np.ndarray) -> np.ndarray:
        """True scores of unit points ``u`` (n, 5) -> (n,) (:func:`unit_coordinates`)."""

    def optimum_unit(self, candidate: str) -> np.ndarray:
        """The unit coordinates of ``candidate``'s optimum."""

    def peak_of(self, candidate: str) -> float:
        """``candidate``'s tuned optimum: its best true score."""

    @property
    def best_candidate(self) -> str: ...

    @property
    def best_score(self) -> float: ...


@dataclass(frozen=True)
class SyntheticFamily:
    """A synthetic :class:`Family`: named candidate surfaces and observation noise.

    The noise is Gaussian of standard deviation ``noise``, or, with ``problems = N``, that
    of a pass rate: an observation is ``Binomial(N, p) / N`` with ``p`` the true score
    (the fraction of N problems solved, each solved with probability ``p``).
    """

    name: str
    description: str
    surfaces: Mapping[str, Surface]
    noise: float = 0.0
    problems: int | None = None
    candidates: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", tuple(self.surfaces))

    def true(self, candidate: str, params: Mapping[str, Any]) -> float:
        return self.surfaces[candidate](params)

    def observe(self, candidate: str, params: Mapping[str, Any], rng: np.random.Generator) -> float:
        p = self.true(candidate, params)
        if self.problems:
            return float(rng.binomial(self.problems, p)) / self.problems
        return p + rng.normal(0.0, self.noise)

    def unit_values(self, candidate: str, u: np.ndarray) -> np.ndarray:
        """True scores of unit points ``u`` (n, 5) -> (n,)."""
        return self.surfaces[candidate].values(u)

    def optimum_unit(self, candidate: str) -> np.ndarray:
        """The unit coordinates of ``candidate``'s optimum."""
        return unit_coordinates(self.surfaces[candidate].optimum)

    def peak_of(self, candidate: str) -> float:
        """``candidate``'s tuned optimum (its best true score)."""
        return self.surfaces[candidate].peak

    @property
    def best_candidate(self) -> str:
        return max(self.candidates, key=lambda c: self.surfaces[c].peak)

    @property
    def best_score(self) -> float:
        return self.surfaces[self.best_candidate].peak


def _p(t: float, top_p: float = 1.0, top_k: int = 100, rp: float = 1.0, m: int = 128) -> dict:
    """A decoding-params dict; ``t == 0`` gives the greedy form (no top_p / top_k)."""
    if t == 0:
        return {"temperature": 0.0, "repetition_penalty": rp, "max_new_tokens": m}
    return {"temperature": t, "top_p": top_p, "top_k": top_k, "repetition_penalty": rp,
            "max_new_tokens": m}  # fmt: skip


def _centred(mean: float, modes: tuple[Mode, ...]) -> Surface:
    """A surface whose random-search mean is ``mean``: the base absorbs the bumps' mean."""
    bumps = Surface(0.0, modes).mean()
    return Surface(mean - bumps, modes)


def _w(main: float, rest: float) -> tuple[float, ...]:
    """Bump widths: ``main`` for temperature and top_p, ``rest`` for top_k, repetition
    penalty and max_new_tokens (decoding quality hinges mostly on the first two)."""
    return (main, main, rest, rest, rest)


def _families() -> dict[str, SyntheticFamily]:
    broad = _w(0.3, 0.8)
    smooth = {
        "a": Surface(0.2, (Mode(_p(1.0, 0.9, 40, 1.05, 128), broad, 0.50),)),
        "b": Surface(0.2, (Mode(_p(0.6, 0.95, 20, 1.10, 200), broad, 0.60),)),
        "c": Surface(0.3, (Mode(_p(0.3, 0.8, 60, 1.0, 96), broad, 0.35),)),
    }
    local, peaky = _w(0.3, 0.7), _w(0.12, 0.4)
    multimodal = {
        "a": Surface(0.15, (Mode(_p(0.4, 0.9, 50, 1.05, 128), local, 0.45),
                            Mode(_p(1.3, 0.6, 10, 1.2, 200), peaky, 0.55)), ripple=0.08),
        "b": Surface(0.15, (Mode(_p(1.1, 0.95, 60, 1.0, 160), local, 0.50),
                            Mode(_p(0.2, 0.7, 8, 1.2, 80), peaky, 0.70)), ripple=0.08),
        "c": Surface(0.15, (Mode(_p(0.8, 0.8, 30, 1.1, 100), local, 0.55),
                            Mode(_p(1.4, 0.55, 3, 1.0, 64), peaky, 0.45)), ripple=0.08),
    }  # fmt: skip
    noisy = {
        "a": Surface(0.25, (Mode(_p(0.9, 0.85, 30, 1.05, 150), broad, 0.47),)),
        "b": Surface(0.25, (Mode(_p(0.5, 0.95, 50, 1.15, 100), broad, 0.55),)),
        "c": Surface(0.30, (Mode(_p(1.2, 0.7, 15, 1.0, 220), broad, 0.38),)),
    }
    # b's peak is high but narrow in temperature and top_p (with a mild broad shoulder
    # leading to it); a is broad and better almost everywhere else.
    narrow = {
        "a": Surface(0.25, (Mode(_p(0.8, 0.9, 40, 1.05, 128), broad, 0.45),)),
        "b": Surface(0.25, (Mode(_p(0.35, 0.75, 40, 1.1, 128), _w(0.06, 0.5), 0.65),
                            Mode(_p(0.35, 0.75, 40, 1.1, 128), broad, 0.20))),
        "c": Surface(0.30, (Mode(_p(1.2, 0.6, 10, 1.0, 200), broad, 0.30),)),
    }  # fmt: skip
    region = _w(0.25, 0.6)
    regions = {  # greedy-best, hot-best (the best) and mid-temperature-best candidates
        "a": Surface(0.25, (Mode(_p(0.0, rp=1.15, m=256), region, 0.55),)),
        "b": Surface(0.25, (Mode(_p(1.3, 0.98, 80, 1.0, 160), region, 0.60),)),
        "c": Surface(0.25, (Mode(_p(0.7, 0.6, 5, 1.25, 64), region, 0.50),)),
    }
    equal_mean = {  # the same mean 0.5 over the space; peaks about 0.57, 0.89, 0.76
        "a": _centred(0.5, (Mode(_p(0.7, 0.9, 40, 1.1, 128), 0.8, 0.2),)),
        "b": _centred(0.5, (Mode(_p(0.4, 0.85, 25, 1.05, 180), _w(0.12, 0.5), 0.4),)),
        "c": _centred(0.5, (Mode(_p(1.0, 0.7, 70, 1.2, 90), _w(0.3, 0.6), 0.3),)),
    }

    # pass@1 of five code models on HumanEval's 164 problems: every model is best at or
    # near greedy decoding and loses pass rate as the temperature rises (truncation matters
    # little that cold, so top_p / top_k widths are broad); a strong repetition penalty
    # hurts code, and a token limit below a model's usual solution length cuts solutions
    # off. The strongest model is the most confident one: its peak is the sharpest in
    # temperature (sd 0.15 of the range, 0.22 in temperature), weaker ones degrade slower.
    def pass1(peak: float, t_width: float, rp: float, m: int) -> Surface:
        return Surface(0.04, (Mode(_p(0.0, rp=rp, m=m), (t_width, 0.6, 1.0, 0.35, 0.5),
                                   peak - 0.04),))  # fmt: skip

    pass_at_1 = {
        "coder-7b": pass1(0.62, 0.15, 1.0, 256),
        "coder-3b": pass1(0.56, 0.25, 1.05, 200),
        "chat-7b": pass1(0.50, 0.30, 1.10, 160),
        "base-7b": pass1(0.44, 0.35, 1.0, 128),
        "chat-3b": pass1(0.35, 0.45, 1.05, 256),
    }

    # Eight models with realistic bests at greedy to mid temperatures and near-full nucleus;
    # the best one ("explorer") peaks only hot and truncated (temperature 1.2, top_p 0.6),
    # where every other model is at its floor: no point scores well for both, so only the
    # explorer's own optimizer finds its region. Observations: pass rates on 20 problems.
    def usual(peak: float, t: float, top_p: float, top_k: int, rp: float, m: int) -> Surface:
        return Surface(0.08, (Mode(_p(t, top_p, top_k, rp, m), (0.3, 0.3, 0.7, 0.4, 0.6),
                                   peak - 0.08),))  # fmt: skip

    hidden = {
        "m1": usual(0.66, 0.0, 1.0, 100, 1.05, 256),
        "m2": usual(0.62, 0.2, 0.95, 50, 1.0, 200),
        "m3": usual(0.58, 0.4, 0.95, 40, 1.1, 160),
        "m4": usual(0.55, 0.0, 1.0, 100, 1.0, 128),
        "m5": usual(0.50, 0.6, 0.9, 50, 1.05, 256),
        "m6": usual(0.45, 0.3, 1.0, 80, 1.15, 128),
        "m7": usual(0.40, 0.7, 0.9, 30, 1.0, 96),
        "explorer": Surface(0.05, (Mode(_p(1.2, 0.6, 20, 1.05, 200), (0.15, 0.15, 0.5, 0.4, 0.6),
                                        0.70),)),
    }  # fmt: skip
    # Families where the best candidate *can* be found: its winning region fills 5-30% of
    # the space, away from the shared default point (greedy, no penalty), where it is the
    # worst candidate. Flat in what its region does not depend on (width 2.0).
    usual = (0.3, 0.3, 0.7, 0.5, 0.6)
    hot_nucleus = {  # the best peaks at a mid-to-high temperature with a lowered top_p
        "a": Surface(0.20, (Mode(_p(0.0, rp=1.05, m=200), usual, 0.42),)),
        "b": Surface(0.06, (Mode(_p(1.0, 0.7, 40, 1.05, 160), (0.45, 0.5, 2.0, 1.5, 2.0),
                                 0.75),)),
        "c": Surface(0.20, (Mode(_p(0.5, 0.95, 50, 1.0, 128), usual, 0.45),)),
    }  # fmt: skip
    sampling_only = {  # the best is reached only by sampling, at temperatures above 0.5
        "m1": Surface(0.10, (Mode(_p(0.0, rp=1.0, m=256), usual, 0.45),)),
        "m2": Surface(0.10, (Mode(_p(0.3, 0.95, 60, 1.05, 200), usual, 0.47),)),
        "m3": Surface(0.10, (Mode(_p(0.1, 1.0, 80, 1.1, 160), usual, 0.42),)),
        "sampler": Surface(0.02, (Mode(_p(1.2, 0.9, 60, 1.05, 200), (0.6, 1.0, 2.0, 2.0, 2.0),
                                       0.70),)),
    }  # fmt: skip
    penalty = {  # the best needs a repetition penalty of 1.2 or more
        "p1": Surface(0.15, (Mode(_p(0.0, rp=1.0, m=200), usual, 0.45),)),
        "p2": Surface(0.15, (Mode(_p(0.3, 0.9, 40, 1.0, 160), usual, 0.43),)),
        "p3": Surface(0.15, (Mode(_p(0.6, 0.95, 60, 1.02, 256), usual, 0.40),)),
        "p4": Surface(0.15, (Mode(_p(0.2, 0.9, 30, 1.05, 128), usual, 0.38),)),
        "looper": Surface(0.05, (Mode(_p(0.4, 0.9, 50, 1.28, 200), (0.8, 0.8, 2.0, 0.35, 2.0),
                                      0.68),)),
    }  # fmt: skip
    family = SyntheticFamily
    families = [
        family("smooth", "one broad bump each, small noise", smooth, 0.02),
        family("multimodal", "a broad local mode, a narrower global one, ripples", multimodal,
               0.03),
        family("noisy", "broad bumps, close peaks, noise sd 0.15", noisy, 0.15),
        family("narrow", "the best candidate's peak is narrow; another is broad", narrow, 0.02),
        family("regions", "best regions differ: greedy, hot, mid", regions, 0.03),
        family("equal_mean", "equal mean over the space, different peaks", equal_mean, 0.03),
        family("pass_at_1", "5 models, all best near greedy, the best the sharpest; "
               "pass rates on 164 problems", pass_at_1, problems=164),
        family("hidden", "8 models; the best peaks hot and truncated, where the others are "
               "poor; pass rates on 20 problems", hidden, problems=20),
        family("hot_nucleus", "the best peaks at T 1.0, top_p 0.7, and is the worst at the "
               "default point; 12% winning share", hot_nucleus, 0.03),
        family("sampling_only", "4 models; the best only samples well (T > 0.5); 19% "
               "winning share; pass rates on 40 problems", sampling_only, problems=40),
        family("penalty", "5 models; the best needs a repetition penalty >= 1.2; 16% "
               "winning share", penalty, 0.03),
    ]  # fmt: skip
    return {f.name: f for f in families}


FAMILIES: dict[str, SyntheticFamily] = _families()


# -- what makes a family a fair test -------------------------------------------------------

#: A family *qualifies* when its best candidate, tuned, beats the runner-up's tuned optimum
#: by at least this fraction...
QUALIFYING_GAP = 0.05
#: ...and its best candidate's peak region is at least this wide on every parameter.
QUALIFYING_WIDTH = 0.1
_SCAN = 201
#: Random points behind :func:`winning_share` (its standard error is at most 0.0016).
_SHARE_POINTS = 100_000


def peak_region_width(family: Family, candidate: str) -> np.ndarray:
    """Per parameter, the width in unit coordinates of ``candidate``'s peak region.

    Along each parameter's unit axis through the optimum ``u*`` (the others held at
    ``u*``), the surface is scanned at 201 evenly spaced points of [0, 1], ``f_j``, with
    minimum ``m_j``. The peak region is the interval of scan points containing (the point
    nearest) ``u*_j`` on which ``f_j >= m_j + exp(-1/2) * (f(u*) - m_j)``: for a Gaussian
    bump on a flat base that is ``u*_j`` +- one standard deviation, clipped to [0, 1] (a
    greedy optimum, at temperature 0, has only the upper half). Scans run in unit
    coordinates, where the surfaces are defined (a greedy point's top_p and top_k sit at
    their untruncated ends; scanning them is scanning that imputation).
    """
    centre = family.optimum_unit(candidate)
    grid = np.linspace(0.0, 1.0, _SCAN)
    top = float(family.unit_values(candidate, centre[None])[0])
    widths = []
    for j in range(len(PARAMS)):
        points = np.repeat(centre[None], _SCAN, axis=0)
        points[:, j] = grid
        f = family.unit_values(candidate, points)
        inside = f >= f.min() + math.exp(-0.5) * (top - f.min()) - 1e-12
        k = int(np.argmin(abs(grid - centre[j])))
        lo, hi = k, k
        while lo > 0 and inside[lo - 1]:
            lo -= 1
        while hi < _SCAN - 1 and inside[hi + 1]:
            hi += 1
        widths.append((hi - lo) / (_SCAN - 1))
    return np.array(widths)


def winning_share(family: Family) -> float:
    """The share of the decoding space where the best candidate's true score is at least
    the runner-up's tuned optimum, under random search's distribution
    (:func:`random_unit_points`, Monte Carlo with a fixed seed).

    It is the chance that one random sample of the best candidate shows it beats every
    other candidate however well tuned: how hard the best is to *find*, where ``width``
    says how hard it is to *hit* along one axis. A peak 0.2 wide on each of five axes
    fills about 0.2**5 = 0.03% of the space.
    """
    u = random_unit_points(_SHARE_POINTS, np.random.default_rng(0))
    return float(np.mean(family.unit_values(family.best_candidate, u) >= _runner_up(family)))


def _runner_up(family: Family) -> float:
    """The tuned optimum of the best candidate's strongest rival."""
    return max(family.peak_of(c) for c in family.candidates if c != family.best_candidate)


@dataclass(frozen=True)
class Qualification:
    """Whether a family tests choosing a candidate fairly: a clear best (``gap``, its tuned
    optimum over the runner-up's, minus 1) that a tuner can find (``width``, the narrowest
    of its peak region's widths, :func:`peak_region_width`).

    ``share`` (:func:`winning_share`) is reported beside them and does not decide: it is
    the volume in which the best can be seen to be best.
    """

    gap: float
    width: float
    share: float

    @property
    def qualifies(self) -> bool:
        return self.gap >= QUALIFYING_GAP and self.width >= QUALIFYING_WIDTH


def qualification(family: Family) -> Qualification:
    best = family.best_candidate
    runner_up = _runner_up(family)
    gap = family.peak_of(best) / runner_up - 1 if runner_up > 0 else math.inf
    width = float(peak_region_width(family, best).min())
    return Qualification(gap, width, winning_share(family))
