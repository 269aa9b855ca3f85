"""Reading APPS-format JSONL files: rows validated field by field, problems without tests
left out and counted."""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.errors import DatasetError
from engine.tasks._jsonl import RowError, load_jsonl, optional_str, require_str
from engine.tasks.base import Problem

__all__ = ["DIFFICULTIES", "bundled_dataset", "load_problems", "parse_row"]

DIFFICULTIES = ("introductory", "interview", "competition")
_CLASS = re.compile(r"^class\s+([A-Za-z_]\w*)", re.M)


def bundled_dataset() -> Path:
    """The bundled APPS-format sample file."""
    return Path(__file__).resolve().parent.parent / "data" / "apps-sample.jsonl"


def load_problems(path: str | Path, *, max_tests: int = 20) -> tuple[list[Problem], dict]:
    """Read and validate an APPS-format JSONL file (``.gz`` is decompressed).

    Returns the problems (each keeping its first ``max_tests`` tests) and the rows left
    out on purpose by reason: ``{"no tests": count}`` for problems whose ``input_output``
    is empty or has no tests (``{}`` if none).

    Raises:
        DatasetError: naming the file, line and field of a malformed row (and how many
            more there are); also for a missing, unreadable or empty file, a repeated
            ``problem_id``, and a file in which no problem has tests.
    """
    seen: set[str] = set()

    def parse(row: dict, where: str) -> Problem | None:
        problem = parse_row(row, max_tests=max_tests)
        if problem is not None:
            if problem.id in seen:
                raise RowError(f"problem_id {problem.id!r} appears twice")
            seen.add(problem.id)
        return problem

    rows = load_jsonl(path, parse)
    problems = [p for p in rows if p is not None]
    skipped = {"no tests": len(rows) - len(problems)} if len(problems) < len(rows) else {}
    if not problems:
        raise DatasetError(f"{path}: none of its {len(rows)} problems has tests")
    return problems, skipped


def parse_row(row: dict, *, max_tests: int = 20) -> Problem | None:
    """One APPS row as a :class:`Problem`, or ``None`` when it has no tests.

    ``Problem.tests`` is the JSON of ``{"inputs": [...], "outputs": [...]}`` (the first
    ``max_tests``; standard-input tests given as lists of lines are joined with newlines);
    ``Problem.entry_point`` is ``fn_name`` (``""`` for standard-input problems);
    ``meta`` holds ``difficulty``, ``starter_code``, ``class_name`` (the class the starter
    code defines, whose instance's method is called), ``n_tests`` and ``tests_total``.

    Raises:
        RowError: naming the malformed field.
    """
    problem_id = _problem_id(row)
    question = require_str(row, "question")
    difficulty = require_str(row, "difficulty").strip().lower()
    if difficulty not in DIFFICULTIES:
        raise RowError(
            f"field 'difficulty' must be one of {', '.join(DIFFICULTIES)}, "
            f"got {row['difficulty']!r}"
        )
    starter = optional_str(row, "starter_code")
    solutions = _solutions(row)
    tests = _tests(row)
    if tests is None:
        return None
    inputs, outputs, fn_name = tests
    classes = _CLASS.findall(starter) if fn_name else []
    meta = {
        "difficulty": difficulty,
        "starter_code": starter,
        "class_name": classes[-1] if classes else "",
        "n_tests": min(len(inputs), max_tests),
        "tests_total": len(inputs),
    }
    capped = {"inputs": inputs[:max_tests], "outputs": outputs[:max_tests]}
    reference = solutions[0] if solutions else ""
    return Problem(problem_id, question, reference, json.dumps(capped), fn_name, meta)


def _problem_id(row: dict) -> str:
    if "problem_id" not in row:
        raise RowError("field 'problem_id' is missing")
    value = row["problem_id"]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RowError(f"field 'problem_id' must be an integer or a string, got {value!r}")
    if isinstance(value, str) and not value.strip():
        raise RowError("field 'problem_id' is empty")
    return str(value)


def _solutions(row: dict) -> list[str]:
    value = row.get("solutions")
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise RowError(f"field 'solutions' is not valid JSON ({error.msg})") from None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise RowError("field 'solutions' must be a list of program strings")
    return value


def _tests(row: dict) -> tuple[list, list, str] | None:
    """``(inputs, outputs, fn_name)`` from ``input_output``; ``None`` without tests."""
    value = row.get("input_output")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise RowError(f"field 'input_output' is not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise RowError(f"field 'input_output' must be an object, got {type(value).__name__}")
    for key in ("inputs", "outputs"):
        if not isinstance(value.get(key), list):
            raise RowError(f"field 'input_output.{key}' must be a list")
    inputs, outputs = value["inputs"], value["outputs"]
    if len(inputs) != len(outputs):
        raise RowError(f"field 'input_output' has {len(inputs)} inputs but {len(outputs)} outputs")
    fn_name = value.get("fn_name") or ""
    if not isinstance(fn_name, str) or (fn_name and not fn_name.isidentifier()):
        raise RowError(f"field 'input_output.fn_name' must be a Python name, got {fn_name!r}")
    if not inputs:
        return None
    if fn_name:
        for i, args in enumerate(inputs):
            if not isinstance(args, list):
                raise RowError(
                    f"field 'input_output.inputs[{i}]' must be a list of arguments "
                    f"(call-based problem), got {type(args).__name__}"
                )
        return inputs, outputs, fn_name
    inputs = [_text(v, f"inputs[{i}]") for i, v in enumerate(inputs)]
    outputs = [_text(v, f"outputs[{i}]") for i, v in enumerate(outputs)]
    return inputs, outputs, ""


def _text(value: object, field: str) -> str:
    """A standard-input test's input or output: a string, or a list of lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "\n".join(value)
    raise RowError(
        f"field 'input_output.{field}' must be a string or a list of strings "
        f"(standard-input problem), got {type(value).__name__}"
    )
