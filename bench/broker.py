"""Baseline: raw broker publish and consume, with nothing of the suite in between.

    .venv/bin/python -m bench.broker [--messages 3000] [--size 600]

What one hop through RabbitMQ costs on this machine, beside the suite's event latencies
(notification → registry's enrolment event → scoring's count: each of them crosses the broker,
through an outbox and a relay, more than once). On a durable queue of its own with a unique name
(`bench.broker.<hex>`, deleted at the end), through the default exchange:

- one publisher connection in confirm mode sends `--messages` persistent messages (delivery_mode 2)
  of `--size` bytes flat out, waiting for the broker's confirm of each before the next (pika's
  blocking `basic_publish`, the way a message is made safe one at a time);
- one consumer connection (another thread, prefetch 100, manual acks, one ack per message) receives
  them.

Reported: published (confirmed) per second, consumed per second (first publish → last delivery),
and the latency of each message from just before its publish to its delivery, p50 / p99 / max.
Prints one JSON object (`--out FILE` appends it to FILE too).
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from datetime import datetime

import pika

from shared.config import _local_env


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def measure(amqp_url: str, messages: int, size: int) -> dict:
    queue = f"bench.broker.{uuid.uuid4().hex[:12]}"
    pub_conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    pub = pub_conn.channel()
    pub.queue_declare(queue, durable=True)
    received: dict[int, float] = {}
    ready, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
            ch = conn.channel()
            ch.basic_qos(prefetch_count=100)
            ready.set()
            for method, _props, body in ch.consume(queue, inactivity_timeout=0.2):
                if method is not None:
                    received[int(body[:12])] = time.time()
                    ch.basic_ack(method.delivery_tag)
                if len(received) >= messages or done.is_set():
                    break
            ch.cancel()
            conn.close()
        except BaseException as e:  # noqa: BLE001 — reported by the main thread
            errors.append(e)
            ready.set()

    consumer = threading.Thread(target=consume, daemon=True)
    try:
        consumer.start()
        ready.wait(10)
        pub.confirm_delivery()
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        pad = b"x" * max(0, size - 12)
        sent: list[float] = []
        t0 = time.time()
        for i in range(messages):
            sent.append(time.time())
            pub.basic_publish("", queue, b"%012d" % i + pad, props, mandatory=True)
        t_published = time.time()
        deadline = time.monotonic() + 60
        while len(received) < messages and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        done.set()
        consumer.join(10)
        if errors:
            raise errors[0]
        lat = [(received[i] - sent[i]) * 1000 for i in range(messages) if i in received]
        last = max(received.values()) if received else float("nan")
        return {"queue": queue, "messages": messages, "size_bytes": size, "persistent": True,
                "publisher_confirms": "one wait per message", "consumed": len(received),
                "published_per_s": round(messages / (t_published - t0), 1),
                "consumed_per_s": round(len(received) / (last - t0), 1) if received else None,
                "latency_ms_p50": round(percentile(lat, 50), 2), "latency_ms_p99": round(percentile(lat, 99), 2),
                "latency_ms_max": round(max(lat), 2) if lat else None}
    finally:
        done.set()
        try:
            pub.queue_delete(queue)
        finally:
            pub_conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--size", type=int, default=600, help="bytes per message (an event envelope is a few hundred)")
    ap.add_argument("--out", default=None, help="append the JSON report to this file too")
    args = ap.parse_args()
    amqp_url = os.environ.get("AMQP_URL") or _local_env()["AMQP_URL"]
    report = {"bench": "broker", "at": datetime.now().astimezone().isoformat(timespec="seconds"),
              **measure(amqp_url, args.messages, args.size)}
    print(json.dumps(report, ensure_ascii=False, indent=2))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(report, ensure_ascii=False) + "\n")
    return 0 if report["consumed"] == args.messages else 1


if __name__ == "__main__":
    raise SystemExit(main())
