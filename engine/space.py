"""The decoding-parameter space shared by every candidate.

A point of the space is a plain dict of decoding parameters::

    {"temperature": 0.0, "repetition_penalty": 1.05, "max_new_tokens": 256}   # greedy
    {"temperature": 0.7, "top_p": 0.95, "top_k": 40,
     "repetition_penalty": 1.0, "max_new_tokens": 256}                       # sampling

``temperature == 0`` means greedy decoding; ``top_p`` and ``top_k`` only exist when
sampling, because they mean nothing under greedy decoding. Optuna sees this as a
conditional space (a ``sampling`` switch, then the sampling parameters under it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tomllib

from engine.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

#: Sampling temperatures below this are indistinguishable from greedy decoding and
#: make some kernels produce inf/nan, so the sampled range starts here.
MIN_SAMPLING_TEMPERATURE = 0.05

SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
#: Seeds the points that stand for the unexplored space (:meth:`SearchSpace.reference_unit`).
REFERENCE_SEED = 20261207


@dataclass(frozen=True)
class Range:
    """An inclusive range ``[low, high]``; ``low == high`` fixes the parameter."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    def distribution(self) -> BaseDistribution:
        # Optuna is imported where it is used: a viewer reads a run's space without it.
        from optuna.distributions import FloatDistribution, IntDistribution

        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)


# name -> (default range, smallest allowed low, largest allowed high, integer)
_BOUNDS: dict[str, tuple[Range, float, float]] = {
    "temperature": (Range(0.0, 1.5), 0.0, 5.0),
    "top_p": (Range(0.5, 1.0), 1e-3, 1.0),
    "top_k": (Range(1, 100, log=True, integer=True), 1, 1000),
    "repetition_penalty": (Range(1.0, 1.3), 0.5, 3.0),
    "max_new_tokens": (Range(64, 256, log=True, integer=True), 1, 32768),
}

PARAM_NAMES = tuple(_BOUNDS)


def _validated(name: str, value: Any) -> Range:
    """Turn a user value (number, [low, high] or table) into a checked :class:`Range`."""
    default, lo_bound, hi_bound = _BOUNDS[name]
    log = default.log
    if isinstance(value, Range):
        low, high, log = value.low, value.high, value.log
    elif isinstance(value, Mapping):
        unknown = set(value) - {"low", "high", "log"}
        if unknown or not {"low", "high"} <= set(value):
            raise ConfigError(f"{name}: expected a table with 'low', 'high' and optional 'log'")
        low, high, log = value["low"], value["high"], value.get("log", log)
        if not isinstance(log, bool):
            raise ConfigError(f"{name}: 'log' must be true or false, got {log!r}")
    elif isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"{name}: expected [low, high], got {list(value)!r}")
        low, high = value
    else:
        low = high = value
    for bound in (low, high):
        # math.isnan of an int too large for a float overflows: only floats can be NaN.
        if (
            isinstance(bound, bool)
            or not isinstance(bound, (int, float))
            or (isinstance(bound, float) and math.isnan(bound))
        ):
            raise ConfigError(f"{name}: {bound!r} is not a number")
        if isinstance(bound, int) and abs(bound) > 2**63:  # too long to print (4300 digits)
            raise ConfigError(f"{name}: a bound must lie within [{lo_bound}, {hi_bound}]")
    if low > high:
        raise ConfigError(f"{name}: low {low} is greater than high {high}")
    if low < lo_bound or high > hi_bound:
        raise ConfigError(f"{name}: range [{low}, {high}] must lie within [{lo_bound}, {hi_bound}]")
    if default.integer and (low != int(low) or high != int(high)):
        raise ConfigError(f"{name}: must be whole numbers, got [{low}, {high}]")
    if name == "temperature" and 0 < low < MIN_SAMPLING_TEMPERATURE:
        raise ConfigError(
            f"temperature: low {low} is too close to 0; use 0 for greedy or at least "
            f"{MIN_SAMPLING_TEMPERATURE} for sampling"
        )
    integer = default.integer
    cast = int if integer else float
    return Range(cast(low), cast(high), log=log and low > 0, integer=integer)


