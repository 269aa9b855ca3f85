"""A run: the three stages over a store, in this process or with workers.

:class:`Tuner` is the entry point: it holds a run's spec and its subscribers and runs
an :class:`~engine.run._execution.Execution`, the stage machine (the switch from stage 1
to stage 3 is its ``_stage1``). The machine reads its
:class:`~engine.run._evidence.Evidence`, asks :class:`~engine.run._proposals.Proposals`
where to sample, has a :class:`~engine.run._dispatch.Dispatch` evaluate there (in
process, or through workers), and records and tells through its
:class:`~engine.run._session.Session`. Workers (:mod:`engine.run.worker`,
``python -m engine.run.worker``) evaluate a run's jobs in other processes, on any host
that reaches the store. :class:`RunFollower` turns a run's rows back into the events its
tuner emits, for viewers in other processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import attach

if TYPE_CHECKING:
    from engine.run._follow import (
        RunFollower,
        is_live,
        live_status,
        stored_answer,
        stored_balance,
    )
    from engine.run._proposals import make_sampler
    from engine.run._session import StopRequested
    from engine.run._tuner import Tuner
    from engine.run.worker import Worker, Workers

__getattr__, __dir__, __all__ = attach(__name__, __file__)
