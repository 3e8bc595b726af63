"""Background loops of the payments worker: expiring used gateway nonces."""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from .. import bootstrap as boot
from ..adapters.repository import NONCE_TTL_SECONDS

log = logging.getLogger(__name__)


def forget_nonces_once(c, limit: int = 1000, passes: int = 10) -> int:
    """Up to passes × limit nonces older than their TTL removed: MongoDB's TTL index does this by
    itself; FerretDB v1 has no TTL indexes (NotImplemented), so without this the collection, which
    every signed call writes to, would grow forever. Bounded so one pass never holds the store long."""
    repo = boot.repository(c)
    before = c.clock.now() - timedelta(seconds=NONCE_TTL_SECONDS)
    total = 0
    for _ in range(passes):
        n = repo.forget_nonces(before, limit)
        total += n
        if n < limit:
            break
    return total


def nonce_cleanup_loop(c, every_s: float = 300.0) -> None:
    while True:
        try:
            n = forget_nonces_once(c)
            if n:
                log.info("forgot %d expired gateway nonces", n)
        except Exception:  # noqa: BLE001 — the next pass tries again
            log.exception("nonce cleanup failed")
        time.sleep(every_s)
