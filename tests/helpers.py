"""Test helpers that use the real broker and store (no mocks of either)."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import date

import pika
from pymongo import monitoring

from tools.ids import make_id

DONGAN = "431122"  # 东安县, the county of most tests


def signed_post(client, path: str, payload=None, *, secret: str, at, gateway: str = "bank-a",
                raw: bytes | None = None, nonce: str | None = None, ts: str | None = None, extra=None,
                content_type: str = "application/json"):
    """A gateway's signed POST (docs/gateway-signing.md) through a Flask test client; `at` is the
    instant whose Unix seconds go into X-Timestamp (the app's clock, pinned in the tests)."""
    import secrets as _secrets
    from shared import signing
    body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
    ts = ts or str(int(at.timestamp()))
    nonce = nonce or _secrets.token_hex(16)
    h = {"X-Gateway-Id": gateway, "X-Timestamp": ts, "X-Nonce": nonce, "Content-Type": content_type,
         "X-Signature": signing.sign(secret, "POST", path, ts, nonce, body), **(extra or {})}
    return client.post(path, data=body, headers=h)


@contextmanager
def running(loop_owner):
    """Run a Consumer or OutboxRelay in a thread for the duration of the block."""
    t = threading.Thread(target=loop_owner.run, daemon=True)
    t.start()
    try:
        yield loop_owner
    finally:
        loop_owner.stop()
        t.join(timeout=15)


class Probe:
    """A queue of the test's own, bound to the namespace exchange, to see what was published."""

    def __init__(self, amqp_url: str, ns: str, keys: list[str]):
        self.conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self.ch = self.conn.channel()
        self.ch.exchange_declare(f"{ns}.events", "topic", durable=True)
        self.queue = self.ch.queue_declare("", exclusive=True).method.queue
        for k in keys:
            self.ch.queue_bind(self.queue, f"{ns}.events", routing_key=k)

    def take(self, n: int, timeout: float = 10) -> list[dict]:
        out, deadline = [], time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            method, _props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                time.sleep(0.05)
                continue
            out.append(json.loads(body))
        return out

    def close(self):
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass


def publish(amqp_url: str, exchange: str, routing_key: str, body: bytes, message_id: str | None = None,
            user_id: str | None = "") -> None:
    """Publish as the URL's user (`user_id` set to it, as the suite's publishers do; None: unset)."""
    params = pika.URLParameters(amqp_url)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(exchange, routing_key, body, pika.BasicProperties(
        delivery_mode=2, message_id=message_id, type=routing_key,
        user_id=params.credentials.username if user_id == "" else user_id))
    conn.close()


def queue_messages(amqp_url: str, queue: str) -> list[tuple[dict, bytes]]:
    """Read (and requeue) every message in a queue: headers and body."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = conn.channel()
    out, tags = [], []
    while True:
        method, props, body = ch.basic_get(queue)
        if method is None:
            break
        out.append((props.headers or {}, body))
        tags.append(method.delivery_tag)
    for t in tags:
        ch.basic_nack(t, requeue=True)
    conn.close()
    return out


def village_of(township: str) -> str:
    from shared.config import ROOT
    from shared.policy import load_policy
    return load_policy(ROOT / "policies" / "dongan-2020.json").township(township).villages[0]


def household_payload(no: str, township: str = "花桥镇", n: int = 3, seed: int = 0) -> dict:
    people = [("户主", "M"), ("配偶", "F"), ("子女", "M"), ("子女", "F"), ("父母", "F")][:n]
    return {"household_no": no, "year": 2020, "township": township, "village": village_of(township),
            "head_phone": "13900001111",
            "members": [{"id_number": make_id(date(1960 + i, 1 + i, 1 + seed % 28), seed * 7 + i, s),
                         "name": f"成员{i}", "relation": r, "sex": s} for i, (r, s) in enumerate(people)]}


def declare(container, handlers) -> None:
    """Declare a service's queues before publishing to it (as its worker would at start)."""
    conn = pika.BlockingConnection(pika.URLParameters(container.settings.amqp_url))
    container.topology.declare(conn.channel(), consumes=list(handlers))
    conn.close()


def shifted_year(raw: dict, years: int = 1) -> dict:
    """A test-only copy of a policy year with every date moved `years` on (figures unchanged)."""
    def move(d: str) -> str:
        return f"{int(d[:4]) + years}{d[4:]}"
    out = json.loads(json.dumps(raw))
    out["year"] = raw["year"] + years
    out["source"] = f"TEST ONLY: {raw['source']} — dates shifted {years} year(s); not a real document"
    out["window"] = {**raw["window"], "opens": move(raw["window"]["opens"]), "closes": move(raw["window"]["closes"])}
    if raw.get("benefit_period"):
        out["benefit_period"] = {**raw["benefit_period"], "starts": move(raw["benefit_period"]["starts"]),
                                 "ends": move(raw["benefit_period"]["ends"])}
    if (raw.get("subsidy") or {}).get("new_hardship_after"):
        out["subsidy"]["new_hardship_after"] = move(raw["subsidy"]["new_hardship_after"])
    return out


def shifted_policy(d, years: int):
    """Dong'an 2020 with its dates moved `years` on, written into folder `d` as a test-only policy file
    (its places file named by absolute path); returns the file's path."""
    from pathlib import Path
    from shared.config import ROOT
    raw = json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8"))
    raw["places_file"] = str(ROOT / "policies" / raw["places_file"])
    out = shifted_year(raw, years)
    path = Path(d) / f"dongan-{out['year']}-test.json"
    path.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    return path


def run_until(until, what: str, *, relays=(), consumers=(), timeout: float = 30) -> None:
    """Run these containers' outbox relays and event consumers (queues declared first, handlers from
    each service's bootstrap) until `until()` holds: the events between services, for real. As the
    workers do: a relay per county of the suite, and one consumer routing each event to its county."""
    import importlib
    from contextlib import ExitStack
    from shared.container import county_handlers
    with ExitStack() as stack:
        for c in relays:
            for cc in c.counties().values():
                stack.enter_context(running(cc.relay()))
        for c in consumers:
            handlers = county_handlers(c, importlib.import_module(f"services.{c.service}.bootstrap").event_handlers)
            declare(c, handlers)
            stack.enter_context(running(c.consumer(handlers)))
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, f"not seen: {what}"
            time.sleep(0.05)


@contextmanager
def secret_files(d, tokens: list[dict] | None = None, gateways: list[dict] | None = None):
    """Write a module's staff tokens and gateway keys under `d` and point the settings at them for
    as long as the block runs (the files the deployment keeps outside the repository)."""
    import os
    files = {}
    if tokens is not None:
        (d / "tokens.json").write_text(json.dumps({"tokens": tokens}, ensure_ascii=False))
        files["AUTH_TOKENS_FILE"] = str(d / "tokens.json")
    if gateways is not None:
        # a gateway key names the counties it serves; the tests' gateways serve Dong'an unless they say
        (d / "gw.json").write_text(json.dumps({"gateways": [{"counties": [DONGAN], **g} for g in gateways]}))
        files["GATEWAY_KEYS_FILE"] = str(d / "gw.json")
    old = {k: os.environ.get(k) for k in files}
    os.environ.update(files)
    try:
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


class OwnStore:
    """A FerretDB launcher of a test's own (the one deploy/local.sh builds), on a free port and a
    data directory of its own, to stop and start at will."""

    def __init__(self, data_dir, *flags: str):
        from tools.suite import ROOT, free_port_block
        self.launcher = ROOT / "deploy" / "ferretdb" / "bin" / "ferretdb-launcher"
        assert self.launcher.exists(), "deploy/local.sh install builds the FerretDB launcher"
        self.data_dir, self.flags = data_dir, flags
        self.port = free_port_block(2) + 1
        self.url = f"mongodb://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([str(self.launcher), "-listen", f"127.0.0.1:{self.port}", "-data",
                                      str(self.data_dir), *self.flags],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("own FerretDB did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)


class OwnBroker:
    """A RabbitMQ node of a test's own (issue 9 item 13): its own node name, free AMQP and
    distribution ports, data and log folders under a temporary folder the rabbitmq user owns, and
    a user of its own; stop() and restart() touch this node only, never the shared one. Started
    like deploy/local.sh starts the shared node (Debian's wrapper, setsid); the Erlang cookie and
    epmd are the machine's, shared with the other nodes (harmless). Removed at exit."""

    def __init__(self):
        import atexit
        import secrets
        import shutil
        import tempfile
        import uuid
        from pathlib import Path
        from tools.suite import free_port_block
        base = free_port_block(3)
        self.port, self.dist_port = base + 1, base + 2
        self.node = f"enroltest-{uuid.uuid4().hex[:8]}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="enroltest-rabbit-"))
        self.dir.chmod(0o755)  # the broker runs as the rabbitmq user
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\nheartbeat = 30\n")
        shutil.chown(self.dir, "rabbitmq", "rabbitmq")
        for f in self.dir.iterdir():
            shutil.chown(f, "rabbitmq", "rabbitmq")
        self.password = secrets.token_hex(16)  # hex: a leading "-" would read as a rabbitmqctl option
        self.user = "enroltest"
        self.url = f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/%2F"
        self.proc: subprocess.Popen | None = None
        self._users_made = False
        atexit.register(self.close)

    def _env(self) -> dict[str, str]:
        import os
        d = self.dir
        return {**os.environ, "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(d / "mnesia"), "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_PID_FILE": str(d / "rabbit.pid"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq")}

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["rabbitmqctl", "-q", "-n", self.node, *args], capture_output=True, text=True,
                              check=check, timeout=120)

    def running(self) -> bool:
        return self.ctl("status", check=False).returncode == 0

    def start(self, timeout: float = 120) -> None:
        self.proc = subprocess.Popen(["rabbitmq-server"], env=self._env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.running():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"own RabbitMQ node {self.node} did not start (logs in {self.dir / 'log'})")
            time.sleep(1)
        self.ctl("await_startup")
        if not self._users_made:
            self.ctl("add_user", self.user, self.password)
            self.ctl("set_user_tags", self.user, "administrator")
            self.ctl("set_permissions", "-p", "/", self.user, ".*", ".*", ".*")
            self._users_made = True

    def stop(self) -> None:
        self.ctl("stop", check=False)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                import os
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        import shutil
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class StoreCommands(monitoring.CommandListener):
    """The names of the store commands a client sends while `on` (what a batch costs the store).
    Pass it in `event_listeners`, or `monitoring.register` it before a container makes its client."""

    def __init__(self):
        self.names: list[str] = []
        self.on = True

    def started(self, event):
        if self.on:
            self.names.append(event.command_name)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def sizes_seen(batch_handler):
    """A batch handler that records the size of each batch it is given, and that list."""
    sizes: list[int] = []

    def handle(envs):
        sizes.append(len(envs))
        return batch_handler(envs)
    return handle, sizes
