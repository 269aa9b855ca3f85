"""A run's budget: a number of samples, of generated tokens, or of minutes.

>>> Budget.parse("20k tokens")
Budget(amount=20000, unit='tokens')
>>> str(Budget.parse("1.5h"))
'90 minutes'

Every sample costs 1 of a samples budget (a sample stopped early, its fidelity: the share
of the problems it scored); of a tokens or minutes budget it costs its generated tokens
or its measured seconds. The stages stop once enough is spent (see
:func:`engine.selection.selection_settled` and :func:`engine.selection.budget_spent`). What has
been spent is always recomputed from the committed samples (:meth:`Budget.spent`), so a
resumed run continues where it stopped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError
from engine.records import BUDGET_STAGES

if TYPE_CHECKING:
    from engine.records import Sample

#: The units a budget can be given in.
UNITS = ("samples", "tokens", "minutes")

#: The largest amount of any unit: far beyond any real run, and small enough to be exact
#: as a float and to fit SQLite's 64-bit integers (``runs.budget``).
MAX_AMOUNT = 10**15

#: Unit words :meth:`Budget.parse` understands, each with its unit and scale.
_ALIASES: dict[str, tuple[str, float]] = {
    **dict.fromkeys(("", "sample", "samples"), ("samples", 1.0)),
    **dict.fromkeys(("tok", "toks", "token", "tokens"), ("tokens", 1.0)),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), ("minutes", 1.0)),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), ("minutes", 60.0)),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), ("minutes", 1 / 60)),
}
_FORM = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<k>k)?[\s_-]*(?P<unit>[a-z]*)")
_FORMS = (
    "give a positive amount with an optional unit: 9 or '9 samples', '20000 tokens' "
    "(also 20k tokens, 20000tok), '30 minutes' (also 30m, 30 min, 1.5h, 90s)"
)


@dataclass(frozen=True)
class Budget:
    """How much a run may spend over stages 1 and 3 (the held-out score is extra).

    ``amount`` is in ``unit``: a whole number of ``"samples"`` or generated ``"tokens"``,
    or a number of ``"minutes"`` of evaluation time (the samples' measured seconds).
    """

    amount: float
    unit: str = "samples"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            choices = ", ".join(UNITS)
            raise ConfigError(f"unknown budget unit {self.unit!r}; choose one of {choices}")
        amount = self.amount
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise ConfigError(f"budget amount must be a number, got {amount!r}; {_FORMS}")
        # math.isfinite would overflow on an int too large for a float: ints are finite.
        if (isinstance(amount, float) and not math.isfinite(amount)) or amount <= 0:
            raise ConfigError(f"budget must be positive, got {amount!r} {self.unit}; {_FORMS}")
        if amount > MAX_AMOUNT:
            raise ConfigError(f"budget is too large: at most {MAX_AMOUNT:.0e} {self.unit}")
        if self.unit == "minutes":
            object.__setattr__(self, "amount", float(amount))
            return
        if amount != int(amount):
            raise ConfigError(
                f"a budget of {self.unit} must be a whole number, got {amount!r}; {_FORMS}"
            )
        object.__setattr__(self, "amount", int(amount))

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def parse(cls, value: str | int | float | Budget) -> Budget:
        """A budget from ``9`` (samples), ``"9 samples"``, ``"20000 tokens"``,
        ``"20k tokens"``, ``"20000tok"``, ``"30m"``, ``"30 min"``, ``"1.5h"`` or ``"90s"``
        (hours and seconds become minutes); a :class:`Budget` is returned as is.

        Raises :class:`ConfigError` for anything else (empty, zero, negative, a fraction
        of a sample or token, an unknown unit, a bool).
        """
        if isinstance(value, Budget):
            return value
        if isinstance(value, bool):
            raise ConfigError(f"budget must be an amount, got {value!r}; {_FORMS}")
        if isinstance(value, (int, float)):
            return cls(value, "samples")
        if not isinstance(value, str):
            raise ConfigError(f"budget must be a number or a string, got {value!r}; {_FORMS}")
        text = value.strip().lower()
        if not text:
            raise ConfigError(f"budget is empty; {_FORMS}")
        if text.startswith("-"):
            raise ConfigError(f"budget must be positive, got {value.strip()!r}; {_FORMS}")
        match = _FORM.fullmatch(text)
        if match is None or match["unit"] not in _ALIASES:
            raise ConfigError(f"budget {value.strip()!r} is not understood; {_FORMS}")
        unit, scale = _ALIASES[match["unit"]]
        number = float(match["number"]) * (1000 if match["k"] else 1)
        if number > MAX_AMOUNT:  # a long run of digits reads as inf
            raise ConfigError(f"budget {value.strip()!r} is too large: at most {MAX_AMOUNT:.0e}")
        if unit != "minutes":
            if number != int(number):
                raise ConfigError(
                    f"budget {value.strip()!r} is not a whole number of {unit}; {_FORMS}"
                )
            return cls(int(number), unit)
        return cls(number * scale, unit)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        """The inverse of :meth:`to_dict`."""
        try:
            return cls(data["amount"], data.get("unit", "samples"))
        except (KeyError, TypeError, AttributeError):
            raise ConfigError(f"a stored budget must be {{amount, unit}}, got {data!r}") from None

    def format_over(self, used: float) -> str:
        """Why ``used`` is over a samples budget by a fraction, as in "9.3/9 samples (0.3
        over: ...)"; empty where it is not.

        A sample stopped early (multi-fidelity) costs only the share of problems it scored,
        so what is spent need not be whole; and the run never cuts a sample short to fit
        the budget, so the one that crosses it counts all it cost. Read without this,
        "9.3/9" looks like a run that overran its budget by mistake.
        """
        over = used - self.amount
        if self.unit != "samples" or over <= 0 or float(used).is_integer():
            return ""
        # To a tenth, as format_used shows a fraction of a sample: "9.2/9" is 0.2 over.
        amount = f"{over:.1f}" if over >= 0.05 else "less than 0.1"
        return (
            f"{amount} over: samples stopped early cost the share of problems they scored, "
            "and no sample is cut short to fit the budget"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"amount": self.amount, "unit": self.unit}

    # -- spending -----------------------------------------------------------------------------

    def cost(self, sample: Sample) -> float:
        """What ``sample`` costs: its fidelity in samples (1 for a whole sample), its
        generated tokens, or its minutes."""
        if self.unit == "samples":
            return float(sample.fidelity)
        if self.unit == "tokens":
            return float(sample.generated_tokens)
        return float(sample.seconds) / 60

    def spent(self, samples: Iterable[Sample]) -> int | float:
        """The total cost of ``samples``, held-out samples excluded (they are extra).

        Whole numbers for tokens, and for samples unless some stopped early; minutes as a
        float.
        """
        counted = [s for s in samples if s.stage in BUDGET_STAGES]
        if self.unit == "samples":
            total = round(sum(self.cost(s) for s in counted), 9) + 0.0
            return int(total) if total.is_integer() else total
        if self.unit == "tokens":
            return sum(int(s.generated_tokens) for s in counted)
        return sum(self.cost(s) for s in counted)

    # -- display ------------------------------------------------------------------------------

    def format_used(self, used: float) -> str:
        """``"5/9 samples"``, ``"1200/20000 tokens"``, ``"3.2/30 minutes"``."""
        amount = format_amount(self.amount, self.unit)
        return f"{format_amount(used, self.unit)}/{amount} {self.unit}"

    def __str__(self) -> str:
        name = self.unit[:-1] if self.amount == 1 else self.unit
        return f"{format_amount(self.amount, self.unit)} {name}"


def format_amount(value: float, unit: str) -> str:
    """An amount of ``unit`` for people: whole tokens, samples and minutes to 0.1 (a
    share of a sample is one stopped early)."""
    if unit == "samples" and not float(value).is_integer():
        return f"{value:.1f}"
    if unit == "minutes":
        if 0 < abs(value) < 1:
            return f"{value:.2g}"
        text = f"{value:.1f}"
        return text[:-2] if text.endswith(".0") else text
    return str(int(round(value)))
