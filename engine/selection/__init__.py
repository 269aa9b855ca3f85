"""Selection: which candidate is best once tuned, how sure that is, and every decision of
the three stages built on it.

:func:`rank` (:mod:`engine.selection._ranking`) models every candidate's score surface
(:mod:`engine.selection._surrogate`) beside its propensity-score matched mean
(:mod:`engine.selection._psm`), and draws each candidate's tuned score over what was
evaluated and over points that stand for what was not: the draws give the ranking's
intervals, and P(best) is the share of draws a candidate wins (``prob_best``). Stage 1 is
settled once the leader's P(best) reaches ``SETTLED``. The stages' decisions on those
draws (who is sampled next, who is out, when stage 1 is settled, the answer so far) are
pure functions in :mod:`engine.selection._decisions`; stopping a sample early on a subset
of problems is :mod:`engine.selection._fidelity`; what a sample costs where it has not
been evaluated is :mod:`engine.selection._cost`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import attach

if TYPE_CHECKING:
    from engine.selection._cost import CostModel
    from engine.selection._decisions import (
        DEFAULT_DRAWS,
        DEFAULT_ELIMINATION,
        EXPLORE_EACH,
        MAX_SWITCH_BLOCK,
        MIN_STAGE1_SAMPLES,
        REFERENCE_POINTS,
        SETTLED,
        SWITCH_SHARE,
        answer_so_far,
        best_sample_index,
        block_to_finish,
        budget_spent,
        check_elimination,
        check_split,
        leader,
        next_stage1_candidate,
        safe_eliminations,
        sampler_seed,
        selection_settled,
        switch_block,
        top_two,
        why_leader,
    )
    from engine.selection._fidelity import (
        FIDELITIES,
        EarlyStop,
        full_scores,
        plan,
        rungs,
        sample_chunks,
    )
    from engine.selection._psm import Balance, balance, propensity
    from engine.selection._ranking import Ranking, rank

__getattr__, __dir__, __all__ = attach(__name__, __file__)
