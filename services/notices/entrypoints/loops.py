"""Background loop of the notices worker: delivering the due notices of a county."""
from __future__ import annotations

import logging
import time

from shared.config import env

from .. import bootstrap as boot

log = logging.getLogger(__name__)


def delivery_loop(c, poll_s: float | None = None) -> None:
    """Takes due notices (deliveries_due) and sends them; sleeps only when a pass found nothing."""
    poll_s = float(env("NOTICE_DELIVERY_POLL_S", "1")) if poll_s is None else poll_s
    deliverer = boot.deliverer(c)
    while True:
        try:
            done = deliverer.run_once(c.clock.now())
            if not sum(n for what, n in done.items() if what in ("sent", "retry", "dead", "recovered_resend")):
                time.sleep(poll_s)
        except Exception:  # noqa: BLE001 — a store outage is waited out; the loop goes on
            log.exception("notice delivery pass failed")
            time.sleep(poll_s)
