"""Benchmark: registry's outbox relay draining a roster import, against raw broker publishing in the
same run (issue 13: the relay was the bottleneck of a county-size import).

    .venv/bin/python -m bench.relay [--persons 30000]

1. imports `--persons` of the synthetic Dong'an roster (bench.registry_import's file) through the
   real use case into a fresh database, with no worker running;
2. times `OutboxRelay.run_once` until the outbox is empty (events/s), with the store commands it
   sent by kind;
3. baselines on the same broker, with envelopes of the same size: publishing them with one wait for
   confirms per 200 (`Publisher.publish_many`, the relay's own way) and with a wait per message
   (pika's blocking `basic_publish` in confirm mode, the relay's way before).
Prints one JSON object; the namespace's databases, exchanges and queues are removed afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections import Counter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=30_000)
    args = ap.parse_args()
    ns = "benchrelay" + uuid.uuid4().hex[:6]
    os.environ["BUS_NAMESPACE"] = ns
    os.environ["MONGO_DB"] = ns + "_registry"
    from shared.config import _local_env
    local = {**_local_env(), **os.environ}
    os.environ.setdefault("AMQP_URL", local["AMQP_URL"])
    os.environ["AMQP_URL_REGISTRY"] = os.environ["AMQP_URL"]  # the admin user may declare this namespace's queues

    from pymongo import monitoring

    class Commands(monitoring.CommandListener):
        def __init__(self):
            self.seen, self.names = Counter(), {}

        def started(self, e):
            coll = e.command.get(e.command_name)
            self.names[e.request_id] = f"{e.command_name} {coll if isinstance(coll, str) else ''}".strip()

        def succeeded(self, e):
            self.seen[self.names.pop(e.request_id, e.command_name)] += 1

        def failed(self, e):
            self.names.pop(e.request_id, None)

    cmds = Commands()
    monitoring.register(cmds)
    from bench.registry_import import make_file
    from services.registry import bootstrap as boot
    from services.registry.adapters.roster_files import RosterReader
    from services.registry.service_layer.importer import ProblemSink, run_import
    from shared.bus import Publisher, Topology
    from tools.suite import delete_bus

    c = boot.bootstrap()
    repo = boot.repository(c)
    path = make_file(args.persons)
    out = {"persons": args.persons, "namespace": ns}
    try:
        t = time.perf_counter()
        with open(path, "rb") as f:
            report = run_import(repo, c.policy, 2020, RosterReader(f, "csv", path.stat().st_size), principal=None,
                                sink=ProblemSink(None))
        out["import_s"] = round(time.perf_counter() - t, 2)
        out["households"] = report.households_created
        relay = c.relay()
        cmds.seen.clear()
        t, sent = time.perf_counter(), 0
        while True:
            n = relay.run_once()
            sent += n
            if not n and relay.db["outbox"].estimated_document_count() == 0:
                break
        secs = time.perf_counter() - t
        out["relay"] = {"events": sent, "s": round(secs, 2), "events_per_s": round(sent / secs, 1),
                        "store_commands": dict(cmds.seen)}
        relay.publisher.close()

        # baselines: envelopes of the same size straight to the broker
        sample = json.dumps({"id": "x" * 32, "type": "registry.household.registered", "payload": {"members": [
            {"person_id": "4311221980050612" + "3X", "name": "蒋建国", "relation": "户主", "category": "rural"}] * 3}})
        env = {"type": "registry.household.registered", "producer": "registry", "pad": sample}
        topo = Topology(ns, "registry")  # routed to the same consumers' queues as the relay's events
        pub = Publisher(os.environ["AMQP_URL"], topo)
        envs = [{**env, "id": f"b{i}"} for i in range(sent)]
        t = time.perf_counter()
        for i in range(0, len(envs), 200):
            pub.publish_many(envs[i:i + 200])
        batched = time.perf_counter() - t
        pub.close()
        import pika
        conn = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
        ch = conn.channel()
        ch.confirm_delivery()
        n_single = min(sent, 3000)
        t = time.perf_counter()
        for e in envs[:n_single]:
            ch.basic_publish(topo.exchange, e["type"], json.dumps(e).encode(), pika.BasicProperties(delivery_mode=2))
        single = time.perf_counter() - t
        conn.close()
        out["baseline"] = {"publish_many_per_s": round(sent / batched, 1),
                           "one_confirm_each_per_s": round(n_single / single, 1)}
        out["relay_vs_publish_many"] = round(out["relay"]["events_per_s"] / out["baseline"]["publish_many_per_s"], 3)
    finally:
        for name in c.client.list_database_names():
            if name.startswith(ns + "_"):
                c.client.drop_database(name)
        delete_bus(os.environ["AMQP_URL"], ns)
    print(json.dumps(out, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
