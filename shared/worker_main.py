"""Entry point body of every service worker: `python -m services.<svc>.entrypoints.worker`.

Workers serve their own metrics registry; gunicorn's multiprocess directory is for web processes,
so it is dropped before prometheus_client is first imported.
"""
import importlib
import os
import threading
from typing import Callable


def main(service: str, background: tuple[Callable, ...] = ()) -> None:
    """`background`: loops of the service's own (e.g. the registry's import runner), each given the
    container and run in a daemon thread beside the consumer and the outbox relay."""
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from .container import worker_main
    boot = importlib.import_module(f"services.{service}.bootstrap")
    c = boot.bootstrap()
    threads = [threading.Thread(target=loop, args=(c,), name=loop.__name__, daemon=True) for loop in background]
    for t in threads:
        t.start()
    worker_main(c, boot.event_handlers(c), background=threads)
