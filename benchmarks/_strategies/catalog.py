"""Every strategy ``benchmarks.strategies`` compares, in table order."""

from __future__ import annotations

from benchmarks._strategies import peers, runners
from benchmarks._strategies.runners import Strategy

#: Name -> strategy, in table order; "two-stage" is the baseline of every ratio.
STRATEGIES: dict[str, Strategy] = {
    "three-stage": runners.three_stage,
    "three-stage, PSM prior": runners.three_stage_with_psm_prior,
    "three-stage, TPE": runners.three_stage_with_tpe,
    "two-stage": runners.two_stage,
    "naive pooling": runners.naive_pooling,
    "tune everything": runners.tune_everything,
    "random search": runners.random_search,
    "joint TPE": peers.joint_tpe,
    "joint GP": peers.joint_gp,
    "BlendSearch": peers.blendsearch,
    "successive halving": peers.successive_halving,
    "MaxUCB": peers.max_ucb,
    "share, then GP mean": peers.share_then_gp_mean,
}
BASELINE = "two-stage"
#: Strategies run at ``B`` alone, not on the rest of the budget grid: the method's
#: ablations (what they measure is the score at ``B``) and joint GP, whose GPSampler is
#: two thirds of the benchmark's time (budget ratio "-" in the table).
AT_B_ONLY = frozenset({"three-stage, PSM prior", "three-stage, TPE", "joint GP"})
#: Strategies run on the first this-many seeds alone: joint GP's GPSampler costs about 40
#: times what the others do per run.
FEWER_SEEDS = {"joint GP": 10}
#: The strategies that run the real Tuner: the method and its ablations.
TUNER_STRATEGIES = frozenset({"three-stage", "three-stage, PSM prior", "three-stage, TPE"})
#: The strategies that are not the project's three-stage method: the best of them in a
#: family is that family's "best peer".
PEERS = tuple(name for name in STRATEGIES if name not in TUNER_STRATEGIES)
