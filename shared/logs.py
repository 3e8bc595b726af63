"""Structured JSON logs with the correlation id; ID and phone numbers masked in every line."""
from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone

from .clock import iso
from .masking import mask_text

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": iso(datetime.fromtimestamp(record.created, timezone.utc)),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        cid = correlation_id.get()
        if cid:
            entry["correlation_id"] = cid
        for key in ("event_type", "event_id", "order_no", "household_no", "policy_warning"):
            if hasattr(record, key):
                entry[key] = mask_text(str(getattr(record, key)))
        if record.exc_info:
            entry["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup(service: str, level: str = "INFO") -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("pika").setLevel(logging.WARNING)
