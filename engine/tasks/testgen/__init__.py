"""Test generation: write unit tests (``assert`` statements) for a given Python function.

The input is a complete function with its docstring: a HumanEval-format problem's
``prompt + canonical_solution`` (the bundled HumanEval by default, or a JSONL file with
the fields ``task_id``, ``prompt``, ``canonical_solution``, ``test``, ``entry_point``;
rows without a solution or without tests are skipped and counted in ``skipped``). The
output is test code; every top-level ``assert`` of the answer, and every statement with
an ``assert`` in the body of a test function (``def test_*``, ``def check``, or any
argument-free function with asserts), is one *assert* (see :func:`extract_tests`).

Scoring, all of it in :mod:`engine.tasks.sandbox`, through :mod:`engine.tasks._harness`:

``valid``
    the fraction of the answer's asserts that pass on the reference function. One run
    per answer; each statement has its own time limit, so one hanging assert costs only
    itself.
``mutation``
    the fraction of the problem's mutants (:mod:`engine.tasks.mutation`, at most
    ``mutants`` per problem) that the valid asserts *kill*: one run per mutant, killed
    when a statement that passed on the reference fails, hangs, or the run ends without
    its report. Only mutants that the problem's own tests kill are used (the equivalence
    filter: a mutant no test can detect would only lower every score); that filter runs
    once per problem, lazily, and is cached for the life of the task object.
``combined``
    the harmonic mean of ``valid`` and ``mutation`` (0 when either is 0), the default
    metric. For a problem without any usable mutant, ``combined`` is ``valid``.

Each metric is averaged over an answer's problem's samples, then over problems.

The modules: ``_task`` (:class:`TestGenTask`: prompts, scoring, metrics), ``_extract``
(the asserts of an answer, read with :mod:`ast`), ``_runs`` (statements run in the
sandbox) and ``_mutants`` (the equivalence-filtered mutants of each problem, cached).
"""

from engine.tasks.testgen._extract import (
    CONTINUATION_STOPS,
    MAX_ASSERTS,
    Statement,
    extract_tests,
)
from engine.tasks.testgen._runs import detects, run_statements
from engine.tasks.testgen._task import TestGenTask, combined_score, example_asserts

__all__ = [
    "CONTINUATION_STOPS",
    "MAX_ASSERTS",
    "Statement",
    "TestGenTask",
    "combined_score",
    "detects",
    "example_asserts",
    "extract_tests",
    "run_statements",
]
