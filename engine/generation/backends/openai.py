"""Generation through an OpenAI-compatible server: vLLM, ``transformers serve``, TGI, llama.cpp.

Raw prompts go to ``/v1/completions``; chat prompts (lists of messages) to
``/v1/chat/completions``, which applies the server's own chat template. Servers agree on
``temperature`` (0 is greedy), ``top_p``, ``max_tokens``, ``stop`` and ``seed`` and differ on
the rest, so :func:`probe` asks the server once, at start, what it really does:

- how it takes ``top_k`` and ``repetition_penalty``: as request fields (vLLM, llama.cpp),
  inside a ``generation_config`` JSON string (``transformers serve``, which refuses unknown
  fields and samples only when that says ``do_sample``), or not at all;
- whether each knob changes the output (``top_k=1`` at a high temperature must decode as
  greedy; a strong repetition penalty must change the greedy text), whether ``seed`` makes
  sampling repeatable, and whether ``n`` returns several choices.

A knob the server ignores is refused when the search space would tune it
(:meth:`OpenAIBackend.check_space`): tuning a parameter that does nothing wastes samples
and reports a setting that means nothing. Requests in flight are bounded by
``concurrency``; connection errors, time-outs, 429 and 5xx are retried with back-off.
Only the standard library speaks HTTP here.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError, ServerError
from engine.generation.backends import Backend, Generation, Prompt, repeat_numbers
from engine.tasks import truncate_at_stop

#: Waits before each retry of a failed request: connection refused or reset, a time-out,
#: 429 or 5xx. About a quarter of a minute in all, enough for a server that restarts.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
_RETRIED_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# A prompt whose greedy continuation repeats itself, so a repetition penalty shows, and
# whose hot samples vary, so seeds and top_k show.
_PROBE_PROMPT = "def fibonacci(n):\n    # fibonacci fibonacci fibonacci"
_PROBE_TOKENS = 24
_HOT = 1.5
#: The probe's requests are short: a server that takes longer is not ready to use.
PROBE_TIMEOUT = 120.0


@dataclass(frozen=True)
class ServerFeatures:
    """What a server does with the knobs beyond the common ones (see :func:`probe`).

    Attributes:
        extras: how ``top_k`` and ``repetition_penalty`` are sent: ``"fields"``,
            ``"generation_config"`` or ``"none"``.
        samples: whether a positive temperature samples at all.
        seed: whether equal seeds give equal samples.
        top_k / repetition_penalty: whether the knob changes the output.
        n: whether ``n`` returns that many choices.
        fingerprint: the served model's identity (URL, model id, its greedy probe text).
    """

    extras: str
    samples: bool
    seed: bool
    top_k: bool
    repetition_penalty: bool
    n: bool
    fingerprint: str

    def ignored(self) -> list[str]:
        """The decoding parameters this server ignores."""
        knobs = {"temperature": self.samples, "top_p": self.samples, "top_k": self.top_k,
                 "repetition_penalty": self.repetition_penalty}  # fmt: skip
        return [name for name, honoured in knobs.items() if not honoured]


class _Client:
    """JSON over HTTP to one server, with retries; raises :class:`ServerError`."""

    def __init__(self, url: str, *, timeout: float, delays: Sequence[float] = RETRY_DELAYS):
        self.url, self.timeout, self.delays = url, timeout, tuple(delays)

    def get(self, path: str) -> Any:
        return self._call(urllib.request.Request(self.url + path))

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        return self._call(urllib.request.Request(self.url + path, data, headers))

    def _call(self, request: urllib.request.Request) -> Any:
        for attempt in range(len(self.delays) + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                if error.code not in _RETRIED_STATUS or attempt == len(self.delays):
                    raise ServerError(self._refused(request, error)) from None
                wait = _retry_after(error) or self.delays[attempt]
            except (OSError, http.client.HTTPException) as error:  # refused, reset, timeout
                if attempt == len(self.delays):
                    raise ServerError(self._unreachable(error, attempt + 1)) from None
                wait = self.delays[attempt]
            except ValueError:  # not JSON
                raise ServerError(f"server {self.url} answered something that is not JSON; "
                                  "is it an OpenAI-compatible API?") from None  # fmt: skip
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _refused(self, request: urllib.request.Request, error: urllib.error.HTTPError) -> str:
        detail = _detail(error)
        path = request.full_url.removeprefix(self.url)
        return f"server {self.url} refused {path} with HTTP {error.code}: {detail}"

    def _unreachable(self, error: BaseException, tries: int) -> str:
        reason = getattr(error, "reason", error)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            why = f"no answer within {self.timeout:g} s"
        else:
            why = str(reason)
        return (f"server {self.url} is unreachable ({why}; {tries} tries); check that it "
                "runs and the URL, then resume the run")  # fmt: skip


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    try:
        return min(float(error.headers.get("Retry-After", "")), 30.0)
    except (TypeError, ValueError):
        return None


def _detail(error: urllib.error.HTTPError) -> str:
    """The server's own words about a refused request, on one line."""
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        return error.reason or "no detail"
    detail = body.get("detail") or body.get("error") or body.get("message") or body
    if isinstance(detail, Mapping):
        detail = detail.get("message", detail)
    return " ".join(str(detail).split())[:300]