class SearchSpace:
    """Validated ranges for the decoding parameters.

    Args:
        ranges: per-parameter overrides of the defaults. A value is a number (fixed), a
            ``[low, high]`` pair, or ``{"low": .., "high": .., "log": ..}``. A temperature
            range that includes 0 lets the optimizer choose greedy decoding; its sampled
            part then starts at :data:`MIN_SAMPLING_TEMPERATURE`.

    Raises:
        ConfigError: an unknown parameter or an impossible range.
    """

    def __init__(self, ranges: Mapping[str, Any] | None = None) -> None:
        if ranges is not None and not isinstance(ranges, Mapping):
            raise ConfigError(
                f"a search space must map parameter names to ranges, got {type(ranges).__name__}"
            )
        ranges = dict(ranges or {})
        unknown = sorted(set(ranges) - set(PARAM_NAMES), key=repr)  # keys of any type
        if unknown:
            raise ConfigError(
                f"unknown decoding parameter {unknown[0]!r}; known: {', '.join(PARAM_NAMES)}"
            )
        self.ranges: dict[str, Range] = {
            name: _validated(name, ranges.get(name, _BOUNDS[name][0])) for name in PARAM_NAMES
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.ranges == other.ranges

    __hash__ = None  # type: ignore[assignment]  # mutable ranges: equal spaces may change

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_toml(cls, path: str | Path) -> SearchSpace:
        """Read ranges from the ``[space]`` table of a TOML file (or its top level)."""
        path = Path(path)
        try:
            # A FIFO or a device (/dev/zero) would block or never end: only plain files.
            if path.exists() and not path.is_dir() and not path.is_file():
                raise ConfigError(f"space file {path} is not a regular file")
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"space file {path} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"space file {path} is a folder; give a .toml file") from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"space file {path} is not valid TOML: {error}") from None
        except OSError as error:
            raise ConfigError(f"space file {path} cannot be read: {error.strerror}") from None
        except ValueError as error:  # a NUL byte in the path
            raise ConfigError(f"space file {str(path)!r}: not a usable path ({error})") from None
        try:
            data = tomllib.loads(text)
        except ValueError as error:  # TOMLDecodeError, or an integer of over 4300 digits
            raise ConfigError(f"space file {path} is not valid TOML: {error}") from None
        except RecursionError:
            raise ConfigError(f"space file {path} is not valid TOML: nested too deeply") from None
        table = data.get("space", data)
        if not isinstance(table, dict):
            raise ConfigError(f"space file {path}: [space] must be a table")
        try:
            return cls(table)
        except ConfigError as error:  # say which file holds the bad range
            raise ConfigError(f"space file {path}: {error}") from None

    @classmethod
    def from_overrides(cls, overrides: list[str], base: SearchSpace | None = None) -> SearchSpace:
        """Apply ``NAME=LOW:HIGH`` or ``NAME=VALUE`` overrides (command-line flags)."""
        ranges: dict[str, Any] = dict(base.ranges) if base else {}
        for item in overrides:
            name, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--param {item!r}: expected NAME=LOW:HIGH or NAME=VALUE")
            try:
                parts = [float(part) for part in value.split(":")]
            except ValueError:
                raise ConfigError(f"--param {item!r}: {value!r} is not a number") from None
            ranges[name.strip()] = parts if len(parts) > 1 else parts[0]
        return cls(ranges)

    def varied(self) -> list[str]:
        """The parameters the optimizer varies; ``top_p`` and ``top_k`` only where it may
        sample (they mean nothing under greedy decoding)."""
        greedy_only = self.ranges["temperature"].high == 0
        return [
            name
            for name, r in self.ranges.items()
            if not r.fixed and not (greedy_only and name in SAMPLING_PARAMS)
        ]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """A JSON-able form; ``SearchSpace(space.to_dict())`` rebuilds it."""
        return {n: {"low": r.low, "high": r.high, "log": r.log} for n, r in self.ranges.items()}

    # -- the optimizer's view -------------------------------------------------------------

    @property
    def allows_greedy(self) -> bool:
        return self.ranges["temperature"].low == 0

    @property
    def allows_sampling(self) -> bool:
        return self.ranges["temperature"].high > 0

    def _sampled_temperature(self) -> Range:
        r = self.ranges["temperature"]
        return replace(r, low=max(r.low, MIN_SAMPLING_TEMPERATURE))

    def _searched(self, sampling: bool) -> dict[str, Range]:
        """The non-fixed ranges the optimizer searches in one branch of the space."""
        ranges = dict(self.ranges)
        if sampling:
            ranges["temperature"] = self._sampled_temperature()
        return {
            name: r
            for name, r in ranges.items()
            if (sampling or name not in SAMPLING_PARAMS) and not r.fixed
        }

    def distributions(self, sampling: bool) -> dict[str, BaseDistribution]:
        """Optuna distributions of one branch, including the ``sampling`` switch."""
        from optuna.distributions import CategoricalDistribution

        dists: dict[str, BaseDistribution] = {}
        if self.allows_greedy and self.allows_sampling:
            dists["sampling"] = CategoricalDistribution([False, True])
        dists.update({name: r.distribution() for name, r in self._searched(sampling).items()})
        return dists

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Ask ``trial`` for a point; returns decoding parameters (see module docstring)."""
        if self.allows_greedy and self.allows_sampling:
            sampling = trial.suggest_categorical("sampling", [False, True])
        else:
            sampling = self.allows_sampling
        values = {}
        for name, r in self._searched(sampling).items():
            if r.integer:
                values[name] = trial.suggest_int(name, int(r.low), int(r.high), log=r.log)
            else:
                values[name] = trial.suggest_float(name, r.low, r.high, log=r.log)
        return self._decode(values, sampling)

    def _decode(self, values: Mapping[str, Any], sampling: bool) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, r in self.ranges.items():
            if name in SAMPLING_PARAMS and not sampling:
                continue
            if name == "temperature" and sampling:
                r = self._sampled_temperature()
            params[name] = values.get(name, r.low)
        if not sampling:
            params["temperature"] = 0.0
        return {name: params[name] for name in PARAM_NAMES if name in params}

    def trial_values(self, params: Mapping[str, Any]) -> tuple[dict, dict[str, BaseDistribution]]:
        """The inverse of :meth:`suggest`: Optuna params and distributions for ``params``.

        Used to replay stored samples into a fresh study (``study.add_trial``).
        """
        sampling = float(params["temperature"]) > 0
        dists = self.distributions(sampling)
        values = {name: params[name] for name in dists if name != "sampling"}
        if "sampling" in dists:
            values["sampling"] = sampling
        return values, dists

    def default_params(self) -> dict[str, Any]:
        """A neutral first point every candidate is evaluated at, so all candidates share
        one point: greedy where allowed, no repetition penalty, the largest token budget
        (each clamped into its range)."""
        typical = {"temperature": 0.7, "top_p": 0.95, "top_k": 50, "repetition_penalty": 1.0}
        sampling = not self.allows_greedy
        values = {}
        for name, r in self._searched(sampling).items():
            values[name] = min(max(typical.get(name, r.high), r.low), r.high)
        return self._decode(values, sampling)

    # -- what the rest of the engine needs ---------------------------------------------------

    #: What each entry of :meth:`covariates` is, in order.
    COVARIATE_NAMES = (
        "temperature", "top_p", "log top_k", "repetition_penalty", "log max_new_tokens",
    )  # fmt: skip

    def covariates(self, params: Mapping[str, Any]) -> list[float]:
        """A fixed-length numeric vector of ``params`` for the propensity model
        (:attr:`COVARIATE_NAMES` names its entries).

        Greedy decoding is imputed as temperature 0 with no truncation (top_p 1, top_k at
        the top of its range); counts enter on a log scale.
        """
        values = self._with_greedy_filled(params)
        return [
            float(values["temperature"]),
            float(values["top_p"]),
            math.log(float(values["top_k"])),
            float(values["repetition_penalty"]),
            math.log(float(values["max_new_tokens"])),
        ]

    def _with_greedy_filled(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with greedy decoding's missing top_p and top_k filled in as no
        truncation (top_p 1, top_k at the top of its range): greedy is the cold,
        untruncated corner of the sampling space."""
        if float(params["temperature"]) > 0:
            return dict(params)
        return {**params, "top_p": 1.0, "top_k": self.ranges["top_k"].high}

    def from_unit(self, u: Sequence[float]) -> dict[str, Any]:
        """The point of the space at unit coordinates ``u`` (the inverse of :meth:`unit`).

        A temperature below half the lowest sampling temperature is greedy decoding
        (where the space allows it); a sampled one is at least that lowest.

        >>> point = SearchSpace().from_unit([0.5, 0.5, 0.5, 0.0, 0.5])
        >>> point["temperature"], point["top_p"], point["top_k"], point["max_new_tokens"]
        (0.75, 0.75, 10, 128)
        """
        searched = [name for name, r in self.ranges.items() if not r.fixed]
        values = {name: r.low for name, r in self.ranges.items() if r.fixed}
        values.update({name: _unit_value(self.ranges[name], float(x))
                       for name, x in zip(searched, u, strict=True)})  # fmt: skip
        lowest = self._sampled_temperature().low
        sampling = self.allows_sampling and not (
            self.allows_greedy and values["temperature"] < lowest / 2
        )
        if sampling:
            values["temperature"] = max(values["temperature"], lowest)
        return self._decode(values, sampling)

    def random_unit(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random points in unit coordinates (n, d), half of them greedy where the
        space has both branches, as an optimizer's random start-up samples them."""
        points = rng.random((n, len(self.unit(self.default_params()))))
        if self.allows_greedy and self.allows_sampling:
            greedy = self.unit(
                {
                    "temperature": 0.0,
                    "repetition_penalty": 1.0,
                    "max_new_tokens": self.ranges["max_new_tokens"].high,
                }
            )
            searched = [name for name, r in self.ranges.items() if not r.fixed]
            cold = [i for i, name in enumerate(searched) if name in SAMPLING_PARAMS]
            half = rng.random(n) < 0.5
            points[np.ix_(half, cold)] = np.array(greedy)[cold]
        return points

    def reference_unit(self, n: int = 64) -> np.ndarray:
        """``n`` points spread evenly over the space, in unit coordinates (n, d): a
        scrambled Sobol sequence with a fixed seed (so every run, and its resume, gets the
        same points), each moved onto a configuration the space can take
        (:meth:`from_unit`, then :meth:`unit`). They stand for the configurations nobody
        has evaluated yet (:func:`engine.selection.rank`). A power of two for ``n``
        keeps the set balanced.

        >>> SearchSpace().reference_unit(8).shape
        (8, 5)
        """
        from scipy.stats import qmc  # scipy.stats takes a third of a second to import

        d = len(self.unit(self.default_params()))
        if d == 0:
            return np.empty((n, 0))
        sobol = qmc.Sobol(d, scramble=True, seed=REFERENCE_SEED)
        points = sobol.random_base2(math.ceil(math.log2(n)))[:n]
        return np.array([self.unit(self.from_unit(u)) for u in points])

    def unit(self, params: Mapping[str, Any]) -> list[float]:
        """``params`` as coordinates in [0, 1], one per parameter that is not fixed, for
        the surrogate model (:mod:`engine.selection._surrogate`).

        Each parameter is scaled by its range, on a log scale where it is searched so.
        Greedy decoding sits at the cold, untruncated corner (temperature 0, top_p 1,
        top_k at the top of its range), as in :meth:`covariates`.

        >>> SearchSpace().unit({"temperature": 0.75, "top_p": 0.75, "top_k": 10,
        ...                     "repetition_penalty": 1.0, "max_new_tokens": 128})
        [0.5, 0.5, 0.5, 0.0, 0.5]
        """
        values = self._with_greedy_filled(params)
        coordinates = []
        for name, r in self.ranges.items():
            if r.fixed:
                continue
            low, high, value = float(r.low), float(r.high), float(values[name])
            if r.log:
                low, high, value = math.log(low), math.log(high), math.log(value)
            coordinates.append(min(1.0, max(0.0, (value - low) / (high - low))))
        return coordinates


def _unit_value(r: Range, u: float) -> float:
    """The value at unit coordinate ``u`` of range ``r`` (the inverse of its scaling)."""
    low, high = float(r.low), float(r.high)
    value = (
        math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        if r.log
        else (low + u * (high - low))
    )
    value = min(max(value, low), high)
    return int(round(value)) if r.integer else value


def generation_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    """Map decoding parameters to Hugging Face ``generate`` / ``GenerationConfig`` kwargs."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": int(params["max_new_tokens"]),
        "repetition_penalty": float(params.get("repetition_penalty", 1.0)),
    }
    if float(params["temperature"]) > 0:
        kwargs.update(
            do_sample=True,
            temperature=float(params["temperature"]),
            top_p=float(params.get("top_p", 1.0)),
            top_k=int(params.get("top_k", 0)),
        )
    else:
        # Explicit neutral values: a model's own generation_config may set sampling ones,
        # which transformers would otherwise warn about (and keep) under greedy decoding.
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs
