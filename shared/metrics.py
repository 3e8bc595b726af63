"""Prometheus metrics, one set for the suite; every series carries the `service` label.

Web processes run under gunicorn in multiprocess mode (PROMETHEUS_MULTIPROC_DIR); workers are one
process and serve their own registry on WORKER_METRICS_PORT.
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

HTTP_REQUESTS = Counter("http_requests", "HTTP requests", ["service", "method", "endpoint", "status"])
HTTP_LATENCY = Histogram("http_request_duration_seconds", "HTTP request latency", ["service", "method", "endpoint"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
EVENTS_PUBLISHED = Counter("events_published", "Events published to the bus", ["service", "type"])
EVENTS_CONSUMED = Counter("events_consumed", "Events handled successfully", ["service", "type"])
EVENTS_DUPLICATE = Counter("events_duplicate", "Redelivered or duplicated events skipped", ["service", "type"])
EVENTS_RETRIED = Counter("events_retried", "Events scheduled for another attempt", ["service", "type"])
EVENTS_DEAD = Counter("events_dead_lettered", "Events sent to the dead-letter queue", ["service", "type"])
EVENT_BATCHES = Counter("event_batches", "Batches of one event type handled together (outcome=batch) or one by one after the batch handler failed (outcome=one_by_one)", ["service", "type", "outcome"])
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Events written but not yet published", ["service", "county"],
                       multiprocess_mode="max")
OUTBOX_AGE = Gauge("outbox_oldest_age_seconds", "Age of the oldest unpublished event", ["service", "county"],
                   multiprocess_mode="max")
OUTBOX_DEAD = Gauge("outbox_dead_events", "Outbox events set aside because their payload cannot be built",
                    ["service", "county"], multiprocess_mode="max")
DLQ_DEPTH = Gauge("dead_letter_queue_depth", "Messages in the service's dead-letter queue", ["service"],
                  multiprocess_mode="max")
HEARTBEAT = Gauge("consumer_heartbeat_timestamp_seconds", "Last time the consumer loop proved alive", ["service"],
                  multiprocess_mode="max")
# notices' delivery (services/notices/service_layer/delivery.py); workers only, so no multiprocess mode
NOTICES_SENT = Counter("notices_sent", "Notices a channel accepted (SMS provider, webhook receiver, work list)",
                       ["service", "channel", "kind"])
NOTICES_DELIVERED = Counter("notices_delivered", "Notices delivered (SMS: by the provider's receipt)",
                            ["service", "channel", "kind"])
NOTICES_FAILED = Counter("notices_failed", "Failed notice sends (stage=attempt) and failed deliveries (stage=receipt)",
                         ["service", "channel", "kind", "stage"])
NOTICES_DEAD = Counter("notices_dead", "Notices given up after the last retry or a refusal no retry cures",
                       ["service", "channel", "kind"])
NOTICES_HELD = Counter("notices_held", "Notices held back (quiet hours, per-number daily limit, identical text)",
                       ["service", "channel", "reason"])
NOTICE_PROVIDER_LATENCY = Histogram("notice_provider_latency_seconds", "Time a channel took to answer a send",
                                    ["service", "channel"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
NOTICES_QUIET_BACKLOG = Gauge("notices_quiet_hours_backlog", "SMS notices waiting for the end of quiet hours",
                              ["service", "county"], multiprocess_mode="max")
READY = Gauge("service_ready", "1 when store and broker are reachable", ["service"], multiprocess_mode="min")


def exposition() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
