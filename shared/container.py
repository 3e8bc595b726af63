"""The parts every service's composition root builds the same way.

Nothing here connects at import time: a Container is built inside the app factory or the worker
main (gunicorn forks, so each process builds its own clients).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .auth import TokenBook
from .bus import Consumer, Publisher, Topology, connection_params
from .clock import Clock, clock_from_env
from .config import Settings, env
from .outbox import OutboxRelay
from .errors import NotFound
from .policy import Catalogue, PolicyYear, load_catalogue, load_policy
from .store import IndexSpec, OutboxWriter, connect, ensure_indexes


@dataclass
class Container:
    service: str
    settings: Settings
    clock: Clock
    outbox_collections: tuple[str, ...] = ()
    indexes: tuple[IndexSpec, ...] = ()
    snapshots: dict = field(default_factory=dict)  # event type → builder of its payload from the document
    _client: object = field(default=None, repr=False)

    @classmethod
    def build(cls, service: str, *, clock: Clock | None = None, outbox_collections=(), indexes=(),
              snapshots=None) -> "Container":
        settings = Settings.load(service)
        return cls(service=service, settings=settings, clock=clock or clock_from_env(env("CLOCK_NOW")),
                   outbox_collections=tuple(outbox_collections), indexes=tuple(indexes), snapshots=dict(snapshots or {}))

    @cached_property
    def client(self):
        return connect(self.settings.mongo_url, f"{self.settings.namespace}-{self.service}")

    @cached_property
    def db(self):
        db = self.client[self.settings.mongo_db]
        ensure_indexes(db, self.indexes)
        return db

    @cached_property
    def outbox(self) -> OutboxWriter:
        return OutboxWriter(self.db, self.service, self.clock, snapshots=self.snapshots)

    @cached_property
    def policy(self) -> PolicyYear:
        """The current year (POLICY_FILE): the default where a request names no year."""
        return load_policy(self.settings.policy_file)

    @cached_property
    def policies(self) -> dict[int, PolicyYear]:
        """Every year of the suite's county (the county of POLICY_FILE) in the catalogue (POLICY_DIR),
        by year; the current year's file counts even when it lies outside the directory."""
        found = {self.policy.year: self.policy}
        directory = self.settings.policy_dir
        if directory is not None and directory.is_dir() and any(directory.glob("*.json")):
            catalogue: Catalogue = load_catalogue(directory)
            for (county, year), p in catalogue.policies.items():
                if county == self.policy.county and year != self.policy.year:
                    found[year] = p
        return dict(sorted(found.items()))

    def policy_for(self, year) -> PolicyYear:
        """The policy of the year a request or event names; an unknown year is a clear 404."""
        p = self.policies.get(year) if isinstance(year, int) and not isinstance(year, bool) else None
        if p is None:
            raise NotFound("YEAR_UNKNOWN", f"没有{self.policy.county}{year}年度的参保政策（已载入：{'、'.join(map(str, self.policies))}）",
                           {"year": year, "county": self.policy.county, "years": list(self.policies)})
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
        return Consumer(self.settings.amqp_url, topology or self.topology, self.db, handlers,
                        max_attempts=int(env("CONSUMER_MAX_ATTEMPTS", "5")),
                        retry_base_ms=int(env("CONSUMER_RETRY_BASE_MS", "500")), clock=self.clock, **options)

    def extra_consumers(self) -> list[Consumer]:
        """Consumers beyond the event queue that the worker runs too (none unless a service adds some)."""
        return []

    def relay(self) -> OutboxRelay:
        return OutboxRelay(self.db, Publisher(self.settings.amqp_url, self.topology), self.service, self.clock,
                           self.outbox_collections, snapshots=self.snapshots)

    # readiness checks (used by /readyz and the worker's service_ready gauge)
    def store_ok(self) -> bool:
        self.client.admin.command("ping")
        return True

    def broker_ok(self) -> bool:
        import pika
        conn = pika.BlockingConnection(connection_params(self.settings.amqp_url))
        conn.close()
        return True


def worker_main(container: Container, handlers, background=()) -> None:
    """Shared body of every `python -m services.<svc>.entrypoints.worker` (`background`: the
    service's own loop threads, watched by the worker like its consumers and relay)."""
    from . import logs
    from .worker import run_worker
    logs.setup(container.service, env("LOG_LEVEL", "INFO"))
    consumer = container.consumer(handlers) if handlers else None
    extra = container.extra_consumers()
    port = env("WORKER_METRICS_PORT")
    run_worker(container.service, consumer, container.relay(), container.settings.amqp_url,
               container.topology.dead_queue if (handlers or extra) else None, int(port) if port else None,
               container.store_ok, extra_consumers=extra, background=background)
