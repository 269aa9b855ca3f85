"""The lease benchmark's harness: its quick run times renewals that all succeed, with and
without another process committing. No time is asserted: numbers are what it prints."""

from __future__ import annotations

from benchmarks import lease


def test_quick_rows_time_renewals_beside_a_committing_process(capsys, tmp_path):
    assert lease.main(["--quick"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│ ")]
    assert [row.split("│")[1].strip() for row in rows] == ["0", "1"]


def test_renewals_are_timed_while_others_commit(tmp_path):
    location = str(tmp_path / "s.db")
    lease.prepare(location)
    seconds = lease.renewals(location, busy=1, count=5)
    assert len(seconds) == 5 and all(0 < s < 60 for s in seconds)
