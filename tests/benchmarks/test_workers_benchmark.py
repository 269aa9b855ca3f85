"""The workers benchmark's harness: its quick run commits every sample once per row, and
its table says so. No time is asserted: numbers are what the benchmark prints."""

from __future__ import annotations

from benchmarks import workers


def test_quick_rows_commit_every_sample_once(capsys):
    assert workers.main(["--quick"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│ ")]
    assert len(rows) == 2  # 1 and 2 workers
    for row in rows:
        cells = [cell.strip() for cell in row.strip("│ ").split("│")]
        assert cells[4] == "8" and cells[5] == "yes" and cells[6] == "b", cells
