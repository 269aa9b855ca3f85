"""Mutants made with ast: each operator kind on known functions, scope, determinism, limits."""

from __future__ import annotations

import ast
from collections import Counter

import pytest

from engine.errors import ConfigError
from engine.tasks.humaneval import bundled_dataset, load_problems
from engine.tasks.mutation import KINDS, Mutant, candidates, mutants


def _bodies(source: str, **kwargs) -> dict[str, str]:
    """description -> the mutated function's last line, for compact expectations."""
    return {
        m.description: m.source.rstrip().split("\n")[-1].strip()
        for m in candidates(source, **kwargs)
    }


def test_addition_yields_the_subtraction_mutant_exactly():
    found = candidates("def f(a, b):\n    return a + b\n")
    assert found == [
        Mutant("def f(a, b):\n    return None\n", "line 2: return x -> return None", "return", 2),
        Mutant("def f(a, b):\n    return a - b\n", "line 2: + -> -", "arithmetic", 2),
    ]


@pytest.mark.parametrize(
    "expression, description, mutated",
    [
        ("a - b", "- -> +", "a + b"),
        ("a * b", "* -> /", "a / b"),
        ("a / b", "/ -> *", "a * b"),
        ("a // b", "// -> /", "a / b"),
        ("a % b", "% -> //", "a // b"),
        ("a ** b", "** -> *", "a * b"),
        ("a < b", "< -> <=", "a <= b"),
        ("a <= b", "<= -> <", "a < b"),
        ("a > b", "> -> >=", "a >= b"),
        ("a >= b", ">= -> >", "a > b"),
        ("a == b", "== -> !=", "a != b"),
        ("a != b", "!= -> ==", "a == b"),
        ("a is b", "is -> is not", "a is not b"),
        ("a is not b", "is not -> is", "a is b"),
        ("a in b", "in -> not in", "a not in b"),
        ("a not in b", "not in -> in", "a in b"),
        ("a and b", "and -> or", "a or b"),
        ("a or b", "or -> and", "a and b"),
        ("not a", "not x -> x", "a"),
        ("-a", "-x -> x", "a"),
    ],
)
def test_each_operator_is_replaced(expression, description, mutated):
    bodies = _bodies(f"def f(a, b):\n    return {expression}\n")
    assert bodies[f"line 2: {description}"] == f"return {mutated}"


def test_chained_comparisons_mutate_each_operator_alone():
    bodies = _bodies("def f(a, b, c):\n    return a < b <= c\n")
    assert bodies["line 2: < -> <="] == "return a <= b <= c"
    assert bodies["line 2: <= -> <"] == "return a < b < c"


def test_augmented_assignment_and_condition_negation():
    source = (
        "def f(n):\n"
        "    total = 0\n"
        "    while n:\n"
        "        total += n\n"
        "        n -= 1\n"
        "    return total\n"
    )
    by_description = {m.description: m for m in candidates(source)}
    assert "total -= n" in by_description["line 4: += -> -="].source
    assert "n += 1" in by_description["line 5: -= -> +="].source
    assert by_description["line 5: -= -> +="].kind == "augmented"
    negated = by_description["line 3: if x -> if not x"]
    assert "while not n:" in negated.source and negated.kind == "boolean"


@pytest.mark.parametrize(
    "constant, expected",
    [
        ("2", {"3", "0", "-2"}),
        ("0", {"1"}),  # 0 -> 0 and 0 -> -0 change nothing
        ("2.5", {"3.5", "0.0", "-2.5"}),
        ("True", {"False"}),
        ("'ab'", {"''"}),
        ("''", set()),
        ("None", set()),
    ],
)
def test_constant_mutations(constant, expected):
    found = [m for m in candidates(f"def f():\n    return {constant}\n") if m.kind == "constant"]
    assert {m.source.split("return ")[1].strip() for m in found} == expected
    assert all(m.description.startswith(f"line 2: {constant} -> ") for m in found)


