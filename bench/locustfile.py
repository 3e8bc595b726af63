"""Locust users for bench/locust_reads.py (run by it; not on its own: it needs a suite and its secrets).

One user class per endpoint, so each locust run loads one endpoint (`locust -f bench/locustfile.py
QuoteUser --host <payments>`); FastHttpUser (geventhttpclient) everywhere. Settings from the
environment, set by bench/locust_reads.py:

- BENCH_RATE_PER_USER: 0 → flat out (`constant(0)`); r > 0 → `constant_throughput(r)`: each user
  starts a request every 1/r s when the replies allow it (so U users offer U × r per second);
- BENCH_TOKEN: a county staff token (registry years, scoring progress and rankings);
- BENCH_GATEWAY_ID, BENCH_GATEWAY_SECRET, BENCH_TIMESTAMP: the gateway whose key signs the quotes
  (tools.clients.GatewayClient.headers, a fresh nonce per request) and the suite's pinned instant;
- BENCH_QUOTE_HOUSEHOLDS: comma-separated household numbers to quote (registered, unpaid);
- BENCH_COUNTY, BENCH_YEAR.

Runs in locust's own process: its gevent monkey-patching never meets the suite's pika.
"""
from __future__ import annotations

import json
import os
import random
from datetime import datetime, timezone

from locust import constant, constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

from tools.clients import GatewayClient

RATE = float(os.environ.get("BENCH_RATE_PER_USER") or 0)
COUNTY = os.environ.get("BENCH_COUNTY", "431122")
YEAR = int(os.environ.get("BENCH_YEAR", "2020"))
TOKEN = os.environ.get("BENCH_TOKEN", "")
HOUSEHOLDS = [h for h in os.environ.get("BENCH_QUOTE_HOUSEHOLDS", "").split(",") if h]
_ts = int(os.environ.get("BENCH_TIMESTAMP") or 0)
GATEWAY = GatewayClient("http://unused", os.environ.get("BENCH_GATEWAY_ID", ""), os.environ.get("BENCH_GATEWAY_SECRET", ""),
                        now=lambda: datetime.fromtimestamp(_ts, timezone.utc), county=COUNTY)


def wait():
    return constant_throughput(RATE) if RATE > 0 else constant(0)


class _Staff(FastHttpUser):
    abstract = True
    wait_time = wait()
    path = ""
    label = ""

    @task
    def read(self):
        self.client.get(self.path, name=self.label, headers={"Authorization": f"Bearer {TOKEN}"})


class YearsUser(_Staff):
    """The bare endpoint: registry's policy years (token check, policy already in memory, no store read)."""
    path, label = f"/v1/counties/{COUNTY}/years", "registry years (bare)"


class ProgressUser(_Staff):
    path, label = f"/v1/counties/{COUNTY}/progress/{YEAR}", "scoring progress"


class RankingsUser(_Staff):
    path, label = f"/v1/counties/{COUNTY}/rankings/{YEAR}", "scoring rankings"


class QuoteUser(FastHttpUser):
    """A gateway's signed quote for a registered household (a nonce insert and the household's reads)."""
    wait_time = wait()
    path = f"/v1/counties/{COUNTY}/quotes"

    @task
    def quote(self):
        body = json.dumps({"household_no": random.choice(HOUSEHOLDS), "year": YEAR}, ensure_ascii=False).encode()
        self.client.post(self.path, data=body, headers=GATEWAY.headers("POST", self.path, body), name="payments quote")
