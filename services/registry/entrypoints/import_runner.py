"""The worker loop that runs uploaded roster imports one at a time."""
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
            run_job(repo, imports, c.policy, c.clock, job)
        except Exception:  # noqa: BLE001 — a failed job is marked failed; the loop goes on
            log.exception("roster import failed")
            time.sleep(poll_s)
