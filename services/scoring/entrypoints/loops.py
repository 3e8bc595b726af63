"""Background loop of the scoring worker: each evaluation published at its deadline, each forecast
FORECAST_DAYS_BEFORE days before it, each ranking on the county's reporting rhythm (once each)."""
from __future__ import annotations

import logging
import time

from .. import bootstrap as boot
from ..service_layer.assessments import publish_due
from ..service_layer.rankings import publish_forecasts, publish_rankings

log = logging.getLogger(__name__)


def evaluation_loop(c, every_s: float = 30.0) -> None:
    """Version 1 of every evaluation whose deadline (plus EVALUATION_GRACE_S) has passed on the
    suite's clock; two workers racing write it once (its `_id`)."""
    repo, store = boot.repository(c), boot.assessments(c)
    while True:
        try:
            for doc in publish_due(repo, store, c.policies, c.clock.now()):
                log.info("published %s %s %s v%s", doc["year"], doc["kind"], doc["no"], doc["version"])
            for doc in publish_forecasts(repo, store, c.policies, c.clock.now()):
                log.info("published the forecast before %s stage %s", doc["year"], doc["no"])
            for doc in publish_rankings(repo, store, c.policies, c.clock.now()):
                log.info("published the %s ranking as of %s", doc["year"], doc["as_of"])
        except Exception:  # noqa: BLE001 — the next round tries again
            log.exception("evaluation round failed")
        time.sleep(every_s)
