"""APPS: write a Python 3 program for a natural-language programming problem.

The data is an APPS-format JSONL file (the rows of the APPS ``train``/``test`` files):
``problem_id`` (int or str), ``question``, ``difficulty`` (``introductory``,
``interview`` or ``competition``), ``input_output`` (a JSON string, as in the real files,
or an object: ``inputs`` and ``outputs`` lists and, for call-based problems, ``fn_name``),
optional ``starter_code`` and ``solutions`` (a JSON string list of reference programs;
the first is the few-shot example answer). Without a file the task uses a small bundled
sample in the same format (``engine/tasks/data/apps-sample.jsonl``). A problem without
tests cannot be scored: it is left out and counted in :attr:`AppsTask.skipped`.

Two kinds of tests:

- *standard input*: the program reads the test's input from stdin and its stdout is
  compared to the expected output by :func:`outputs_match`;
- *call-based* (``fn_name``): the program is run, then ``fn_name`` (or
  ``<Class>().fn_name`` when the starter code defines a class such as ``Solution``) is
  called with the test's input list as positional arguments and the return value is
  compared by :func:`returns_match`.

Scoring runs one sandbox process per (problem, completion) that runs the problem's first
``max_tests`` tests one by one, each with its own time limit, and reports each result as
it finishes on a line keyed by a random per-run nonce (so partial results survive a
whole-run timeout, and the program, whose output is redirected to a file, cannot forge
them). A test the run never reported fails. As in the APPS evaluator, every program
starts in a namespace holding the usual imports (:data:`PRELUDE`); ``SystemExit`` and
``os._exit`` inside a test end the program (its output so far is compared), not the run.

The modules: ``_task`` (:class:`AppsTask`: prompts, extraction, scoring, metrics),
``_load`` (the file format) and ``_runner`` (the program run in the sandbox, and reading
its report).
"""

from engine.tasks.apps._load import DIFFICULTIES, bundled_dataset, load_problems, parse_row
from engine.tasks.apps._runner import (
    PRELUDE,
    numbers_close,
    outputs_match,
    read_results,
    returns_match,
    runner_program,
)
from engine.tasks.apps._task import (
    CONTINUATION_STOPS,
    AppsTask,
    extract_program,
    raw_prefix,
)

__all__ = [
    "CONTINUATION_STOPS",
    "DIFFICULTIES",
    "PRELUDE",
    "AppsTask",
    "bundled_dataset",
    "extract_program",
    "load_problems",
    "numbers_close",
    "outputs_match",
    "parse_row",
    "raw_prefix",
    "read_results",
    "returns_match",
    "runner_program",
]
