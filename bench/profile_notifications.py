"""Where a payment notification's time goes inside the payments web app (cProfile, one thread).

    .venv/bin/python -m bench.profile_notifications [--n 300] [--top 40]

Runs the Flask app in this process against the real store and broker (namespace and database of
its own, removed at the end): households are fed to the payments read model, one order is made
per household, then N signed notifications are profiled. Prints the functions by cumulative time
and the store commands per notification. A development aid beside bench.notifications.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import secrets
import tempfile
import uuid
from collections import Counter
from pathlib import Path

from shared.config import _local_env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    local = _local_env()
    ns = "prof" + uuid.uuid4().hex[:8]
    d = Path(tempfile.mkdtemp(prefix="prof-"))
    secret = secrets.token_hex(16)
    (d / "tokens.json").write_text(json.dumps({"tokens": []}))
    (d / "gw.json").write_text(json.dumps({"gateways": [
        {"id": "bank-a", "secret": secret, "kind": "bank", "channels": ["mobile_app"]}]}))
    trace = d / "trace.tsv"
    os.environ.update({"MONGO_URL": os.environ.get("MONGO_URL") or local["MONGO_URL"],
                       "AMQP_URL": os.environ.get("AMQP_URL") or local["AMQP_URL"], "BUS_NAMESPACE": ns,
                       "MONGO_DB": f"{ns}_payments", "AUTH_TOKENS_FILE": str(d / "tokens.json"),
                       "GATEWAY_KEYS_FILE": str(d / "gw.json"), "LOG_LEVEL": "WARNING", "STORE_TRACE": str(trace)})
    from pymongo import MongoClient

    from bench.notifications import CLOCK_NOW, household
    from services.payments import bootstrap as boot
    from services.payments.entrypoints.flask_app import create_app
    from shared import signing
    from shared.clock import FixedClock, parse_instant
    from tools.suite import delete_bus

    now = parse_instant(CLOCK_NOW)
    clock = FixedClock(now)
    ts = str(int(now.timestamp()))
    try:
        repo = boot.repository(boot.bootstrap(clock))
        app = create_app(clock).test_client()

        def post(path: str, payload: dict, extra: dict | None = None):
            body = json.dumps(payload, ensure_ascii=False).encode()
            nonce = secrets.token_hex(16)
            return app.post(path, data=body, headers={
                "X-Gateway-Id": "bank-a", "X-Timestamp": ts, "X-Nonce": nonce, "Content-Type": "application/json",
                "X-Signature": signing.sign(secret, "POST", path, ts, nonce, body), **(extra or {})})

        orders = []
        for i in range(args.n):
            h = household(i)
            payload = {**{k: h[k] for k in ("household_no", "year", "township", "village")}, "county": "东安县",
                       "head_name": h["members"][0]["name"],
                       "members": [{"person_id": m["id_number"], "name": m["name"], "relation": m["relation"],
                                    "category": "rural"} for m in h["members"]]}
            repo.upsert_household(payload, f"{i:08d}")
            r = post("/v1/counties/431122/orders", {"household_no": h["household_no"], "year": 2020, "channel": "mobile_app"},
                     {"Idempotency-Key": f"profile-key-{i:06d}"})
            assert r.status_code == 201, r.get_json()
            orders.append(r.get_json())
        start = trace.stat().st_size
        prof = cProfile.Profile()
        prof.enable()
        for o in orders:
            r = post("/v1/counties/431122/notifications", {"order_no": o["order_no"], "transaction_id": "T" + secrets.token_hex(8),
                                           "amount_fen": o["amount_fen"], "paid_at": CLOCK_NOW})
            assert r.status_code == 200, r.get_json()
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)
        with open(trace, encoding="utf-8") as f:
            f.seek(start)
            ops = Counter("\t".join(line.split("\t")[1:]).strip() for line in f)
        for k, v in ops.most_common():
            print(f"{v / len(orders):5.2f}  {k}")
        return 0
    finally:
        for name in MongoClient(os.environ["MONGO_URL"]).list_database_names():  # each county's own
            if name.startswith(f"{ns}_payments"):
                MongoClient(os.environ["MONGO_URL"]).drop_database(name)
        delete_bus(os.environ["AMQP_URL"], ns)


if __name__ == "__main__":
    raise SystemExit(main())
