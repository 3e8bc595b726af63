"""Entry point body of every service worker: `python -m services.<svc>.entrypoints.worker`.

Workers serve their own metrics registry; gunicorn's multiprocess directory is for web processes,
so it is dropped before prometheus_client is first imported.
"""
import importlib
import os


def main(service: str) -> None:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from .container import worker_main
    boot = importlib.import_module(f"services.{service}.bootstrap")
    c = boot.bootstrap()
    worker_main(c, boot.event_handlers(c))
