"""The fine-tuning benchmark's harness: ``--quick`` trains two methods in child
processes and prints a row for each, plus the weights' footprint table."""

from __future__ import annotations

import pytest

from benchmarks.finetune_memory import main


@pytest.mark.bundled
@pytest.mark.slow
def test_quick_prints_a_row_per_method(capsys):
    main(["--quick"])
    out = capsys.readouterr().out
    assert "failed" not in out
    rows = [line for line in out.splitlines() if line.startswith("│ ")]
    assert any(line.startswith("│ lora ") for line in rows), out
    assert any(line.startswith("│ qlora-4 ") for line in rows), out
    assert "base model weights" in out and "nf4" in out
