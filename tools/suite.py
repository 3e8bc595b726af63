"""Start and stop the five services (web under gunicorn + worker each) on this machine.

    python -m tools.suite start|stop|status

Used by the README's demo command and by the end-to-end tests (which start a copy with their own
bus namespace, databases and ports so they never touch a running demo).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from shared.auth import token_hash
from shared.config import ROOT, _local_env

SERVICES = ("registry", "payments", "subsidy", "scoring", "notices")
PYTHON = sys.executable


@dataclass
class Suite:
    namespace: str = "enrol"
    web_base_port: int = 8100
    worker_base_port: int = 9100
    var: Path = ROOT / "var"
    extra_env: dict[str, str] = field(default_factory=dict)
    web_workers: int = 2

    def port(self, svc: str) -> int:
        return self.web_base_port + SERVICES.index(svc) + 1

    def url(self, svc: str) -> str:
        return f"http://127.0.0.1:{self.port(svc)}"

    @property
    def run_dir(self) -> Path:
        return self.var / "run" / self.namespace

    # ---- secrets (generated locally, never in git) -------------------------------------
    # Who the demo and test suites hold tokens for (shared/auth.py's role table says what each may do):
    # name → (role, township, granted permissions, services that accept the token).
    COUNTY = "431122"  # the demo's and e2e tests' county: Dong'an (东安县)
    TOKENS = {"county": ("county", None, None, None),
              "township:白牙市镇": ("township", "白牙市镇", None, None),
              "tax-bureau": ("system", None, ["payments:audit"], ["payments"]),
              "civil_affairs": ("system", None, ["identities:submit", "identities:read"], ["subsidy"])}
    # gateway id → (kind, channels, townships, villages); the first one is the tests' bank.
    GATEWAYS = {"test-bank": ("bank", ["mobile_app", "bank_counter", "pos"], [], []),
                "test-collector": ("village_collector", ["village_cash"], [], ["白牙市镇/五一村"])}

    def secrets(self) -> dict:
        """Tokens and gateway keys for this suite; the plain values stay under var/ for the demo and tests."""
        d = self.var / "secrets"
        d.mkdir(parents=True, exist_ok=True)
        plain = d / f"{self.namespace}.plain.json"
        data = json.loads(plain.read_text()) if plain.exists() else {"tokens": {}, "gateways": {}}
        for name in self.TOKENS:  # an older file gains the subjects added since
            data["tokens"].setdefault(name, secrets.token_urlsafe(24))
        for gid in self.GATEWAYS:
            data["gateways"].setdefault(gid, secrets.token_urlsafe(32))
        plain.write_text(json.dumps(data, ensure_ascii=False))
        plain.chmod(0o600)
        tokens = []
        for name, tok in data["tokens"].items():
            role, township, perms, services = self.TOKENS.get(name, (name.partition(":")[0], name.partition(":")[2] or None,
                                                                     None, None))
            tokens.append({"sha256": token_hash(tok), "subject": name, "role": role, "county": self.COUNTY,
                           **({"township": township} if township else {}),
                           **({"permissions": perms} if perms is not None else {}),
                           **({"services": services} if services is not None else {})})
        (d / f"{self.namespace}.auth_tokens.json").write_text(json.dumps({"tokens": tokens}, ensure_ascii=False))
        gateways = []
        for gid, s in data["gateways"].items():
            kind, channels, townships, villages = self.GATEWAYS.get(gid, ("bank", ["mobile_app", "bank_counter", "pos"],
                                                                          [], []))
            gateways.append({"id": gid, "secret": s, "kind": kind, "channels": channels, "townships": townships,
                             "villages": villages, "counties": [self.COUNTY]})
        (d / f"{self.namespace}.gateway_keys.json").write_text(json.dumps({"gateways": gateways}, ensure_ascii=False))
        for f in d.iterdir():
            f.chmod(0o600)
        return data

    def env(self, svc: str) -> dict[str, str]:
        """var/local.env fills in what the environment leaves unset: real environment variables win
        (as in shared.config), and the suite's own settings win over both."""
        e = {**_local_env(), **os.environ, **self.extra_env}
        e.update({
            "BUS_NAMESPACE": self.namespace,
            "MONGO_DB": f"{self.namespace}_{svc}",
            "AUTH_TOKENS_FILE": str(self.var / "secrets" / f"{self.namespace}.auth_tokens.json"),
            "GATEWAY_KEYS_FILE": str(self.var / "secrets" / f"{self.namespace}.gateway_keys.json"),
            "PYTHONPATH": str(ROOT),
        })
        return e

    # ---- processes -----------------------------------------------------------------------
    def start(self, wait: bool = True) -> None:
        self.secrets()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.check_ports()
        for svc in SERVICES:
            self.start_web(svc)
            self.start_worker(svc)
        if wait:
            self.wait_ready()

    def check_ports(self) -> None:
        """Refuse to start where another program (another checkout's suite, above all) holds one of
        this suite's ports: its services would fail to bind while callers talk to the other suite."""
        import socket
        for svc in SERVICES:
            for name, port in ((f"{svc}-web", self.port(svc)), (f"{svc}-worker", self.worker_base_port + SERVICES.index(svc) + 1)):
                pidfile = self.run_dir / f"{name}.pid"
                if pidfile.exists() and _alive(int(pidfile.read_text())):
                    continue  # ours, already running
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        raise RuntimeError(f"port {port} ({name}) is in use by another program (another checkout's "
                                           f"suite?): stop it, or set SUITE_WEB_BASE_PORT / SUITE_WORKER_BASE_PORT")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        pidfile = self.run_dir / f"{name}.pid"
        if pidfile.exists() and _alive(int(pidfile.read_text())):
            return
        log = open(self.run_dir / f"{name}.log", "ab")
        # a session and process group of its own (a gunicorn master with its workers): stop_process
        # signals the whole group, and the caller's terminal signals never reach it
        p = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        pidfile.write_text(str(p.pid))

    def start_web(self, svc: str) -> None:
        env = self.env(svc)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.run_dir / "prom" / svc)
        env["WEB_CONCURRENCY"] = str(self.web_workers)
        self._spawn(f"{svc}-web", [PYTHON, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
                                   "-b", f"127.0.0.1:{self.port(svc)}",
                                   f"services.{svc}.entrypoints.flask_app:create_app()"], env)

    def start_worker(self, svc: str) -> None:
        env = self.env(svc)
        env["WORKER_METRICS_PORT"] = str(self.worker_base_port + SERVICES.index(svc) + 1)
        self._spawn(f"{svc}-worker", [PYTHON, "-m", f"services.{svc}.entrypoints.worker"], env)

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        pidfile = self.run_dir / f"{name}.pid"
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text())
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)

    def stop(self) -> None:
        for svc in SERVICES:
            self.stop_process(f"{svc}-worker")
            self.stop_process(f"{svc}-web")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for svc in SERVICES:
            while True:
                try:
                    if requests.get(self.url(svc) + "/readyz", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    log = (self.run_dir / f"{svc}-web.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{svc} not ready after {timeout}s:\n{log}")
                time.sleep(0.2)

    def status(self) -> dict[str, bool]:
        out = {}
        for svc in SERVICES:
            for kind in ("web", "worker"):
                pidfile = self.run_dir / f"{svc}-{kind}.pid"
                out[f"{svc}-{kind}"] = pidfile.exists() and _alive(int(pidfile.read_text()))
        return out


def delete_bus(amqp_url: str, ns: str) -> None:
    """Remove a namespace's queues and exchanges (a test module's or a benchmark's own bus)."""
    import pika
    try:
        conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    except Exception:  # noqa: BLE001 — nothing to clean when the broker is gone
        return
    ch = conn.channel()
    queues = [f"{ns}.{svc}.{q}" for svc in (*SERVICES, "probe") for q in ("events", "retry", "dead")]
    queues += [f"{ns}.subsidy.identity", f"{ns}.subsidy.identity.retry"]  # the civil-affairs identity feed
    for name in queues:
        try:
            ch.queue_delete(name)
        except Exception:  # noqa: BLE001 — a failed delete closes the channel
            ch = conn.channel()
    for ex in ("events", "dlx", "identity.in"):
        try:
            ch.exchange_delete(f"{ns}.{ex}")
        except Exception:  # noqa: BLE001
            ch = conn.channel()
    conn.close()


def free_port_block(size: int = 20) -> int:
    """A block of free loopback ports, so a test or benchmark suite never collides with a demo or
    a leftover suite."""
    import random
    import socket
    for _ in range(50):
        base = random.randrange(20000, 60000, 100)
        socks = []
        try:
            for p in range(base, base + size):  # the base too: some callers use it
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def from_env(**kw) -> Suite:
    """The demo's suite, on SUITE_WEB_BASE_PORT / SUITE_WORKER_BASE_PORT when set (`./run demo`
    sets them when another checkout's suite holds the default ports)."""
    return Suite(web_base_port=int(os.environ.get("SUITE_WEB_BASE_PORT", "8100")),
                 worker_base_port=int(os.environ.get("SUITE_WORKER_BASE_PORT", "9100")), **kw)


def wait_quiet(amqp_url: str, mongo_url: str, ns: str, timeout: float = 300) -> tuple[float, dict[str, float]]:
    """Until every service's queue and outbox (each county's database) is empty twice in a row (a
    benchmark's baseline is measured on a quiet suite, the simulator's season starts on one). Also
    returns, per service, how long its queue or outbox stayed busy."""
    from pymongo import MongoClient
    from shared.bus import queue_depth
    client = MongoClient(mongo_url)
    dbs = {svc: [d for d in client.list_database_names() if d.startswith(f"{ns}_{svc}")] for svc in SERVICES}
    t0 = time.monotonic()
    calm = 0
    busy_until: dict[str, float] = {}
    while calm < 2 and time.monotonic() - t0 < timeout:
        busy = [svc for svc in SERVICES if (queue_depth(amqp_url, f"{ns}.{svc}.events") or 0) > 0
                or any(client[d]["outbox"].estimated_document_count() > 0 for d in dbs[svc])]
        for svc in busy:
            busy_until[svc] = round(time.monotonic() - t0, 1)
        calm = 0 if busy else calm + 1
        time.sleep(0.5)
    client.close()
    return time.monotonic() - t0, busy_until


def own_suite(web_workers: int, **env: str) -> tuple[Suite, str, str]:
    """A suite (not started) on a namespace (`bench<hex>`), databases and free ports of its own, on
    the local broker and store, as the benchmarks run it; with the store's and the broker's URLs."""
    import uuid
    local = _local_env()
    mongo_url = os.environ.get("MONGO_URL") or local["MONGO_URL"]
    amqp_url = os.environ.get("AMQP_URL") or local["AMQP_URL"]
    base = free_port_block()
    suite = Suite(namespace="bench" + uuid.uuid4().hex[:8], web_base_port=base, worker_base_port=base + 10,
                  web_workers=web_workers,
                  extra_env={"MONGO_URL": mongo_url, "AMQP_URL": amqp_url, "LOG_LEVEL": "WARNING", **env})
    return suite, mongo_url, amqp_url


def main(argv: list[str]) -> int:
    extra = {}
    for name in ("CLOCK_NOW", "CLOCK_FILE"):  # CLOCK_FILE: a clock a simulator moves (shared.clock.FileClock)
        if os.environ.get(name):
            extra[name] = os.environ[name]
    suite = from_env(extra_env=extra)
    cmd = argv[1] if len(argv) > 1 else "status"
    if cmd == "start":
        suite.start()
        print("suite ready: " + ", ".join(f"{s} {suite.url(s)}" for s in SERVICES))
    elif cmd == "stop":
        suite.stop()
        print("suite stopped")
    elif cmd == "status":
        for name, alive in suite.status().items():
            print(f"{name:18s} {'running' if alive else 'stopped'}")
    else:
        print("usage: python -m tools.suite start|stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
