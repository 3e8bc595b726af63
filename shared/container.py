"""The parts every service's composition root builds the same way.

Nothing here connects at import time: a Container is built inside the app factory or the worker
main (gunicorn forks, so each process builds its own clients).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Callable

from .auth import TokenBook
from .bus import Consumer, PermanentFailure, Publisher, Topology, connection_params
from .clock import Clock, clock_from_env
from .config import Settings, env
from .outbox import OutboxRelay
from .errors import NotFound
from .policy import PolicyYear, load_catalogue, load_policy
from .store import IndexSpec, OutboxWriter, connect, ensure_indexes


@dataclass
class Container:
    """One county's wiring of a service: its database (the county's own: `<db>_<county code>`), its
    policy years, its outbox. The siblings (`counties()`) are the other counties the suite serves,
    sharing the client, the clock and `suite_db` (consumer markers and dead letters, one per service)."""
    service: str
    settings: Settings
    clock: Clock
    outbox_collections: tuple[str, ...] = ()
    indexes: tuple[IndexSpec, ...] = ()
    snapshots: dict = field(default_factory=dict)  # event type → builder of its payload from the document
    county_code: str = ""  # "" until build() picks the default county (the county of POLICY_FILE)
    shared: dict = field(default_factory=dict, repr=False)  # what the siblings share (client, siblings)

    @classmethod
    def build(cls, service: str, *, clock: Clock | None = None, outbox_collections=(), indexes=(),
              snapshots=None, county: str | None = None, settings: Settings | None = None) -> "Container":
        settings = settings or Settings.load(service)
        c = cls(service=service, settings=settings, clock=clock or clock_from_env(env("CLOCK_NOW"), env("CLOCK_FILE")),
                outbox_collections=tuple(outbox_collections), indexes=tuple(indexes), snapshots=dict(snapshots or {}))
        c.catalogue  # noqa: B018 — loads the policies, names the current year
        c.county_code = county or c.shared["current"][0]
        c.shared["siblings"] = {c.county_code: c}
        return c

    # ---- the counties the suite serves ---------------------------------------------------------

    @property
    def catalogue(self) -> dict[tuple[str, int], PolicyYear]:
        """Every county-year of POLICY_DIR, plus POLICY_FILE (read once per process)."""
        if "catalogue" not in self.shared:
            found: dict[tuple[str, int], PolicyYear] = {}
            directory = self.settings.policy_dir
            if directory is not None and directory.is_dir() and any(directory.glob("*.json")):
                found.update(load_catalogue(directory).policies)
            path = self.settings.policy_file.resolve()
            current = next((p for p in found.values() if directory and (directory / p.source_file).resolve() == path), None)
            if current is None:
                current = load_policy(path)
                found[current.key] = current
            self.shared["current"] = current.key
            only = [x.strip() for x in (env("SUITE_COUNTIES") or "").split(",") if x.strip()]
            self.shared["catalogue"] = {k: p for k, p in found.items() if not only or k[0] in only}
        return self.shared["catalogue"]

    def counties(self) -> dict[str, "Container"]:
        """county code → its container, for every county of the catalogue (SUITE_COUNTIES limits them)."""
        siblings = self.shared["siblings"]
        codes = sorted({code for code, _ in self.catalogue})
        for code in codes:
            if code not in siblings:
                siblings[code] = replace(self, county_code=code)
        return {code: siblings[code] for code in codes}

    def county(self, code: str | None) -> "Container":
        """The container of county `code`; an unknown county is a clear 404."""
        found = self.counties().get(code) if isinstance(code, str) else None
        if found is None:
            raise NotFound("COUNTY_UNKNOWN", f"本系统未载入区划代码为 {code} 的县（区）（已载入：{'、'.join(self.counties())}）",
                           {"county": code, "counties": list(self.counties())})
        return found

    # ---- store ---------------------------------------------------------------------------------

    @property
    def client(self):
        if "client" not in self.shared:
            self.shared["client"] = connect(self.settings.mongo_url, f"{self.settings.namespace}-{self.service}")
        return self.shared["client"]

    @property
    def suite_db(self):
        """The service's own database beside its counties': processed-event markers, dead letters."""
        return self.client[self.settings.mongo_db]

    @cached_property
    def db(self):
        db = self.client[f"{self.settings.mongo_db}_{self.county_code}"]
        ensure_indexes(db, self.indexes)
        return db

    @cached_property
    def outbox(self) -> OutboxWriter:
        return OutboxWriter(self.db, self.service, self.clock, snapshots=self.snapshots, county=self.county_code)

    # ---- policy years --------------------------------------------------------------------------

    @cached_property
    def policies(self) -> dict[int, PolicyYear]:
        """Every year of this county in the catalogue, by year."""
        return dict(sorted((year, p) for (code, year), p in self.catalogue.items() if code == self.county_code))

    @cached_property
    def policy(self) -> PolicyYear:
        """The county's current year, the default where a request names no year: POLICY_FILE's year for
        its county, the newest loaded year for the others."""
        current = self.catalogue.get(self.shared["current"])
        if current is not None and current.county_code == self.county_code:
            return current
        return self.policies[max(self.policies)]

    def policy_for(self, year) -> PolicyYear:
        """The policy of the year a request or event names; an unknown year is a clear 404."""
        p = self.policies.get(year) if isinstance(year, int) and not isinstance(year, bool) else None
        if p is None:
            raise NotFound("YEAR_UNKNOWN", f"没有{self.policy.county}{year}年度的参保政策（已载入：{'、'.join(map(str, self.policies))}）",
                           {"year": year, "county": self.county_code, "years": list(self.policies)})
        return p

    @cached_property
    def tokens(self) -> TokenBook:
        return TokenBook.load(self.settings.auth_tokens_file)

    @cached_property
    def topology(self) -> Topology:
        return Topology(self.settings.namespace, self.service)

    def consumer(self, handlers, topology: Topology | None = None, **options) -> Consumer:
        """The service's event consumer; `topology` and `options` (decode, dedupe, executor) serve
        other feeds of the same service."""
        options.setdefault("publishers", self.settings.bus_users)
        return Consumer(self.settings.amqp_url, topology or self.topology, self.suite_db, handlers,
                        max_attempts=int(env("CONSUMER_MAX_ATTEMPTS", "5")),
                        retry_base_ms=int(env("CONSUMER_RETRY_BASE_MS", "500")), clock=self.clock, **options)

    def extra_consumers(self) -> list[Consumer]:
        """Consumers beyond the event queue that the worker runs too (none unless a service adds some)."""
        return []

    def relay(self) -> OutboxRelay:
        """The relay of this county's outbox (the worker runs one per county)."""
        return OutboxRelay(self.db, Publisher(self.settings.amqp_url, self.topology), self.service, self.clock,
                           self.outbox_collections, snapshots=self.snapshots, dead_db=self.suite_db,
                           county=self.county_code)

    # readiness checks (used by /readyz and the worker's service_ready gauge)
    def store_ok(self) -> bool:
        self.client.admin.command("ping")
        return True

    def broker_ok(self) -> bool:
        import pika
        conn = pika.BlockingConnection(connection_params(self.settings.amqp_url))
        conn.close()
        return True


