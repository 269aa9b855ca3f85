"""Synthetic objective families with known optima, over the engine's default decoding space.

A family is a few candidates, each with a deterministic *true* score ``f(params)`` in
[0, 1], plus Gaussian observation noise of a stated size. The true score of a strategy's
choice is ``f`` without noise. Every candidate's surface is

    f(u) = clip(base + max_m height_m * g_m(u) + ripple(u), 0, 1)

over unit coordinates ``u`` of the parameters (:func:`unit_coordinates`), where ``g_m`` is
a Gaussian bump of value 1 at the mode's centre and ``ripple`` is ``<= 0`` and exactly 0 at
the highest mode's centre. So a candidate's optimum is, by construction, the centre of its
highest mode with value ``base + height`` (the ``peak`` stated in :class:`Surface`), which
``tests/test_benchmark_strategies.py`` checks against random and perturbed points.

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
#: Which of ``PARAMS`` are searched on a log scale (their unit coordinate is log-linear).
_LOG = tuple(SPACE.ranges[name].log for name in PARAMS)


def _scale(name: str, value: float) -> float:
    r = SPACE.ranges[name]
    if r.log:
        return (math.log(value) - math.log(r.low)) / (math.log(r.high) - math.log(r.low))
    return (value - r.low) / (r.high - r.low)


def unit_coordinates(params: Mapping[str, Any]) -> np.ndarray:
    """The 5 parameters of ``params`` mapped to [0, 1] each (log scale where searched so).

    Greedy params (temperature 0, no top_p / top_k) get top_p = 1 and top_k = its maximum.
    """
    greedy = float(params["temperature"]) == 0
    values = {
        **params,
        "top_p": 1.0 if greedy else params["top_p"],
        "top_k": SPACE.ranges["top_k"].high if greedy else params["top_k"],
    }
    return np.array([_scale(name, float(values[name])) for name in PARAMS])


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

    @property
    def best_candidate(self) -> str: ...

    @property
    def best_score(self) -> float: ...


@dataclass(frozen=True)
class SyntheticFamily:
    """A synthetic :class:`Family`: named candidate surfaces and Gaussian observation
    noise of standard deviation ``noise``."""

    name: str
    description: str
    surfaces: Mapping[str, Surface]
    noise: float
    candidates: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", tuple(self.surfaces))

    def true(self, candidate: str, params: Mapping[str, Any]) -> float:
        return self.surfaces[candidate](params)

    def observe(self, candidate: str, params: Mapping[str, Any], rng: np.random.Generator) -> float:
        return self.true(candidate, params) + rng.normal(0.0, self.noise)

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
    family = SyntheticFamily
    families = [
        family("smooth", "one broad bump each, small noise", smooth, 0.02),
        family("multimodal", "a broad local mode, a narrower global one, ripples", multimodal,
               0.03),
        family("noisy", "broad bumps, close peaks, noise sd 0.15", noisy, 0.15),
        family("narrow", "the best candidate's peak is narrow; another is broad", narrow, 0.02),
        family("regions", "best regions differ: greedy, hot, mid", regions, 0.03),
        family("equal_mean", "equal mean over the space, different peaks", equal_mean, 0.03),
    ]  # fmt: skip
    return {f.name: f for f in families}


FAMILIES: dict[str, SyntheticFamily] = _families()
