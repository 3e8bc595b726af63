"""RabbitMQ topology, a confirming publisher and an idempotent consumer (pika).

Topology per namespace (default `enrol`):
- `<ns>.events`  durable topic exchange; routing key = event type `<service>.<entity>.<event>`.
- `<ns>.<svc>.events`  durable quorum queue per consuming service, bound to the types it consumes.
- `<ns>.<svc>.retry`   durable queue holding messages for a backoff delay (per-message TTL), then
  dead-lettering them straight back to `<ns>.<svc>.events` through the default exchange.
- `<ns>.dlx` direct exchange and `<ns>.<svc>.dead` quorum queue: messages that failed all attempts
  or were malformed. A copy with the error also goes to the service's `dead_letters` collection.

Outside publishers (e.g. civil-affairs systems) do not speak our envelope: an InboundTopology gives
them an exchange of their own (`<ns>.<feed>.in`) and the service a queue for it, with the same retry
and dead-letter handling; a Consumer with a `decode` hook turns their messages into envelopes.

Who published: every message carries the `user_id` property, which the broker checks against the
connection's user (a publisher cannot claim another's). A consumer dead-letters as forged an
envelope whose `producer` is not the catalogued publisher of its type and, when each service has a
broker user of its own (`BUS_USERS`), one whose `user_id` is neither that publisher's user nor its
own (its own retries and replays). Topic permissions on the broker refuse the publish itself.
"""
from __future__ import annotations

import json
import os
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import groupby
from typing import Callable

