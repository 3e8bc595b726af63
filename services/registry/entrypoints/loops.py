"""Background loops of the registry worker: roster imports, overdue corrections."""
from __future__ import annotations

import logging
import time

from .. import bootstrap as boot
from ..service_layer.importer import run_job

log = logging.getLogger(__name__)


def import_loop(c, poll_s: float = 1.0) -> None:
    imports = boot.imports(c)
    repo = boot.repository(c)
    while True:
        try:
            job = imports.claim_next(c.clock.now())
            if job is None:
                time.sleep(poll_s)
                continue
            run_job(repo, imports, c.policy_for(job["year"]), c.clock, job, boot.duplicates(c))
        except Exception:  # noqa: BLE001 — a failed job is marked failed; the loop goes on
            log.exception("roster import failed")
            time.sleep(poll_s)


def overdue_loop(c, every_s: float = 60.0) -> None:
    """Publishes corrections that passed their 3-working-day limit (once each)."""
    from ..service_layer.handlers import report_overdue_corrections
    corrections = boot.corrections(c)
    while True:
        try:
            report_overdue_corrections(corrections, c.clock)
        except Exception:  # noqa: BLE001
            log.exception("overdue corrections check failed")
        time.sleep(every_s)
