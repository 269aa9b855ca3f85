"""The store: every run's samples, jobs, rankings and messages, in SQLite or PostgreSQL.

:class:`Store` is the truth about a run (its tables are listed in
:mod:`engine.store._store`, their SQL in :mod:`engine.store._sql`); :class:`OptunaMirror`
copies a run's samples into Optuna's own tables of the same database, for
optuna-dashboard. A worker's lease on a job is :meth:`Store.claim_job` and
:meth:`Store.renew_lease`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import attach

if TYPE_CHECKING:
    from engine.store._mirror import MirrorSubscriber, OptunaMirror, dashboard_url
    from engine.store._store import (
        SCHEMA_VERSION,
        LeaseLostError,
        Store,
        StoreError,
        StoreFullError,
        StoreLockedError,
        StoreUnreachableError,
        TransientStoreError,
        abandoned,
        new_run_id,
        store_exists,
    )

__getattr__, __dir__, __all__ = attach(__name__, __file__)
