"""The worker process of a service: the consumer(s) and the outbox relay in threads, plus gauges.

Run as `python -m services.<svc>.entrypoints.worker`. SIGTERM stops both loops cleanly; anything
unacknowledged is redelivered to the next worker, anything unpublished stays in the outbox.

The loops survive broker and store outages themselves; a loop thread that ends anyway (a bug) is
not papered over: the worker reports itself not ready, stops the others and exits with status 1,
so its supervisor (compose's `restart`, systemd, tools.suite's caller) starts a fresh one, and
the heartbeat alerts see the gap.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Sequence

from prometheus_client import start_http_server

from . import metrics
from .bus import Consumer, queue_depth
from .outbox import OutboxRelay

log = logging.getLogger(__name__)


def run_worker(service: str, consumer: Consumer | None, relays: Sequence[OutboxRelay], amqp_url: str, dead_queue: str | None,
               metrics_port: int | None, ping_store, extra_consumers: Sequence[Consumer] = (),
               background: Sequence[threading.Thread] = (), check_every_s: float = 5.0) -> None:
    """`relays`: one per county database; `extra_consumers`: feeds of the service beyond its event queue (e.g. outside publishers);
    `background`: the service's own loop threads, already started, watched like the others."""
    consumers = [c for c in (consumer, *extra_consumers) if c is not None]
    if metrics_port:
        start_http_server(metrics_port, addr="0.0.0.0")
    stop = threading.Event()

    def _term(*_):
        stop.set()
        for relay in relays:
            relay.stop()
        for c in consumers:
            c.stop()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    threads = [threading.Thread(target=relay.run, name=f"relay-{relay.county}" if relay.county else "relay", daemon=True)
               for relay in relays]
    for i, c in enumerate(consumers):
        threads.append(threading.Thread(target=c.run, name="consumer" if i == 0 else f"consumer-{i}", daemon=True))
    for t in threads:
        t.start()
    log.info("worker started")
    watched = [*threads, *background]
    while not stop.wait(check_every_s):
        dead = [t.name for t in watched if not t.is_alive()]
        if dead and not stop.is_set():
            metrics.READY.labels(service).set(0)
            log.error("worker thread(s) %s ended unexpectedly; exiting so the worker is restarted", ", ".join(dead))
            _term()
            for t in threads:
                t.join(timeout=10)
            sys.exit(1)
        depth = queue_depth(amqp_url, dead_queue) if dead_queue else 0
        if depth is not None:
            metrics.DLQ_DEPTH.labels(service).set(depth)
        try:
            store_ok = bool(ping_store())
        except Exception:  # noqa: BLE001
            store_ok = False
        metrics.READY.labels(service).set(1 if (store_ok and depth is not None) else 0)
        if not consumers:
            metrics.HEARTBEAT.labels(service).set(time.time())
    for t in threads:
        t.join(timeout=10)
    log.info("worker stopped")