# -- the probe -----------------------------------------------------------------------------


def probe(client: _Client, model: str) -> ServerFeatures:
    """Ask the server at ``client.url`` what it does with each knob (module docstring).

    Raises:
        ServerError: it is unreachable, does not serve ``model``, or refuses a plain
            completion request.
    """
    listed = [m.get("id") for m in client.get("/models").get("data", [])]
    if listed and model not in listed:
        shown = ", ".join(map(str, listed[:5])) + (", ..." if len(listed) > 5 else "")
        raise ServerError(f"server {client.url} does not serve {model!r}; it serves {shown}")

    def text(extras: str = "none", **fields: Any) -> str:
        body = {"model": model, "prompt": _PROBE_PROMPT, "max_tokens": _PROBE_TOKENS,
                **_knobs(fields, extras)}  # fmt: skip
        return _choices(client.post("/completions", body), "text")[0]

    greedy = text(temperature=0)
    extras = _extras_dialect(client, model)
    first, again, other = (text(extras, temperature=_HOT, seed=s) for s in (1, 1, 2))
    samples = len({first, again, other, greedy}) > 1
    identity = json.dumps([client.url, model, greedy])
    return ServerFeatures(
        extras=extras,
        samples=samples,
        seed=samples and first == again,
        top_k=samples
        and extras != "none"
        and text(extras, temperature=_HOT, top_k=1, seed=3) == greedy,
        repetition_penalty=extras != "none"
        and text(extras, temperature=0, repetition_penalty=2.0) != greedy,
        n=_honours_n(client, model),
        fingerprint="openai-" + hashlib.sha256(identity.encode()).hexdigest()[:16],
    )


def _extras_dialect(client: _Client, model: str) -> str:
    """How this server takes ``top_k``: as a field, in ``generation_config``, or not."""
    for extras in ("fields", "generation_config"):
        body = {"model": model, "prompt": _PROBE_PROMPT, "max_tokens": 1,
                **_knobs({"temperature": 0, "top_k": 1}, extras)}  # fmt: skip
        try:
            client.post("/completions", body)
            return extras
        except ServerError:
            continue
    return "none"


def _honours_n(client: _Client, model: str) -> bool:
    body = {"model": model, "prompt": _PROBE_PROMPT, "max_tokens": 1, "temperature": _HOT, "n": 2}
    try:
        return len(client.post("/completions", body).get("choices", [])) == 2
    except ServerError:
        return False


def _knobs(fields: Mapping[str, Any], extras: str) -> dict[str, Any]:
    """Request fields for ``temperature``, ``top_p``, ``top_k``, ``repetition_penalty``
    and ``seed`` as this server's ``extras`` dialect takes them; ``top_k`` of 0 and a
    penalty of 1 are the defaults and are not sent."""
    body = {k: fields[k] for k in ("temperature", "top_p", "seed") if fields.get(k) is not None}
    more = {}
    if fields.get("top_k"):
        more["top_k"] = int(fields["top_k"])
    if fields.get("repetition_penalty") not in (None, 1.0):
        more["repetition_penalty"] = float(fields["repetition_penalty"])
    if extras == "fields":
        body.update(more)
    elif extras == "generation_config":
        # transformers serve samples only when its generation config says so.
        config = {"do_sample": bool(body.get("temperature")), **more}
        body["generation_config"] = json.dumps(config)
    return body


def _choices(response: Any, field: str) -> list[str]:
    try:
        choices = sorted(response["choices"], key=lambda c: c.get("index", 0))
        if field == "message":
            return [c["message"].get("content") or "" for c in choices]
        return [c[field] or "" for c in choices]
    except (KeyError, TypeError, AttributeError):
        raise ServerError(f"an answer without choices: {str(response)[:200]}") from None


# -- the backend ---------------------------------------------------------------------------


