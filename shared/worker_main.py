"""Entry point body of every service worker: `python -m services.<svc>.entrypoints.worker`.

Workers serve their own metrics registry; gunicorn's multiprocess directory is for web processes,
so it is dropped before prometheus_client is first imported.
"""
import importlib
import os
from typing import Callable


def main(service: str, background: tuple[Callable, ...] = ()) -> None:
    """`background`: loops of the service's own (e.g. the registry's import runner), each given a
    county's container and run in a daemon thread per county beside the consumer and the relays."""
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from .container import worker_main
    boot = importlib.import_module(f"services.{service}.bootstrap")
    worker_main(boot.bootstrap(), boot.event_handlers, background=background,
                build_batch_handlers=getattr(boot, "event_batch_handlers", None),
                commuting=getattr(boot, "COMMUTING_EVENTS", frozenset()))