def test_signature_docstring_and_fstring_text_are_left_alone():
    source = (
        "def f(a, b=1, *, c: int = 2) -> int:\n"
        '    """Add 1 and 2."""\n'
        "    'a bare string statement'\n"
        "    return f'{a + b}: x' and c\n"
    )
    found = candidates(source)
    assert {m.description for m in found} == {
        "line 4: return x -> return None",
        "line 4: + -> -",
        "line 4: and -> or",
    }
    for mutant in found:
        head = ast.parse(mutant.source).body[0]
        assert ast.unparse(head.args) == "a, b=1, *, c: int=2"
        assert ast.get_docstring(head) == "Add 1 and 2."


def test_only_the_named_function_changes():
    source = (
        "import math\n"
        "\n"
        "def helper(x):\n"
        "    return x + 1\n"
        "\n"
        "def target(x):\n"
        "    return helper(x) * 2\n"
    )
    found = candidates(source, function="target")
    assert found and all(m.line == 7 for m in found)
    assert all("return x + 1" in m.source and "import math" in m.source for m in found)
    assert {m.line for m in candidates(source)} == {4, 7}
    with pytest.raises(ValueError, match="no top-level function 'missing'"):
        candidates(source, function="missing")


def test_lines_refer_to_the_original_source_and_mutants_are_distinct():
    source = (
        "def f(xs):\n"
        "    out = []\n"
        "    for x in xs:\n"
        "        if x > 1:\n"
        "            out.append(x * 2)\n"
        "    return out\n"
    )
    found = candidates(source)
    assert len({m.source for m in found}) == len(found)
    assert ast.unparse(ast.parse(source)) + "\n" not in {m.source for m in found}
    assert {m.description for m in found if m.line == 4} >= {"line 4: > -> >=", "line 4: 1 -> 2"}
    assert "line 5: * -> /" in {m.description for m in found}


def test_no_function_no_mutants_and_bad_source_raises():
    assert candidates("x = 1 + 2\n") == []
    with pytest.raises(SyntaxError):
        candidates("def f(:\n")


# -- sampling ---------------------------------------------------------------------------------

_BIG = (
    "def f(xs, k):\n"
    "    total = 0\n"
    "    for i, x in enumerate(xs):\n"
    "        if x % 2 == 0 and i < 10 or not k:\n"
    "            total += x * 3 - 1\n"
    "        elif x > 100:\n"
    "            total -= -x // 4\n"
    "    return total + 7 if total >= 0 else 'negative'\n"
)


def test_sampling_is_deterministic_and_respects_the_limit():
    assert len(candidates(_BIG)) > 20
    first = mutants(_BIG, limit=8, seed=3)
    assert first == mutants(_BIG, limit=8, seed=3)
    assert len(first) == 8
    assert mutants(_BIG, limit=8, seed=4) != first
    every = candidates(_BIG)
    assert [every.index(m) for m in first] == sorted(every.index(m) for m in first)


def test_sampling_spreads_over_the_kinds():
    every = Counter(m.kind for m in candidates(_BIG))
    assert set(every) == set(KINDS) and every["constant"] > len(KINDS)
    for seed in range(5):
        drawn = Counter(m.kind for m in mutants(_BIG, limit=len(KINDS), seed=seed))
        assert drawn == Counter(KINDS)  # one of each, though constants are the majority


def test_a_limit_above_the_count_returns_everything():
    assert mutants(_BIG, limit=1000, seed=0) == candidates(_BIG)


@pytest.mark.parametrize("limit", [0, -1, 2.5, True, "3"])
def test_invalid_limit_is_rejected(limit):
    with pytest.raises(ConfigError, match="limit must be an integer >= 1"):
        mutants(_BIG, limit=limit, seed=0)


@pytest.mark.slow
def test_every_humaneval_solution_gives_compilable_mutants_of_its_entry_point():
    for problem in load_problems(bundled_dataset()):
        source = problem.prompt + problem.reference
        drawn = mutants(source, limit=10, seed=0, function=problem.entry_point)
        assert len(drawn) <= 10
        original = ast.parse(source)
        for mutant in drawn:
            compile(mutant.source, problem.id, "exec")
            tree = ast.parse(mutant.source)
            # the prompt's other definitions are unchanged
            others = [
                ast.dump(n) for n in original.body if getattr(n, "name", "") != problem.entry_point
            ]
            assert [
                ast.dump(n) for n in tree.body if getattr(n, "name", "") != problem.entry_point
            ] == others
