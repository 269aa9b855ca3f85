"""Every option of a run, declared once.

:class:`RunSettings` is how a run samples, selects and scores: each field carries its
default, its help text, how it reads from text and how it is checked (:class:`Option`).
The command line (``codellmtuner run``), the app's setup form and
:class:`~engine.run.Tuner` are all built from :data:`OPTIONS`, and a run stores
:meth:`RunSettings.to_dict` so that ``resume`` rebuilds the same settings.

What a run is *about* stays outside: the task or objective, the candidates, the
decoding space, the store and the run's name. Their defaults for the command line and
the form are :data:`DEFAULT_TASK` and :data:`DEFAULT_CANDIDATES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from engine.budget import Budget
from engine.errors import ConfigError
from engine.generation import parse_memory
from engine.selection import DEFAULT_DRAWS, DEFAULT_ELIMINATION, FIDELITIES, check_elimination

DEFAULT_TASK = "humaneval"
#: The bundled model three ways: with its chat template, one worked example, raw.
DEFAULT_CANDIDATES = ("smollm2", "smollm2@fewshot-1", "smollm2@raw")
SAMPLERS = ("thompson", "tpe", "gp", "random")
BACKENDS = ("auto", "transformers", "vllm")
#: Seeds go to SQLite (64-bit) and numpy's SeedSequence (non-negative).
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Option:
    """How one run option is read, checked and offered.

    Attributes:
        name: the :class:`RunSettings` field, the :class:`~engine.run.Tuner` keyword and
            the key in a stored run's config.
        default: the value when none is given.
        help: one sentence for ``--help`` and the form's tooltip.
        parse: text (a flag's value, a form field) to a value; raises ``ValueError`` (or
            :class:`ConfigError` with its own message) for text it cannot read.
        check: raises :class:`ConfigError` for a value no run can use.
        flag: the command-line flag, written out in the declaration so that a search for
            ``--eliminate`` finds it; the form names its field after it too.
        short: a one-letter flag, if any.
        label: the form's label.
        main: shown in the form's main grid (else under "more").
        choices: the allowed values, for a closed set.
        metavar: the placeholder of ``--help``.
        none_means: what ``None`` stands for, in words (``"the task's"``); empty where
            ``None`` is not allowed.
    """

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any]
    check: Callable[[Any], None]
    flag: str
    short: str | None
    label: str
    main: bool
    choices: tuple[str, ...]
    metavar: str | None
    none_means: str

    @property
    def optional(self) -> bool:
        """Whether ``None`` is allowed (it means what :attr:`none_means` says)."""
        return bool(self.none_means)

    def text(self, value: Any) -> str:
        """``value`` as the form shows it (empty for ``None``)."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, Budget) and value.unit == "samples":
            return str(value.amount)  # "9", as a user types it
        return str(value)

    def read(self, text: str, *, source: str = "") -> Any:
        """The value of a form field or flag; empty text is ``None`` where that is allowed.
        An unreadable text is named by ``source`` (say, the flag), else by the label."""
        text = text.strip()
        if not text and self.optional:
            return None
        try:
            value = self.parse(text)
        except ValueError:
            name = source or self.label
            raise ConfigError(f"{name}: {text!r} is not {_kind(self.parse)}") from None
        self.check(value)
        return value


def _option(
    default: Any,
    help: str,
    *,
    flag: str,
    parse: Callable[[str], Any] = str,
    check: Callable[[Any], None] | None = None,
    label: str = "",
    main: bool = False,
    choices: tuple[str, ...] = (),
    short: str | None = None,
    metavar: str | None = None,
    none_means: str = "",
) -> Any:
    """A :class:`RunSettings` field carrying its :class:`Option` (named once the class is
    built, from the field)."""
    spec = Option(
        name="", default=default, help=help, parse=parse, check=check or _any, flag=flag,
        short=short, label=label, main=main, choices=choices, metavar=metavar,
        none_means=none_means,
    )  # fmt: skip
    return field(default=default, metadata={"option": spec})


# -- checks --------------------------------------------------------------------------------


def _any(value: Any) -> None:
    pass


def _whole(name: str, low: int, high: int | None = None) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < low
            or (high is not None and value > high)
        ):
            top = "2**63-1" if high == MAX_SEED else high
            bound = f"between {low} and {top}" if high is not None else f">= {low}"
            raise ConfigError(f"{name} must be a whole number {bound}, got {value!r}")

    return check