class OpenAIBackend(Backend):
    """Generates through an OpenAI-compatible server (module docstring).

    Args:
        url: the API's base URL, ending in ``/v1`` for most servers.
        model: the served model's id, as ``GET /models`` lists it.
        concurrency: the most requests in flight at once.
        timeout: seconds to wait for one answer before it counts as failed (and is retried).
        on_warning: receives one-line warnings (a server that ignores ``seed``).
        retry_delays: the waits before each retry of a failed request during generation
            (the probe at start does not retry).

    Raises:
        ServerError: on construction, when the server cannot be probed.
    """

    #: Prompts for chat styles are lists of messages; the server renders its template.
    chat_messages = True

    def __init__(
        self,
        url: str,
        model: str,
        *,
        concurrency: int = 8,
        timeout: float = 300.0,
        on_warning: Callable[[str], None] | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.url, self.model, self.concurrency = url, model, concurrency
        # At start a bad URL or a dead server is one line at once, not after retries.
        self.features = probe(_Client(url, timeout=min(timeout, PROBE_TIMEOUT), delays=()), model)
        self.client = _Client(url, timeout=timeout, delays=retry_delays)
        self.fingerprint = self.features.fingerprint
        self._warn = on_warning or (lambda _text: None)
        self._warned = False

    def check_space(self, varied: Sequence[str]) -> None:
        """Refuse to tune a parameter (one of ``varied``) the server ignores."""
        ignored = self.features.ignored()
        for name in varied:
            if name in ignored:
                raise ConfigError(
                    f"server {self.url} ignores {name} for {self.model}, so tuning it would "
                    f"change nothing; fix it with --param {name}={_NEUTRAL[name]} or serve "
                    "the model with a server that takes it (vLLM does)"
                )

    def generate(
        self,
        prompts: Sequence[Prompt],
        generation_kwargs: Mapping[str, Any],
        *,
        seed: int,
        stop: Sequence[str] = (),
    ) -> list[Generation]:
        """One request per prompt (one per distinct prompt with ``n`` where the server
        honours it); the k-th repeat of a prompt in the call samples with ``seed + k``."""
        fields = self._fields(generation_kwargs, stop)
        sampled = bool(fields.get("temperature"))
        if sampled and not self.features.seed and not self._warned:
            self._warned = True
            self._warn(f"server {self.url} ignores seed: sampled completions are not "
                       "reproducible (the store keeps those generated, so a resumed run "
                       "reuses them)")  # fmt: skip
        jobs = _requests(prompts, sampled and self.features.n)

        def ask(job: tuple[Prompt, list[int], int]) -> list[Generation]:
            prompt, positions, k = job
            return self._ask(prompt, len(positions), {**fields, "seed": seed + k})

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            answers = list(pool.map(ask, jobs))
        results: list[Generation | None] = [None] * len(prompts)
        for (_prompt, positions, _k), generations in zip(jobs, answers, strict=True):
            for position, generation in zip(positions, generations, strict=True):
                results[position] = generation
        return [_cut(g, stop) for g in results]  # type: ignore[arg-type]  # all filled

    def _fields(self, kwargs: Mapping[str, Any], stop: Sequence[str]) -> dict[str, Any]:
        if int(kwargs.get("num_beams") or 1) > 1:
            raise ConfigError(f"server {self.url}: beam search is not an OpenAI API option")
        if "max_new_tokens" not in kwargs:
            raise ConfigError("generation_kwargs must set max_new_tokens")
        sampled = bool(kwargs.get("do_sample"))
        knobs = {
            "temperature": float(kwargs["temperature"]) if sampled else 0,
            "top_p": kwargs.get("top_p") if sampled else None,
            "top_k": kwargs.get("top_k") if sampled else None,
            "repetition_penalty": kwargs.get("repetition_penalty"),
        }
        fields = _knobs(knobs, self.features.extras)
        fields["max_tokens"] = int(kwargs["max_new_tokens"])
        if stop:
            fields["stop"] = list(stop)
        return fields

    def _ask(self, prompt: Prompt, n: int, fields: dict[str, Any]) -> list[Generation]:
        chat = not isinstance(prompt, str)
        body = {"model": self.model, **fields,
                **({"messages": list(prompt)} if chat else {"prompt": prompt})}  # fmt: skip
        if n > 1:
            body["n"] = n
        response = self.client.post("/chat/completions" if chat else "/completions", body)
        texts = _choices(response, "message" if chat else "text")
        if len(texts) != n:
            raise ServerError(f"server {self.url} returned {len(texts)} choices for n={n}")
        usage = response.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        shares = _split(int(usage.get("completion_tokens") or 0), n)
        return [Generation(t, prompt_tokens, s) for t, s in zip(texts, shares, strict=True)]


#: A value of each knob that leaves decoding as it is without the knob.
_NEUTRAL = {"temperature": 0, "top_p": 1, "top_k": 1000, "repetition_penalty": 1}


def _requests(prompts: Sequence[Prompt], group: bool) -> list[tuple[Prompt, list[int], int]]:
    """``(prompt, positions, k)`` per request: with ``group``, one request per distinct
    prompt asks for all its repeats (``n``); otherwise the k-th repeat of a prompt is its
    own request, told apart by its seed offset ``k`` (:func:`repeat_numbers`)."""
    if not group:
        numbers = repeat_numbers(prompts)
        return [(p, [i], k) for i, (p, k) in enumerate(zip(prompts, numbers, strict=True))]
    groups: dict[str, list[int]] = {}
    for position, prompt in enumerate(prompts):
        groups.setdefault(json.dumps(prompt), []).append(position)
    return [(prompts[positions[0]], positions, 0) for positions in groups.values()]


def _split(total: int, parts: int) -> list[int]:
    """``total`` tokens shared as evenly as whole numbers allow: the server reports one
    count for all the choices of a request.

    >>> _split(7, 3)
    [3, 2, 2]
    """
    return [total // parts + (i < total % parts) for i in range(parts)]


def _cut(generation: Generation, stop: Sequence[str]) -> Generation:
    """Cut at a stop sequence here too: some servers stop after it but keep it."""
    text, _found = truncate_at_stop(generation.text, stop)
    return Generation(text, generation.prompt_tokens, generation.generated_tokens)
