"""The residency benchmark's harness: the real Tuner and Residency on a virtual clock. No
number is asserted beyond what the table must say of itself: a run whose models do not
fit loads more often and takes longer than one where they do, and decides the same; with
switch blocks it loads less often than without."""

from __future__ import annotations

from benchmarks import residency


def test_a_run_whose_models_do_not_fit_reloads_them_and_decides_the_same():
    case = residency.CASES[0]
    resident = residency.run(case, seed=0, all_resident=True)
    lru = residency.run(case, seed=0, all_resident=False, block=1)
    assert resident["loads"] == 3  # one per candidate, each kept
    assert lru["loads"] > resident["loads"] and lru["seconds"] > resident["seconds"]
    evaluations = 30 * case.eval_s  # a budget of 10 per candidate, three candidates
    assert resident["seconds"] == evaluations + 3 * case.load_s
    assert lru["seconds"] == evaluations + lru["loads"] * case.load_s
    assert (lru["right"], lru["score"]) == (resident["right"], resident["score"])
    blocks = residency.run(case, seed=0, all_resident=False)  # --switch-block auto
    assert resident["loads"] < blocks["loads"] < lru["loads"]


def test_quick_run_prints_one_row_per_case(capsys):
    residency.main(["--quick"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│ ")]
    assert len(rows) == 1 and rows[0].startswith(f"│ {residency.CASES[0].name} ")