import pika
from marshmallow import ValidationError
from pika.exceptions import AMQPError
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from . import metrics
from .events import CATALOGUE, Envelope, consumed_by, publisher_of, validate_payload
from .logs import correlation_id
from .store import DEAD_LETTERS, find_by_ids, insert_unordered

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topology:
    namespace: str
    service: str

    @property
    def exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def dlx(self) -> str:
        return f"{self.namespace}.dlx"

    @property
    def queue(self) -> str:
        return f"{self.namespace}.{self.service}.events"

    @property
    def retry_queue(self) -> str:
        return f"{self.namespace}.{self.service}.retry"

    @property
    def dead_queue(self) -> str:
        return f"{self.namespace}.{self.service}.dead"

    def declare(self, ch, consumes: list[str] | None = None) -> None:
        ch.exchange_declare(self.exchange, "topic", durable=True)
        ch.exchange_declare(self.dlx, "direct", durable=True)
        types = consumed_by(self.service) if consumes is None else consumes
        if not types:
            return
        ch.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        for t in types:
            ch.queue_bind(self.queue, self.exchange, routing_key=t)
        ch.queue_declare(self.retry_queue, durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.queue})
        ch.queue_declare(self.dead_queue, durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind(self.dead_queue, self.dlx, routing_key=self.service)


@dataclass(frozen=True)
class InboundTopology(Topology):
    """A feed from outside publishers: `<ns>.<feed>.in` (durable topic exchange) → quorum queue
    `<ns>.<svc>.<feed>` bound with `binding`, retry queue `<ns>.<svc>.<feed>.retry`; dead letters join
    the service's own `<ns>.<svc>.dead`. With `single_active` only one consumer at a time takes
    the queue (others stand by), so updates are applied one by one, in arrival order."""

    feed: str = "feed"
    binding: str = "#"
    single_active: bool = True

    @property
    def exchange(self) -> str:
        return f"{self.namespace}.{self.feed}.in"

    @property
    def queue(self) -> str:
        return f"{self.namespace}.{self.service}.{self.feed}"

    @property
    def retry_queue(self) -> str:
        return f"{self.namespace}.{self.service}.{self.feed}.retry"

    def declare(self, ch, consumes: list[str] | None = None) -> None:
        ch.exchange_declare(self.exchange, "topic", durable=True)
        ch.exchange_declare(self.dlx, "direct", durable=True)
        args = {"x-queue-type": "quorum"}
        if self.single_active:
            args["x-single-active-consumer"] = True
        ch.queue_declare(self.queue, durable=True, arguments=args)
        ch.queue_bind(self.queue, self.exchange, routing_key=self.binding)
        ch.queue_declare(self.retry_queue, durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.queue})
        ch.queue_declare(self.dead_queue, durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind(self.dead_queue, self.dlx, routing_key=self.service)


def broker_user(url: str) -> str:
    """The user a broker URL logs in as (what the broker accepts as a message's `user_id`)."""
    return pika.URLParameters(url).credentials.username


def connection_params(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = int(os.environ.get("AMQP_HEARTBEAT_S", "30"))
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    params.socket_timeout = 5
    return params


def consumers_of(service: str) -> list[str]:
    """Services consuming any event type `service` publishes (from the catalogue)."""
    return sorted({c for spec in CATALOGUE.values() if spec.publisher == service for c in spec.consumers})


class PublishFailed(Exception):
    """A batch that did not wholly reach the broker: its first `confirmed` envelopes did (the
    broker confirmed them), the rest may or may not have (the outbox sends them again)."""

    def __init__(self, confirmed: int, cause: BaseException | None):
        super().__init__(f"{confirmed} confirmed before the broker failed: {cause!r}")
        self.confirmed = confirmed
        self.cause = cause


class Publisher:
    """Publishes envelopes with publisher confirms; raises on failure so the outbox keeps them.

    A batch is sent whole and its confirms awaited once (`publish_many`): the broker confirms a
    stream of messages in a few frames, where waiting for each message's confirm before sending the
    next costs a round trip and the broker's disk write per message (measured on this machine:
    1,700 messages/s one by one, 16,900/s in batches of 200). pika's blocking channel only knows
    the one-by-one wait, so confirms are taken on the channel underneath it (`_impl`, pika's own
    asynchronous channel) with a callback that records the broker's acks.

    It declares the queues of its events' consumers too (as each consumer does, with the same
    arguments): an event published before its consumer's first start waits in the queue instead
    of being dropped by an exchange with nothing bound."""

    CONFIRM_TIMEOUT_S = 30.0

    def __init__(self, url: str, topology: Topology):
        self.url = url
        self.topology = topology
        self.user = broker_user(url)
        self._conn = None
        self._ch = None
        self._tag = 0  # delivery tags sent on the channel
        self._acked_upto = 0  # every tag up to this one is acked (`multiple` acks)
        self._acked: set[int] = set()
        self._nacked: set[int] = set()

    def _channel(self):
        if self._ch is None or not self._ch.is_open:
            self.close()
            self._conn = pika.BlockingConnection(connection_params(self.url))
            self._ch = self._conn.channel()
            self.topology.declare(self._ch, consumes=[])
            for svc in consumers_of(self.topology.service):
                Topology(self.topology.namespace, svc).declare(self._ch)
            selected = []
            self._ch._impl.confirm_delivery(ack_nack_callback=self._on_confirm,
                                            callback=lambda _frame: selected.append(True))
            self._tag, self._acked_upto, self._acked, self._nacked = 0, 0, set(), set()
            deadline = time.monotonic() + self.CONFIRM_TIMEOUT_S
            while not selected:
                self._pump_until(deadline)
        return self._ch

    def _on_confirm(self, frame) -> None:
        m = frame.method
        nack = isinstance(m, pika.spec.Basic.Nack)
        if m.multiple:
            upto = m.delivery_tag
            if nack:
                self._nacked.update(t for t in range(self._acked_upto + 1, upto + 1) if t not in self._acked)
            self._acked_upto = max(self._acked_upto, upto)
        elif nack:
            self._nacked.add(m.delivery_tag)
        else:
            self._acked.add(m.delivery_tag)

    def _answered(self, tag: int) -> bool:
        return tag <= self._acked_upto or tag in self._acked or tag in self._nacked

    def _pump_until(self, deadline: float) -> None:
        if self._ch is None or not self._ch.is_open:
            raise AMQPError("the broker closed the channel")
        if time.monotonic() > deadline:
            raise AMQPError("no publisher confirm in time")
        self._conn.process_data_events(time_limit=0.005)

    def publish(self, env: dict) -> None:
        self.publish_many([env])

    def publish_many(self, envs: list[dict]) -> None:
        """Send `envs` in order, then wait for the broker to confirm them all. Raises PublishFailed
        with how many of the first ones were confirmed (a nack counts as a failure)."""
        if not envs:
            return
        error: BaseException | None = None
        sent = 0
        try:
            impl = self._channel()._impl
            first = self._tag + 1
            for env in envs:
                impl.basic_publish(
                    self.topology.exchange, env["type"], json.dumps(env, ensure_ascii=False).encode(),
                    pika.BasicProperties(content_type="application/json", delivery_mode=2, message_id=env["id"],
                                         type=env["type"], correlation_id=env.get("correlation_id"),
                                         user_id=self.user, headers={"producer": env["producer"]}))
                self._tag += 1
                sent += 1
        except Exception as e:  # noqa: BLE001 — what was sent may still be confirmed below
            error = e
        confirmed = 0
        if sent:
            waiting = first
            try:
                deadline = time.monotonic() + self.CONFIRM_TIMEOUT_S
                while waiting <= self._tag:
                    if self._answered(waiting):
                        waiting += 1
                    else:
                        self._pump_until(deadline)
            except Exception as e:  # noqa: BLE001
                error = error or e
            while confirmed < sent and self._answered(first + confirmed) and first + confirmed not in self._nacked:
                confirmed += 1
        for env in envs[:confirmed]:
            metrics.EVENTS_PUBLISHED.labels(self.topology.service, env["type"]).inc()
        if confirmed < len(envs):
            self.close()
            raise PublishFailed(confirmed, error or AMQPError("the broker refused (nack) a message"))
        self._acked_upto, self._acked = self._tag, set()  # all answered, none refused

    def pump(self) -> None:
        """Service heartbeats while idle."""
        if self._conn is not None and self._conn.is_open:
            try:
                self._conn.process_data_events(0)
            except Exception:
                self.close()

    def close(self) -> None:
        try:
            if self._conn is not None and self._conn.is_open:
                self._conn.close()
        except Exception:
            pass
        self._conn = self._ch = None


Handler = Callable[[Envelope], None]
BatchHandler = Callable[[list[Envelope]], None]  # events of one type in delivery order
Decoder = Callable[[object, bytes], Envelope]  # (pika properties, body) → envelope; ValueError = malformed


class PermanentFailure(Exception):
    """Raise from a handler when retrying cannot help; the message is dead-lettered at once."""


class Forged(ValueError):
    """A message from someone who may not publish it (raised by the consumer's checks or a `decode`
    hook); it is dead-lettered at once as forged and cannot be replayed."""


class Consumer:
    """Manual acks, prefetch, idempotency by processed event id, bounded retries, then dead-letter.

    Idempotency: an event id in `processed_events` is acknowledged without running the handler.
    The marker is written after the handler succeeds, so handlers themselves must be idempotent
    for the crash window between the two (they key their effects on natural ids). The markers and
    acks of a batch go out together: one insert for many events instead of one each (a crash
    before them redelivers the batch, which the same handler idempotency covers).

    Batches: the consumer takes what the broker has delivered (prefetch 200), up to `batch_max`
    messages or `flush_s` after the first, checks their markers with one `_id $in` read, and runs
    consecutive events of one type through that type's batch handler (`batch_handlers`: a list
    of envelopes in delivery order, which applies them with as few store commands as their effects
    allow, keeping each aggregate's order); then one insert of markers and one ack. A batch handler
    that fails (a stale version, a household not there yet, a refused change) has its events run
    one at a time through the ordinary handler, each with its own retries and dead letter, so its
    effects must be idempotent as every handler's are. A type without a batch handler, and a
    batch of one, take the per-event path.

    `commuting`: event types whose effects do not depend on each other's order (they touch
    different documents, or each recomputes from current state): between two events of other
    types, a batch's commuting events are grouped by type (each type's own order kept), so that
    two interleaved streams (a payment's confirmation and its enrolment change) still make long
    runs for the batch handlers.

    `decode` replaces the envelope parsing for messages that are not our envelopes (outside
    publishers; it checks who published them itself); `dedupe=False` leaves duplicates to the
    handler (which reports them); `executor` lets several consumers of one process run their
    handlers one at a time; `publishers` (service → broker user) turns on the `user_id` check.
    """

    def __init__(self, url: str, topology: Topology, db, handlers: dict[str, Handler], *,
                 max_attempts: int = 5, retry_base_ms: int = 500, retry_max_ms: int = 30_000,
                 prefetch: int = 200, clock=None, decode: Decoder | None = None, dedupe: bool = True,
                 executor: ThreadPoolExecutor | None = None, flush_s: float = 0.1,
                 publishers: dict[str, str] | None = None, batch_handlers: dict[str, BatchHandler] | None = None,
                 batch_max: int = 100, commuting: frozenset[str] | set[str] = frozenset()):
        self.url = url
        self.user = broker_user(url)
        self.publishers = publishers
        self.topology = topology
        self.db = db
        self.handlers = handlers
        self.max_attempts = max_attempts
        self.retry_base_ms = retry_base_ms
        self.retry_max_ms = retry_max_ms
        self.prefetch = prefetch
        self.clock = clock
        self.decode = decode
        self.dedupe = dedupe
        self.flush_s = flush_s
        self.batch_handlers = batch_handlers or {}
        self.batch_max = max(1, batch_max)
        self.commuting = frozenset(commuting)
        self._pending: list[tuple[int, dict]] = []  # (delivery tag, marker) handled, not yet acked
        self.stopping = threading.Event()
        self._pool = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="handler")

    def run(self) -> None:
        """Consume until stop(); reconnect with backoff after a broker restart or a store error
        (whatever was not acknowledged is redelivered). Anything else is a bug: it ends the thread,
        and the worker, which watches its threads, ends the process so its supervisor restarts it."""
        delay = 0.5
        while not self.stopping.is_set():
            try:
                self._consume()
                delay = 0.5
            except (AMQPError, OSError, PyMongoError) as e:
                log.warning("consumer connection lost (%s: %s); reconnecting in %.1fs", type(e).__name__, e, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10)

    def stop(self) -> None:
        self.stopping.set()

    def _consume(self) -> None:
        conn = pika.BlockingConnection(connection_params(self.url))
        try:
            ch = conn.channel()
            ch.confirm_delivery()  # retry and dead-letter copies are confirmed before the original is acked
            self.topology.declare(ch, consumes=list(self.handlers))
            ch.basic_qos(prefetch_count=self.prefetch)
            self._pending.clear()
            batch: list[tuple] = []
            started = 0.0
            for method, props, body in ch.consume(self.topology.queue, inactivity_timeout=self.flush_s):
                metrics.HEARTBEAT.labels(self.topology.service).set(time.time())
                if self.stopping.is_set():
                    break  # a batch not handled yet stays unacknowledged: redelivered
                if method is not None:
                    if not batch:
                        started = time.monotonic()
                    batch.append((method, props, body))
                if batch and (method is None or len(batch) >= self.batch_max
                              or time.monotonic() - started >= self.flush_s):
                    self._handle(conn, ch, batch)
                    batch = []
                    if self._pending and ch.is_open:
                        self._flush(ch)
            if self._pending and ch.is_open:
                self._flush(ch)
        finally:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:
                pass

    def _handle(self, conn, ch, batch: list[tuple]) -> None:
        """One batch of deliveries: parsed and checked, duplicates acknowledged, then the events in
        delivery order, consecutive events of a type with a batch handler together."""
        items = [(m, p, b, env) for m, p, b in batch if (env := self._parse(conn, ch, m, p, b)) is not None]
        seen = self._seen(conn, [env.id for *_, env in items])
        if seen is None:
            return  # stopping while the store was down: unacknowledged, redelivered
        fresh, ids = [], set()
        for m, p, b, env in items:
            if self.dedupe and (env.id in seen or env.id in ids):
                metrics.EVENTS_DUPLICATE.labels(self.topology.service, env.type).inc()
                ch.basic_ack(m.delivery_tag)
            else:
                ids.add(env.id)
                fresh.append((m, p, b, env))
        for etype, group in groupby(grouped(fresh, self.commuting, lambda it: it[3].type), lambda it: it[3].type):
            run = list(group)
            many = self.batch_handlers.get(etype)
            if many is not None and len(run) > 1 and self._run_batch(conn, many, run):
                for m, _p, _b, env in run:
                    self._done(m, env)
            else:
                for m, p, b, env in run:
                    if not self._handle_one(conn, ch, m, p, b, env):
                        return  # stopping: the rest stay unacknowledged

    def _parse(self, conn, ch, method, props, body: bytes) -> Envelope | None:
        """The message's envelope, or None when it was dead-lettered (malformed, forged, no handler)."""
        attempt = int((props.headers or {}).get("x-attempt", 1))
        try:
            if self.decode is not None:
                env = self.decode(props, body)
            else:
                raw = json.loads(body)
                env = Envelope.from_dict(raw)
                validate_payload(env.type, env.payload)
                self._check_publisher(env, props)
        except Forged as e:
            self._dead_letter(conn, ch, method, props, body, f"forged: {e}", attempt, raw_type=props.type)
            return None
        except (ValueError, ValidationError, TypeError) as e:
            self._dead_letter(conn, ch, method, props, body, f"malformed: {e}", attempt, raw_type=props.type)
            return None
        if env.type not in self.handlers:
            self._dead_letter(conn, ch, method, props, body, f"no handler for {env.type}", attempt, raw_type=env.type)
            return None
        return env

    def _seen(self, conn, ids: list[str]) -> set[str] | None:
        """The ids among `ids` handled already (one `_id $in` read of the markers; the previous
        batch's are written before this one is taken); None if the consumer stopped while waiting
        for the store."""
        while self.dedupe and ids:  # a store outage is waited out here, not counted as a handler's failure
            try:
                return {d["_id"] for d in find_by_ids(self.db["processed_events"], ids, {"_id": 1})}
            except ConnectionFailure:
                if not self._await_store(conn):
                    return None
        return set()

    def _call(self, conn, fn) -> bool:
        """Run `fn` on the handler thread, servicing heartbeats while it is slow; a store outage is
        waited out and `fn` run again (handlers are idempotent). False: stopping meanwhile."""
        while True:
            future = self._pool.submit(fn)
            # wait for the handler, servicing heartbeats only while it is slow: a handler that
            # finishes in a millisecond must not wait for a broker poll (that capped a consumer at 5/s)
            while not wait([future], timeout=0.5).done:
                conn.process_data_events(time_limit=0)
                metrics.HEARTBEAT.labels(self.topology.service).set(time.time())
            try:
                future.result()
                return True
            except ConnectionFailure:  # the store is down: run the handler again once it is back
                if not self._await_store(conn):
                    return False

    def _run_batch(self, conn, many: BatchHandler, run: list[tuple]) -> bool:
        """True when the batch handler took the whole run; False sends it one event at a time."""
        envs = [env for *_, env in run]
        try:
            if not self._call(conn, lambda: many(envs)):
                return False
        except (AMQPError, OSError):
            raise
        except Exception as e:  # noqa: BLE001 — each event gets its own handling below
            log.info("batch of %d %s handled one by one (%s: %s)", len(envs), envs[0].type, type(e).__name__, e)
            metrics.EVENT_BATCHES.labels(self.topology.service, envs[0].type, "one_by_one").inc()
            return False
        metrics.EVENT_BATCHES.labels(self.topology.service, envs[0].type, "batch").inc()
        return True

    def _handle_one(self, conn, ch, method, props, body: bytes, env: Envelope) -> bool:
        """The per-event path: the handler, then retry or dead letter on failure. False: stopping."""
        attempt = int((props.headers or {}).get("x-attempt", 1))
        token = correlation_id.set(env.correlation_id)
        try:
            if not self._call(conn, lambda: self.handlers[env.type](env)):
                return False  # stopping: unacked, the broker redelivers it
        except PermanentFailure as e:
            self._dead_letter(conn, ch, method, props, body, f"permanent: {e}", attempt, raw_type=env.type)
            return True
        except (AMQPError, OSError):
            raise
        except Exception as e:  # noqa: BLE001 — any handler failure is retried, then dead-lettered
            log.warning("handler failed for %s %s (attempt %d): %s", env.type, env.id, attempt, e,
                        extra={"event_type": env.type, "event_id": env.id})
            if attempt >= self.max_attempts:
                self._dead_letter(conn, ch, method, props, body, f"{type(e).__name__}: {e}", attempt,
                                  raw_type=env.type)
            else:
                self._retry(ch, method, props, body, attempt, env.type)
            return True
        finally:
            correlation_id.reset(token)
        self._done(method, env)
        return True

    def _done(self, method, env: Envelope) -> None:
        """Handled: its marker and ack go out with the batch's."""
        self._pending.append((method.delivery_tag, {"_id": env.id, "type": env.type,
                                                    "at": self.clock.now() if self.clock else None}))
        metrics.EVENTS_CONSUMED.labels(self.topology.service, env.type).inc()

    def _check_publisher(self, env: Envelope, props) -> None:
        publisher = publisher_of(env.type)
        if env.producer != publisher:
            raise Forged(f"{env.type} comes from {publisher}, not {env.producer}")
        if self.publishers is not None:
            sender = getattr(props, "user_id", None)
            if sender not in (self.publishers.get(publisher), self.user):
                raise Forged(f"{env.type} published by broker user {sender!r}, not {publisher}'s")

    def _await_store(self, conn) -> bool:
        """Wait until the store answers again (backoff up to 10 s), keeping the broker connection
        alive; False if the consumer is stopping meanwhile. Handlers are idempotent, so running one
        again after a store error mid-way is safe; counting the outage as a failed attempt would
        dead-letter every event of a store restart longer than the retry budget."""
        delay = 0.5
        log.warning("store unavailable; holding events until it answers", extra={"service": self.topology.service})
        while not self.stopping.is_set():
            end = time.monotonic() + delay
            while time.monotonic() < end and not self.stopping.is_set():
                conn.process_data_events(time_limit=0.2)
                metrics.HEARTBEAT.labels(self.topology.service).set(time.time())
            try:
                self.db.client.admin.command("ping")
                log.warning("store answers again; resuming")
                return True
            except PyMongoError:
                delay = min(delay * 2, 10)
        return False

    def _flush(self, ch) -> None:
        """Record the handled events' markers in one insert, then ack them all with one ack."""
        if self.dedupe:
            try:  # a redelivered event's marker is already there (11000): fine
                errors = insert_unordered(self.db["processed_events"], [m for _, m in self._pending])
                other = [err for err in errors.values() if err.get("code") != 11000]
                if other:
                    log.warning("processed-event markers not all written: %s", other[:1])
            except PyMongoError as e:  # the handlers' effects are stored; a duplicate reruns an idempotent handler
                log.warning("processed-event markers not written (%s); acking anyway", type(e).__name__)
        ch.basic_ack(self._pending[-1][0], multiple=True)
        self._pending.clear()

    def _retry(self, ch, method, props, body, attempt, etype) -> None:
        delay = min(self.retry_base_ms * 2 ** (attempt - 1), self.retry_max_ms)
        headers = dict(props.headers or {})
        headers["x-attempt"] = attempt + 1
        ch.basic_publish("", self.topology.retry_queue, body, pika.BasicProperties(
            content_type=props.content_type, delivery_mode=2, message_id=props.message_id, type=props.type,
            correlation_id=props.correlation_id, headers=headers, expiration=str(int(delay)),
            user_id=self.user))  # checked already; the copy comes back as the consumer's own
        ch.basic_ack(method.delivery_tag)
        metrics.EVENTS_RETRIED.labels(self.topology.service, etype).inc()

    def _dead_letter(self, conn, ch, method, props, body, reason: str, attempt: int, raw_type: str | None) -> None:
        """The inspectable copy first (a store outage is waited out: unacknowledged, the message is
        redelivered if the consumer stops meanwhile), then the queue copy, then the ack."""
        key = props.message_id or f"nomsgid-{time.time_ns()}"
        while True:
            try:
                self._record_dead(key, body, reason, attempt, raw_type)
                break
            except ConnectionFailure:
                if not self._await_store(conn):
                    return
            except PyMongoError as e:  # e.g. a refused document: the queue copy still keeps the message
                log.error("dead letter %s not recorded in the store (%s: %s)", key, type(e).__name__, e)
                break
        headers = dict(props.headers or {})
        headers.update({"x-attempt": attempt, "x-death-reason": reason[:500]})
        headers["x-published-by"] = getattr(props, "user_id", None)
        ch.basic_publish(self.topology.dlx, self.topology.service, body, pika.BasicProperties(
            content_type=props.content_type, delivery_mode=2, message_id=props.message_id, type=props.type,
            correlation_id=props.correlation_id, headers=headers, user_id=self.user))
        ch.basic_ack(method.delivery_tag)
        metrics.EVENTS_DEAD.labels(self.topology.service, raw_type or "unknown").inc()
        log.error("dead-lettered %s %s: %s", raw_type, key, reason, extra={"event_id": key})

    def _record_dead(self, key: str, body: bytes, reason: str, attempt: int, raw_type: str | None) -> None:
        try:
            self.db[DEAD_LETTERS].insert_one({
                "_id": key, "type": raw_type, "reason": reason, "attempts": attempt, "queue": self.topology.queue,
                "body": body.decode("utf-8", "replace")[:100_000], "county": county_of_body(body),
                "at": self.clock.now() if self.clock else None})
        except DuplicateKeyError:  # dead again after a replay (or recorded before a crash)
            self.db[DEAD_LETTERS].update_one({"_id": key}, {"$set": {"reason": reason, "attempts": attempt}})


def grouped(items: list, commuting: frozenset[str], type_of) -> list:
    """`items` with each stretch of commuting types grouped by type, in the order each type first
    appears and each type's items in their own order; an item of any other type stays where it is
    and bounds the stretches on either side of it."""
    if not commuting:
        return items
    out: list = []
    stretch: dict[str, list] = {}
    for it in items:
        t = type_of(it)
        if t in commuting:
            stretch.setdefault(t, []).append(it)
            continue
        for group in stretch.values():
            out.extend(group)
        stretch = {}
        out.append(it)
    for group in stretch.values():
        out.extend(group)
    return out


def county_of_body(body: bytes) -> str | None:
    """The county an envelope names (its staff see the dead letter), None for a body that names none
    or cannot be read (shared/dead_letters.py shows those to every county's operators)."""
    try:
        county = json.loads(body).get("county")
    except (ValueError, AttributeError):
        return None
    return county if isinstance(county, str) and len(county) == 6 and county.isdigit() else None


def queue_depth(url: str, queue: str) -> int | None:
    """Messages ready in a queue (passive declare), or None when the broker is unreachable."""
    try:
        conn = pika.BlockingConnection(connection_params(url))
        try:
            return conn.channel().queue_declare(queue, passive=True).method.message_count
        finally:
            conn.close()
    except Exception:
        return None