def county_handlers(c: Container, build: Callable[[Container], dict]) -> dict:
    """The suite's handler map: each event goes to the handlers `build` made for the county its
    envelope names. An event of no county, or of a county the suite does not serve, cannot succeed
    on a retry: it is dead-lettered at once with the reason."""
    maps = {code: build(cc) for code, cc in c.counties().items()}

    def route(event_type: str):
        def handle(env):
            handlers = maps.get(env.county)
            if handlers is None:
                raise PermanentFailure(f"event names county {env.county!r}; this suite serves {sorted(maps)}")
            return handlers[event_type](env)
        return handle
    return {t: route(t) for t in sorted({t for m in maps.values() for t in m})}


def county_batch_handlers(c: Container, build: Callable[[Container], dict]) -> dict:
    """The suite's batch handler map: a batch is split by the county its envelopes name (in order)
    and each part goes to that county's batch handler. An unknown county fails the batch, whose
    events then go one by one to the per-event handlers, which dead-letter that event alone."""
    maps = {code: build(cc) for code, cc in c.counties().items()}

    def route(event_type: str):
        def handle(envs):
            parts: dict = {}
            for env in envs:
                parts.setdefault(env.county, []).append(env)
            unknown = [code for code in parts if code not in maps]
            if unknown:
                raise PermanentFailure(f"events name counties {unknown!r}; this suite serves {sorted(maps)}")
            for code, part in parts.items():
                maps[code][event_type](part)
        return handle
    return {t: route(t) for t in sorted({t for m in maps.values() for t in m})}


def worker_main(container: Container, build_handlers, background=(), build_batch_handlers=None,
                commuting=frozenset()) -> None:
    """Shared body of every `python -m services.<svc>.entrypoints.worker`: one consumer for every
    county (`build_handlers(county container)` → that county's handlers; `build_batch_handlers`,
    the event types it can apply many at a time; `commuting`, see bus.Consumer), one outbox relay per county, and the service's
    own loops (`background`) once per county, all watched."""
    import threading
    from . import logs
    from .worker import run_worker
    logs.setup(container.service, env("LOG_LEVEL", "INFO"))
    counties = container.counties()
    handlers = county_handlers(container, build_handlers) if build_handlers else {}
    batch = county_batch_handlers(container, build_batch_handlers) if build_batch_handlers else {}
    consumer = container.consumer(handlers, batch_handlers=batch, commuting=commuting) if handlers else None
    extra = container.extra_consumers()
    threads = [threading.Thread(target=loop, args=(cc,), name=f"{loop.__name__}-{code}", daemon=True)
               for code, cc in counties.items() for loop in background]
    for t in threads:
        t.start()
    port = env("WORKER_METRICS_PORT")
    run_worker(container.service, consumer, [cc.relay() for cc in counties.values()], container.settings.amqp_url,
               container.topology.dead_queue if (handlers or extra) else None, int(port) if port else None,
               container.store_ok, extra_consumers=extra, background=threads)