def _one_of(name: str, choices: tuple[str, ...]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value not in choices:
            raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")

    return check


def _positive(name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not 0 < value < math.inf:
            raise ConfigError(f"{name} must be a positive number, got {value!r}")

    return check


def _fraction(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"stage-1 fraction must be in (0, 1], got {value!r}")


def _memory(value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"device memory must be a size such as 20GiB or auto, got {value!r}")
    parse_memory(value)


def _elimination(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"elimination threshold must be a number, got {value!r}")
    check_elimination(value)


def _boolean(name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be on or off, got {value!r}")

    return check


def _on_off(text: str) -> bool:
    words = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False}
    if text.lower() not in words:
        raise ValueError(text)
    return words[text.lower()]


def _auto_or_int(text: str) -> int | str:
    return "auto" if text.lower() == "auto" else int(text)


def _auto_or(check: Callable[[Any], None]) -> Callable[[Any], None]:
    return lambda value: None if value == "auto" else check(value)


def _optional(check: Callable[[Any], None]) -> Callable[[Any], None]:
    return lambda value: None if value is None else check(value)


def _kind(parse: Callable[[str], Any]) -> str:
    kinds = {int: "a whole number", float: "a number", _on_off: "on or off",
             _auto_or_int: "a whole number or auto"}  # fmt: skip
    return kinds.get(parse, "understood")


# -- the settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    """How a run samples, selects and scores. Every field is checked on construction.

    ``budget`` accepts what :meth:`Budget.parse` does and is kept as a :class:`Budget`;
    ``tune_size`` and ``holdout_size`` of 0 mean the whole split.
    """

    budget: Budget = _option(
        Budget(9), "what stages 1 and 3 may spend: samples (9), generated tokens "
        "('20000 tokens', 20000tok) or minutes of evaluation (30m, 1.5h)",
        parse=Budget.parse, label="budget", main=True, metavar="AMOUNT", flag="--budget",
    )  # fmt: skip
    seed: int = _option(
        0, "seeds the optimizers, the ranking's bootstrap and sampled generation",
        parse=int, check=_whole("seed", 0, MAX_SEED), label="seed", main=True, flag="--seed",
    )  # fmt: skip
    dataset: str | None = _option(
        None, "a JSONL file of problems in the task's format", label="dataset", main=True,
        none_means="the task's own data", metavar="FILE", flag="--dataset",
    )  # fmt: skip
    tune_size: int = _option(
        6, "tuning problems per sample (0 = the whole tuning split)", parse=int,
        check=_whole("problems", 0), label="problems", main=True, metavar="N", flag="--problems",
    )  # fmt: skip
    samples_per_problem: int = _option(
        1, "completions per problem in each sample, the n of pass@k and EM@k", parse=int,
        check=_whole("samples per problem", 1), label="n/problem", main=True, short="-n",
        metavar="N", flag="--samples-per-problem",
    )  # fmt: skip
    train_size: int | None = _option(
        None, "problems in the task's train split: the few-shot/RAG pool, and what "
        "finetune trained on", parse=int, check=_optional(_whole("train size", 0)),
        label="train", main=True, none_means="the task's", metavar="N", flag="--train-size",
    )  # fmt: skip
    holdout_size: int = _option(
        10, "held-out problems the winner is scored on at the end (0 = all)", parse=int,
        check=_whole("held-out problems", 0), label="held-out", metavar="N",
        flag="--holdout-problems",
    )  # fmt: skip
    metric: str | None = _option(
        None, "the task metric to maximise", label="metric", none_means="the task's first",
        flag="--metric",
    )  # fmt: skip
    sampler: str = _option(
        "thompson", "how a candidate's next parameters are proposed: by Thompson sampling of "
        "the surrogate every candidate shares, or by the candidate's own Optuna study",
        check=_one_of("sampler", SAMPLERS),
        label="sampler", choices=SAMPLERS, flag="--sampler",
    )  # fmt: skip
    stage1_fraction: float = _option(
        0.5, "roughly the share of the budget stage 1 spends", parse=float, check=_fraction,
        label="stage-1 share", metavar="F", flag="--stage1-fraction",
    )  # fmt: skip
    eliminate: float = _option(
        DEFAULT_ELIMINATION, "drop a candidate from stage 1 while its tuned score is below "
        "the leader's with 1 - this confidence (0 turns it off)", parse=float,
        check=_elimination, label="eliminate at", metavar="ALPHA", flag="--eliminate",
    )  # fmt: skip
    switch_block: int | str = _option(
        "auto", "stage-1 samples a candidate gets in a row before the run moves to another "
        "(1: follow the evidence sample by sample; auto: 1 while the models all fit "
        "--device-memory, else as many as keep reloading a model to a small share of the "
        "time, measured as the run goes)", parse=_auto_or_int,
        check=_auto_or(_whole("switch block", 1)), label="switch block", metavar="N|auto",
        flag="--switch-block",
    )  # fmt: skip
    psm: bool = _option(
        False, "centre each candidate's surrogate on its PSM-matched mean (off: on the mean "
        "of all scores; the matched comparison is reported either way)", parse=_on_off,
        check=_boolean("psm"), label="PSM", choices=("on", "off"), flag="--psm",
    )  # fmt: skip
    fidelity: str = _option(
        "auto", "score each sample's problems in chunks, in one seeded order, and stop a "
        "configuration once a paired test says it is worse than the best one known "
        "(off: every sample scores every problem)", check=_one_of("fidelity", FIDELITIES),
        label="fidelity", choices=FIDELITIES, flag="--fidelity",
    )  # fmt: skip
    draws: int = _option(
        DEFAULT_DRAWS, "posterior draws behind each ranking's intervals and P(best)",
        parse=int, check=_whole("draws", 16), label="draws", metavar="N", flag="--draws",
    )  # fmt: skip
    backend: str = _option(
        "auto", "what generates with models loaded in process: vllm (CUDA only), "
        "transformers, or auto (vllm on CUDA where it is installed, else transformers)",
        check=_one_of("backend", BACKENDS), label="backend", choices=BACKENDS, flag="--backend",
    )  # fmt: skip
    batch_size: int = _option(
        0, "prompts generated at once by transformers, halved on out-of-memory (0 = what "
        "the free GPU memory holds on CUDA, 16 on the CPU)", parse=int,
        check=_whole("batch size", 0), label="batch size", metavar="N", flag="--batch-size",
    )  # fmt: skip
    device: str = _option(
        "auto", "where models run: auto, cpu, cuda, cuda:1, ...", label="device", flag="--device",
    )  # fmt: skip
    device_memory: str = _option(
        "auto", "memory the loaded models may take together (20GiB, 512MB; auto = the free "
        "CUDA memory at the start, no limit on the CPU): the least recently used model is "
        "evicted when the next does not fit", check=_memory, label="device memory",
        metavar="SIZE", flag="--device-memory",
    )  # fmt: skip
    threads: int = _option(
        0, "CPU threads for generating in process (0 = torch's default, one per core; on a "
        "CPU shared with other work, fewer can be several times faster)", parse=int,
        check=_whole("threads", 0), label="threads", metavar="N", flag="--threads",
    )  # fmt: skip
    concurrency: int = _option(
        8, "requests in flight at once to a served candidate's server", parse=int,
        check=_whole("concurrency", 1), label="concurrency", metavar="N", flag="--concurrency",
    )  # fmt: skip
    workers: int | None = _option(
        None, "processes that evaluate samples at once, each with its own models (0 = none "
        "here: workers started with `codellmtuner worker` on any host take the jobs)",
        parse=int, check=_optional(_whole("workers", 0)), label="workers", metavar="N",
        none_means="one per visible GPU, else 1", flag="--workers",
    )  # fmt: skip
    request_timeout: float = _option(
        300.0, "seconds a server may take to answer one request before it is retried",
        parse=float, check=_positive("request timeout"), label="request timeout",
        metavar="SECONDS", flag="--request-timeout",
    )  # fmt: skip

    def __post_init__(self) -> None:
        object.__setattr__(self, "budget", Budget.parse(self.budget))
        if self.dataset is not None:
            object.__setattr__(self, "dataset", str(self.dataset))  # a Path, say
        for option in OPTIONS:
            option.check(getattr(self, option.name))

    @classmethod
    def of(cls, **values: Any) -> RunSettings:
        """Settings from keyword values; an unknown name is a :class:`ConfigError`."""
        unknown = sorted(set(values) - {o.name for o in OPTIONS})
        if unknown:
            known = ", ".join(o.name for o in OPTIONS)
            raise ConfigError(f"unknown run option {unknown[0]!r}; known: {known}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, as a run stores them."""
        return {**asdict(self), "budget": self.budget.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSettings:
        """Settings a run stored; an option it predates takes the value that reproduces
        the run (see :data:`_BEFORE_IT_EXISTED`), else its default."""
        names = {o.name for o in OPTIONS}
        values = {**_BEFORE_IT_EXISTED, **{k: v for k, v in data.items() if k in names}}
        if isinstance(values.get("budget"), Mapping):
            values["budget"] = Budget.from_dict(values["budget"])
        for size in ("tune_size", "holdout_size"):  # stored as None (the whole split) once
            values[size] = values.get(size) or 0
        return cls(**values)

    def task(self, name: str) -> Any:
        """Task ``name`` as these settings load it: their dataset and completions per
        problem, and their train size where given (else the task's own default)."""
        from engine.tasks import get_task

        sizes = {} if self.train_size is None else {"n_train": self.train_size}
        return get_task(name, dataset=self.dataset,
                        samples_per_problem=self.samples_per_problem, **sizes)  # fmt: skip


#: What a run recorded before an option existed ran with.
_BEFORE_IT_EXISTED = {"eliminate": 0.0, "fidelity": "off", "psm": True, "switch_block": 1}

OPTIONS: tuple[Option, ...] = tuple(
    replace(f.metadata["option"], name=f.name) for f in fields(RunSettings)
)
