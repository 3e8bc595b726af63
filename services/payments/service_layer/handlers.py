"""Use cases of payments: quotes, orders, signed notifications, receipts, audits, reversals, bank
withholding and reconciliation, and the read models fed by registry and subsidy events.

No multi-document transactions: each state change of money is one document write carrying its
event (outbox), made by compare-and-set on the aggregate's version (the domain's state machines
say which changes are allowed; a write that lost to another one reads again and decides again).
Side records (receipt, money log, order status) are written after it with idempotent writes, by
the request and again by the payments worker from the transition's own event
(`on_payment_confirmed`, `on_payment_audited`, `on_payment_reversed`), so a crash between the two
is completed by the caller's retry or, without one, by the worker. A gateway's acknowledgement of
a confirmation waits for three store operations (nonce, order, payment with its event) and its
pointer; readers that cannot wait for the worker (receipt lookup, order status, reversal) look at
the payment record.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import date, datetime, timedelta
from typing import Any

from shared.aggregate import StaleVersion, retry_stale
from shared.auth import Principal
from shared.clock import SHANGHAI, Clock, iso
from shared.consistency import MidYearSeen, SyncPending
from shared.errors import Conflict, DomainError, Forbidden, NotFound, ValidationFailed
from shared.events import Envelope, Event
from shared.policy import PolicyYear
from shared.workdays import WorkCalendar

from ..adapters.repository import PaymentsRepository, hh_key
from ..domain import audit as audit_rules
from ..domain import withholding as wh
from ..domain.model import (Order, Quote, check_proof, check_whole_household, covered_persons, current_entitlement,
                            quote, shanghai_day, supplement_key, supplement_slot)
from ..domain.payment import Change, Payment
from ..domain.reconciliation import reconcile, remittance_summary
from ..domain.receipts import build_receipt

log = logging.getLogger(__name__)


# ---- read models -------------------------------------------------------------------------------

def on_household_snapshot(repo: PaymentsRepository, env: Envelope) -> None:
    """registry.household.registered / .changed: the members a quote charges for."""
    repo.upsert_household(env.payload, env.seq)


def on_household_snapshots(repo: PaymentsRepository, envs: list[Envelope]) -> None:
    """A run of household snapshots (a roster import): on_household_snapshot in a few store commands."""
    repo.upsert_households([(e.payload, e.seq) for e in envs])


def on_household_dissolved(repo: PaymentsRepository, env: Envelope) -> None:
    repo.end_household(env.payload, env.seq)


def on_entitlement_changed(repo: PaymentsRepository, env: Envelope) -> None:
    """Only the read model changes: a quote uses it, an order or a payment never does again
    (001 六: 缴费后特殊身份标识发生变化的，不再补退)."""
    repo.add_entitlement_change(env.id, env.seq, env.occurred_at, env.payload)


def on_duplicate_changed(repo: PaymentsRepository, env: Envelope) -> None:
    """registry.duplicate.changed: while a member's case (多地重复参保) is open, the household's quote
    is refused; the newest event wins."""
    repo.upsert_duplicate(env.payload, env.seq)


def on_mid_year_approved(repo: PaymentsRepository, env: Envelope) -> None:
    """registry.mid_year.approved: after the window, a quote charges the approved members (001 四)."""
    repo.upsert_mid_year({**env.payload, "status": "approved"}, env.seq)


def on_holidays_published(repo: PaymentsRepository, env: Envelope) -> None:
    """registry.holidays.published: audit deadlines count the year's official schedule (the web
    processes re-read it within 30 s)."""
    repo.upsert_holiday_schedule(env.payload, env.seq)


def on_mid_year_withdrawn(repo: PaymentsRepository, env: Envelope) -> None:
    """registry.mid_year.withdrawn: the person is no longer charged after the window."""
    repo.upsert_mid_year({**env.payload, "status": "withdrawn"}, env.seq)


# ---- quotes and orders -------------------------------------------------------------------------

def make_quote(repo: PaymentsRepository, policy: PolicyYear, clock: Clock, year: int, household_no: str, *,
               supplements: bool = True, seen: MidYearSeen | None = None,
               household: dict[str, Any] | None = None) -> Quote:
    """The household's quote now. A household paid already is quoted for a supplementary payment
    (补缴) of its members approved for mid-year enrolment that no standing payment covers
    (model.supplement_quote); with `supplements=False` (withholding batches: an agreement debits
    the household's yearly payment, not a newborn's) it is refused as paid. With `seen` (the
    consistency token of registry's approval reply) it waits for that approval first. `household`:
    the read model's household when the caller has just read it."""
    at = clock.now()
    household = repo.household(year, household_no) if household is None else household
    if seen is not None:
        check_seen(repo, household, year, household_no, seen)
    payment = repo.payment(year, household_no)
    if payment is not None and payment.get("status") == "reversed":
        raise Conflict("HOUSEHOLD_PAYMENT_REVERSED", "该户本年度缴费已冲正，请到乡镇医保经办机构办理",
                       {"household_no": household_no})
    ents, open_duplicates, mid_year, paid_ids = {}, set(), {}, None
    if household is not None:
        on = at.astimezone(SHANGHAI).date()
        person_ids = [m["person_id"] for m in household["members"]]
        if payment is not None:  # only the members no payment covers can still be charged
            paid_ids = covered_persons([payment, *repo.supplements(year, household_no)]) if supplements else None
            person_ids = [pid for pid in person_ids if paid_ids is not None and pid not in paid_ids]
        ents = {pid: current_entitlement(changes, on) for pid, changes in repo.entitlement_changes(year, person_ids).items()}
        open_duplicates = repo.open_duplicates(year, person_ids)
        if person_ids and (payment is not None or not policy.window_open_at(at)):
            mid_year = repo.mid_year_approvals(year, person_ids)
    return quote(household, policy, at, payment is not None, ents, open_duplicates=open_duplicates,
                 mid_year=mid_year, paid_ids=paid_ids)


def check_seen(repo: PaymentsRepository, household: dict[str, Any] | None, year: int, household_no: str,
               seen: MidYearSeen) -> None:
    """Read-your-writes: SYNC_PENDING until payments' read models hold the approval the token names
    (the household with that person, the approval at that version or newer); one `_id` lookup."""
    if (seen.year, seen.household_no) != (year, household_no):
        raise ValidationFailed("CONSISTENCY_TOKEN_MISMATCH", "一致性令牌不属于该户或该年度",
                               {"household_no": household_no, "year": year})
    pid = next((m["person_id"] for m in (household or {}).get("members", []) if seen.names(year, m["person_id"])), None)
    if pid is None or repo.mid_year_version(year, pid) < seen.version:
        raise SyncPending("中途参保批准正在同步到缴费系统，请稍后重试", {"household_no": household_no, "year": year,
                                                               "retry_after_seconds": SyncPending.retry_after})


def create_order(repo: PaymentsRepository, policy: PolicyYear, clock: Clock, gateway: str, idem_key: str,
                 data: dict[str, Any], allowed_channels: tuple[str, ...] = ()) -> tuple[Order, bool]:
    """Returns (order, created). The same key and body return the same order; another body is refused."""
    body_hash = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    prior = repo.idempotent(gateway, idem_key)
    if prior:
        return _replay(repo, prior, body_hash), False
    if data["channel"] == "withholding":
        raise DomainError("CHANNEL_NOT_ALLOWED", "代扣订单只由代扣批次生成", {"channel": "withholding"}, status=403)
    household = repo.household(data["year"], data["household_no"])  # read once for the quote and the order
    q = make_quote(repo, policy, clock, data["year"], data["household_no"], household=household)
    check_whole_household(q, data.get("person_ids"))
    order = Order.create(q, gateway, data["channel"], clock.now(), allowed_channels=allowed_channels,
                         household=household)
    repo.add_order(order)
    if not repo.claim_idempotency(gateway, idem_key, order.order_no, body_hash, clock.now()):
        repo.drop_order(order.order_no)  # lost a race with the same key: answer with the winner's order
        return _replay(repo, repo.idempotent(gateway, idem_key), body_hash), False
    repo.log_money(order.order_no, "order_created", clock.now(), gateway, order.amount_fen,
                   household_key=hh_key(order.year, order.household_no), channel=order.channel)
    return order, True


def _replay(repo: PaymentsRepository, prior: dict[str, Any], body_hash: str) -> Order:
    if prior["body_hash"] != body_hash:
        raise Conflict("IDEMPOTENCY_KEY_REUSED", "幂等键已用于内容不同的请求", {"order_no": prior["order_no"]})
    return order_status(repo, prior["order_no"])


# ---- confirmation ------------------------------------------------------------------------------

def confirm_payment(repo: PaymentsRepository, clock: Clock, gateway: str, data: dict[str, Any],
                    correlation_id: str | None) -> dict[str, Any]:
    """A signed payment notification. Duplicates are acknowledged again with no second effect."""
    order = repo.order(data["order_no"])
    if order is None:
        raise NotFound("ORDER_NOT_FOUND", "订单不存在", {"order_no": data["order_no"]})
    try:
        order.check_notification(gateway, data["amount_fen"], clock.now())
    except DomainError as e:
        # expired, but a crash came between recording this order's payment and marking the order:
        # the money is in; finish the job rather than refuse the gateway's retry
        if e.code != "ORDER_EXPIRED" or recorded_payment(repo, order) is None:
            raise
    proof = check_proof(order.channel, data.get("proof"))
    return settle(repo, clock, order, data["transaction_id"], iso(data["paid_at"]), proof, correlation_id,
                  actor=gateway)


def recorded_payment(repo: PaymentsRepository, order: Order) -> dict[str, Any] | None:
    """The payment record this order's money made, if any: the household's first payment, or for a
    supplement order (补缴) one of the household's supplements (a few `_id` lookups in order)."""
    return payment_of(repo, order.year, order.household_no, order.order_no, order.supplement)


def payment_of(repo: PaymentsRepository, year: int, household_no: str, order_no: str,
               supplement: bool) -> dict[str, Any] | None:
    first = repo.payment(year, household_no)
    if first is None or first["order_no"] == order_no or not supplement:
        return first if first is not None and first["order_no"] == order_no else None
    return next((p for p in repo.supplements(year, household_no) if p["order_no"] == order_no), None)


def payment_doc(order: Order, household: dict[str, Any], proof: dict[str, str], at: datetime,
                actor: str, number: int = 1) -> dict[str, Any]:
    """The household's payment record (`number` 1) or its `number`-th, a supplement (补缴); it also
    carries what its receipt shows (head, members)."""
    doc = {"_id": supplement_key(order.year, order.household_no, number), "order_no": order.order_no,
           "receipt_no": order.receipt(), "household_no": order.household_no, "year": order.year,
           "county": household["county"], "township": household["township"], "village": household["village"],
           "head_name": household.get("head_name", ""), "head_phone": household.get("head_phone"),
           "members": [{**m, "category": l.category} for m, l in zip(order.members_payload(), order.lines)],
           "transaction_id": order.transaction_id, "amount_fen": order.amount_fen,
           "standard_fen": sum(l.standard_fen for l in order.lines),
           "subsidy_fen": sum(l.subsidy_fen for l in order.lines),
           "person_ids": [l.person_id for l in order.lines], "gateway": order.gateway, "channel": order.channel,
           "proof": proof, "paid_at": order.paid_at, "paid_day": shanghai_day(order.paid_at), "recorded_at": at,
           "status": "confirmed", "version": 1,
           "history": [{"at": at, "status": "confirmed", "by": actor, "amount_fen": order.amount_fen}]}
    if number > 1:
        doc.update(supplement=True, number=number)
    return doc


def settle(repo: PaymentsRepository, clock: Clock, order: Order, transaction_id: str, paid_at: str,
           proof: dict[str, str], correlation_id: str | None, actor: str) -> dict[str, Any]:
    """Record the money of an order once: the household's payment (with its event), a supplement
    (补缴) for members who joined after it, or, when the household (or a supplement's person) was
    already paid for by another order, an overpayment to refund. The receipt, the money log row
    and the order status follow from the event (`on_payment_confirmed`)."""
    if order.status != "created":
        if transaction_id != order.transaction_id:
            _paid_twice(repo, clock, order, transaction_id, actor)
        return _ack(order, duplicate=True)
    now = clock.now()
    household = order.payer or repo.household(order.year, order.household_no)  # frozen at the order: one read less
    if household is None:
        raise NotFound("HOUSEHOLD_UNKNOWN", "未找到该户的登记信息", {"household_no": order.household_no})
    order.transaction_id = transaction_id
    order.paid_at = paid_at
    order.receipt_no = order.receipt()
    event = order.confirmed_event(household, transaction_id, paid_at)
    if order.supplement:
        existing = _record_supplement(repo, order, household, proof, now, actor, event, correlation_id)
    elif repo.record_payment(payment_doc(order, household, proof, now, actor), event, correlation_id):
        existing = None
    else:
        existing = repo.payment(order.year, order.household_no)
    if existing is None:
        order.status = "paid"
        return _ack(order, duplicate=False)
    if existing["order_no"] == order.order_no:  # this order's payment was recorded before
        if existing["transaction_id"] != transaction_id:
            _paid_twice(repo, clock, order, transaction_id, actor)
        return _ack(order.apply_recorded(existing), duplicate=True)
    # the household (or the supplement's person) was already paid for by another order: refund
    # case. The money-log row goes first, so that the order's transition (what a retry sees) is
    # the last write and nothing follows it
    repo.log_money(order.order_no, "overpaid", now, actor, order.amount_fen,
                   household_key=hh_key(order.year, order.household_no), transaction_id=transaction_id)
    try:
        repo.save_order(order, order.mark_duplicate(transaction_id, paid_at, proof))
    except StaleVersion:  # another notification of this order came first: answer as a repeat of it
        return settle(repo, clock, repo.order(order.order_no), transaction_id, paid_at, proof, correlation_id, actor)
    order.status = "duplicate_payment"
    order.receipt_no = None
    log.warning("household paid twice; order %s needs a refund", order.order_no, extra={"order_no": order.order_no})
    return _ack(order, duplicate=False)


def _record_supplement(repo: PaymentsRepository, order: Order, household: dict[str, Any], proof: dict[str, str],
                       at: datetime, actor: str, event: Event, correlation_id: str | None) -> dict[str, Any] | None:
    """The exactly-once step of a supplement order: claim the household-year's next free payment
    number by its unique `_id` insert, having read every number before it (model.supplement_slot).
    None: recorded now. Otherwise the record that decided: this order's own (recorded before) or
    a standing payment of one of its persons (this money is an overpayment)."""
    persons = [l.person_id for l in order.lines]
    n = 1
    while True:
        recorded = repo.payment_at(order.year, order.household_no, n)
        if recorded is None:
            if n == 1:  # cannot be (quoted as a supplement, the first payment exists): never taken as it
                n = 2
                continue
            if repo.record_payment(payment_doc(order, household, proof, at, actor, n), event, correlation_id):
                return None
            recorded = repo.payment_at(order.year, order.household_no, n)  # taken meanwhile: look at it
        slot = supplement_slot(recorded, order.order_no, persons)
        if slot != "other":
            return recorded
        n += 1


def on_payment_confirmed(repo: PaymentsRepository, env: Envelope) -> None:
    """payments.payment.confirmed (our own) → the receipt, the audit it waits for, the money-log row and the order status,
    off the gateway's request path. Each write is idempotent; the order's status only moves up
    from `created`, so a reversal that came first is not undone."""
    payment = _event_payment(repo, env.payload)
    if payment is None:
        return  # not ours to complete (cannot happen: the event rides in the payment's own write)
    issue_receipt(repo, payment)
    if payment["status"] == "confirmed":  # an audit or reversal since then has settled it already
        repo.await_audit(payment)
    repo.log_money(payment["_id"], "confirmed", payment["recorded_at"], payment["history"][0]["by"],
                   payment["amount_fen"], order_no=payment["order_no"], receipt_no=payment["receipt_no"],
                   channel=payment["channel"], transaction_id=payment["transaction_id"])
    repo.count_remitted([(payment, 1)])
    _mark_order_paid(repo, payment)


def on_payments_confirmed(repo: PaymentsRepository, envs: list[Envelope]) -> None:
    """A batch of our own payments.payment.confirmed (a busy queue): what on_payment_confirmed
    writes, each kind in one store command for the whole batch — the payments read, the receipts,
    the open audits (shards, then the index), the money-log rows, the orders read and moved to
    paid in one bulk compare-and-set. A supplement (补缴) takes the per-event path. An order written
    meanwhile raises StaleVersion and the consumer applies the batch one event at a time (every
    write here is idempotent)."""
    plain = [e for e in envs if not e.payload.get("supplement")]
    for e in envs:
        if e.payload.get("supplement"):
            on_payment_confirmed(repo, e)
    found = repo.payments_by_id([hh_key(e.payload["year"], e.payload["household_no"]) for e in plain])
    mine = list({d["_id"]: d for e in plain if (d := found.get(hh_key(e.payload["year"], e.payload["household_no"])))
                 is not None and d["order_no"] == e.payload["order_no"]}.values())
    if not mine:
        return
    key = repo.receipt_key()
    repo.add_receipts([build_receipt(d, key) for d in mine])
    repo.await_audits([d for d in mine if d["status"] == "confirmed"])
    repo.log_money_many([(d["_id"], "confirmed", d["recorded_at"], d["history"][0]["by"], d["amount_fen"],
                          {"order_no": d["order_no"], "receipt_no": d["receipt_no"], "channel": d["channel"],
                           "transaction_id": d["transaction_id"]}) for d in mine])
    repo.count_remitted([(d, 1) for d in mine])
    orders = repo.orders([d["order_no"] for d in mine])
    changes = [(o, change) for d in mine if (o := orders.get(d["order_no"])) is not None
               and (change := o.mark_paid(d)) is not None]
    repo.save_orders(changes)


def _event_payment(repo: PaymentsRepository, p: dict[str, Any]) -> dict[str, Any] | None:
    """The payment record one of our payment events is about (a supplement's says so)."""
    return payment_of(repo, p["year"], p["household_no"], p["order_no"], bool(p.get("supplement")))


def _mark_order_paid(repo: PaymentsRepository, payment: dict[str, Any]) -> None:
    """created → paid (Order.mark_paid); an order already past that, reversed above all, stays."""
    def step() -> None:
        o = repo.order(payment["order_no"])
        change = o.mark_paid(payment) if o else None
        if change is not None:
            repo.save_order(o, change)
    retry_stale(step)


def on_payment_audited(repo: PaymentsRepository, env: Envelope) -> None:
    """payments.payment.audited (our own) → its money-log row, if the request that audited did not
    get to write it (a crash after the audit's write)."""
    doc = _event_payment(repo, env.payload)
    if doc is not None and doc.get("audited_at"):
        complete_audit(repo, doc)


def on_payment_reversed(repo: PaymentsRepository, env: Envelope) -> None:
    """payments.payment.reversed (our own) → the receipt marked, the money-log row, the order's status
    and the reversal record, if the request that reversed did not get to write them."""
    doc = _event_payment(repo, env.payload)
    if doc is not None and doc["status"] == "reversed":
        complete_reversal(repo, doc)
        repo.count_remitted([(doc, -1)])


def issue_receipt(repo: PaymentsRepository, payment: dict[str, Any]) -> dict[str, Any]:
    """One receipt per payment, a supplement's too (written once; the first writer's copy stands)."""
    doc = build_receipt(payment, repo.receipt_key())
    return doc if repo.add_receipt(doc) else (repo.receipt(doc["_id"]) or doc)


def _paid_twice(repo: PaymentsRepository, clock: Clock, order: Order, transaction_id: str, actor: str) -> None:
    """The gateway reports another transaction for an order already paid. Still acknowledged (the
    gateway must stop retrying, and a retry may carry a new id), but logged, so that a real second
    charge is refunded; the day's reconciliation shows it as a transaction mismatch too."""
    repo.log_money(f"{order.order_no}:{transaction_id}", "paid_twice", clock.now(), actor, order.amount_fen,
                   order_no=order.order_no, transaction_id=transaction_id,
                   household_key=hh_key(order.year, order.household_no))
    log.warning("order %s reported paid by a second transaction; check for a refund", order.order_no,
                extra={"order_no": order.order_no})


def _ack(order: Order, duplicate: bool) -> dict[str, Any]:
    return {"code": "SUCCESS", "message": "成功", "order_no": order.order_no, "status": order.status,
            "receipt_no": order.receipt_no, "duplicate": duplicate}


# ---- receipts ----------------------------------------------------------------------------------

def _receipt(repo: PaymentsRepository, receipt_no: str, *, issue: bool = True) -> dict[str, Any] | None:
    """A receipt by number; one asked for before the worker issued it is issued now (or, for the
    public check, which never writes, built in memory: the worker's copy will be the same)."""
    r = repo.receipt(receipt_no)
    if r is not None or not receipt_no.startswith("R"):
        return r
    order = repo.order("P" + receipt_no[1:])  # Order.receipt(): the order number with R for P
    payment = recorded_payment(repo, order) if order else None
    if payment is None or payment["receipt_no"] != receipt_no:
        return None
    return issue_receipt(repo, payment) if issue else build_receipt(payment, repo.receipt_key())


def receipt_for_staff(repo: PaymentsRepository, principal: Principal, receipt_no: str) -> dict[str, Any]:
    r = _receipt(repo, receipt_no)
    if r is None:
        raise NotFound("RECEIPT_NOT_FOUND", "收据不存在", {"receipt_no": receipt_no})
    principal.check_township(r["township"])
    return r


def verify_receipt(repo: PaymentsRepository, receipt_no: str, check_code: str) -> dict[str, Any]:
    """Public check of a receipt by number and check code; an unknown number and a wrong code get
    the same answer, so numbers cannot be enumerated."""
    r = _receipt(repo, receipt_no, issue=False)
    given = (check_code or "").strip().upper().encode()
    if r is None or not given or not hmac.compare_digest(r["check_code"].encode(), given):
        raise NotFound("RECEIPT_NOT_VERIFIED", "收据号或校验码不正确，无法核验", {"receipt_no": receipt_no})
    return r


def order_status(repo: PaymentsRepository, order_no: str) -> Order:
    """An order as a gateway or staff should see it now (its payment may be newer than its status)."""
    order = repo.order(order_no)
    if order is None:
        raise NotFound("ORDER_NOT_FOUND", "订单不存在", {"order_no": order_no})
    if order.status == "created":
        order.apply_recorded(recorded_payment(repo, order))
    return order


# ---- audit (缴款审核) -----------------------------------------------------------------------------

def _transition(repo: PaymentsRepository, key: str, decide, correlation_id: str | None,
                first: dict[str, Any] | None = None) -> tuple[Payment, bool]:
    """Read the payment `key` (a household-year's first payment or a supplement), let the aggregate
    decide (`decide(Payment) -> Change | None`), save the change by compare-and-set; read again and
    decide again when another write came first. Returns the payment as it now stands and whether
    this call changed it."""
    given = [first]  # the first attempt may use what the caller read; a retry reads again

    def step() -> tuple[Payment, bool]:
        doc = (given.pop() if given else None) or repo.payment_by_id(key)
        if doc is None:
            year, household_no = key.split(":")[:2]
            raise NotFound("PAYMENT_NOT_FOUND", "该户本年度无缴费记录", {"household_no": household_no, "year": int(year)})
        p = Payment(doc)
        change = decide(p)
        if change is None:
            return p, False
        repo.save_payment(doc, change, correlation_id)
        return p.applied(change), True
    return retry_stale(step)


def audit_payment(repo: PaymentsRepository, clock: Clock, year: int, household_no: str, actor: str, source: str,
                  correlation_id: str | None = None, payment: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """confirmed → audited with payments.payment.audited (registry then confirms the enrolment).
    Auditing an audited payment again is a no-op (it completes the money-log row a crash may have
    left out); a reversed one cannot be audited, whichever came first. With `payment` (already
    read, as a reconciliation does) that record alone is audited, two reads are saved and None
    is returned. Without it (staff audit the household-year) the household's payment and then
    its standing supplements (补缴) are audited; the first payment is returned."""
    now = clock.now()

    def audit(p: Payment) -> Change | None:
        return p.audit(now, actor, source)
    key = payment["_id"] if payment else hh_key(year, household_no)
    p, _ = _transition(repo, key, audit, correlation_id, payment)
    complete_audit(repo, p.doc)
    if payment:
        return None
    for doc in repo.supplements(year, household_no):
        if doc["status"] != "confirmed":
            if doc["status"] == "audited":
                complete_audit(repo, doc)
            continue
        try:
            s, _ = _transition(repo, doc["_id"], audit, correlation_id, doc)
        except Conflict as e:  # reversed since it was read: money that went back is not audited
            log.info("supplement %s not audited: %s", doc["_id"], e.code)
            continue
        complete_audit(repo, s.doc)
    return repo.payment(year, household_no)


def _audit_many(repo: PaymentsRepository, clock: Clock, docs: list[dict[str, Any]], actor: str, source: str,
                correlation_id: str | None) -> int:
    """audit_payment for many payments already read (a day's reconciliation): their transitions in
    one bulk compare-and-set with their events, their side records in one bulk write each, a few
    store commands whatever the number. When one lost a race (a reversal or an audit came first)
    they are audited one by one instead (each step is idempotent). Returns how many this call audited."""
    now = clock.now()
    changed = [(d, c) for d in docs if (c := Payment(d).audit(now, actor, source)) is not None]
    try:
        repo.save_payments(changed, correlation_id)
    except StaleVersion:
        n = 0
        for d, _c in changed:
            fresh = repo.payment_by_id(d["_id"])
            if fresh is None or fresh["status"] != "confirmed":
                if fresh is not None and fresh["status"] == "audited" and fresh.get("audited_by") == actor:
                    complete_audit(repo, fresh)  # written by the bulk write above
                    n += 1
                continue
            try:
                audit_payment(repo, clock, d["year"], d["household_no"], actor, source, correlation_id, fresh)
                n += 1
            except Conflict as e:  # reversed since it was read: money that went back is not audited
                log.info("payment %s not audited: %s", d["_id"], e.code)
        return n
    audited = [Payment(d).applied(c).doc for d, c in changed]
    repo.audits_settled(audited)
    repo.log_money_many([(d["_id"], "audited", d["audited_at"], d["audited_by"], d["amount_fen"],
                          {"order_no": d["order_no"], "source": source}) for d in audited])
    return len(audited)


def complete_audit(repo: PaymentsRepository, doc: dict[str, Any]) -> None:
    """The side records of an audit (idempotent): its money-log row; it no longer waits."""
    repo.audit_settled(doc)
    repo.log_money(doc["_id"], "audited", doc["audited_at"], doc["audited_by"], doc["amount_fen"],
                   order_no=doc["order_no"], source=doc.get("audit_source", "staff"))

def overdue_audits(repo: PaymentsRepository, clock: Clock, principal: Principal | None, year: int,
                   calendar: WorkCalendar | None = None) -> list[dict[str, Any]]:
    """Confirmed payments not audited within 3 working days (001 七(二)). `due_estimated`: the due date
    was counted through a year with no official holiday schedule yet (it may move when one arrives).

    Read from the open audits of each township's day (repository `audit_days`), not by scanning
    payments: a shard not due yet is not read, and only entries past their due date are checked
    against their payment (one an out-of-order redelivery wrote back after an audit is dropped
    there). Empty shards leave the index. `principal` None: the whole county (the daily digest)."""
    today = clock.today_shanghai()
    mine = principal.township if principal is not None and principal.role == "township" else None
    out = []
    for day, township in repo.audit_shards(year):
        if mine is not None and township != mine:
            continue
        due = audit_rules.audit_deadline(date.fromisoformat(day), year, calendar)
        if today <= due.day:
            continue  # not due yet: not even read
        entries = repo.open_audits(year, day, township)
        if not entries:
            repo.prune_audit_shard(year, day, township)
            continue
        for key, e in entries.items():
            p = repo.payment_by_id(key)
            if p is None or p["status"] != "confirmed":
                repo.audit_settled(p or {"_id": key, "year": year, "paid_day": day, "township": township})
                continue
            out.append({"household_no": e["household_no"], "order_no": e["order_no"], "township": township,
                        "village": e["village"], "amount_fen": e["amount_fen"], "paid_day": day,
                        "audit_due": due.day.isoformat(), "due_estimated": due.estimated})
    return sorted(out, key=lambda r: (r["audit_due"], r["household_no"]))


def report_overdue_audits(repo: PaymentsRepository, clock: Clock, year: int, county: str,
                          calendar: WorkCalendar | None = None) -> bool:
    """Once a day while audits are overdue, a digest to the tax bureau (payments.audits.overdue):
    how many and how much per township, the oldest payment's day. One write, a unique `_id` per
    day: a second worker, or a second pass the same day, publishes nothing."""
    rows = overdue_audits(repo, clock, None, year, calendar)
    if not rows:
        return False
    today = clock.today_shanghai().isoformat()
    event = audit_rules.overdue_digest(rows, year, county, today)
    return repo.report_overdue_audits(year, today, {"at": clock.now(), "payload": event.payload}, event)


# ---- reversals ---------------------------------------------------------------------------------

def reverse_payment(repo: PaymentsRepository, clock: Clock, gateway: str, data: dict[str, Any],
                    correlation_id: str | None) -> dict[str, Any]:
    """A gateway gave the money of an order back (reversal, or refund of an overpayment). If that
    order paid the household's enrolment, the payment is reversed with payments.payment.reversed
    and registry revokes the enrolment (a supplement's: its members' only); an overpaid order's
    refund revokes nothing.

    The transition is one compare-and-set write (the payment with its event, or the overpaid
    order); the same reversal again completes whatever a crash left out and answers `duplicate`."""
    order = order_status(repo, data["order_no"])
    if order.gateway != gateway:
        raise Forbidden("ORDER_GATEWAY_MISMATCH", "订单不属于该支付渠道")
    if order.status == "created":
        raise Conflict("ORDER_NOT_PAID", "订单尚未支付，无需冲正", {"order_no": order.order_no})
    if data["amount_fen"] != order.amount_fen:
        raise ValidationFailed("AMOUNT_MISMATCH", "冲正金额须等于订单金额（整户缴费不做部分冲正）",
                               {"order_fen": order.amount_fen, "reversal_fen": data["amount_fen"]})
    if data["transaction_id"] != order.transaction_id:
        raise ValidationFailed("TRANSACTION_MISMATCH", "交易流水号与订单的支付流水不符", {"order_no": order.order_no})
    now = clock.now()
    rid = data["reversal_id"]
    payment = recorded_payment(repo, order)
    revokes = payment is not None
    if revokes:
        reason = data.get("reason") or "gateway_reversal"
        if payment["status"] == "reversed" and "reversal" not in payment:  # reversed before reversals were kept on it
            prior = repo.reversal(order.order_no)
            if prior and prior["reversal_id"] != rid:
                raise Conflict("ORDER_ALREADY_REVERSED", "该订单已冲正", {"order_no": order.order_no})
        p, changed = _transition(repo, payment["_id"], lambda p: p.reverse(now, gateway, rid, reason),
                                 correlation_id, payment)
        complete_reversal(repo, p.doc)
        reason = (p.doc.get("reversal") or {}).get("reason", reason)
    else:
        reason = "overpayment"
        changed = _refund_overpayment(repo, order, now, gateway, rid)
    return {"code": "SUCCESS", "message": "成功", "order_no": order.order_no, "reason": reason,
            "revokes_enrolment": revokes, "duplicate": not changed}


def complete_reversal(repo: PaymentsRepository, doc: dict[str, Any]) -> None:
    """The side records of a reversed payment (each idempotent): the reversal record, the receipt
    marked reversed, the money-log row, the order's status. Run by the request after its write,
    by a retry of it, and by the worker from payments.payment.reversed."""
    r = doc.get("reversal")
    if r is None:  # reversed before reversals were kept on the payment: its request completed it
        return
    order_no = doc["order_no"]
    key = hh_key(doc["year"], doc["household_no"])  # a supplement's too: the household-year's rows together
    repo.add_reversal({"_id": order_no, "reversal_id": r["reversal_id"], "reason": r["reason"],
                       "amount_fen": doc["amount_fen"], "gateway": r["by"], "revokes_enrolment": True,
                       "at": r["at"], "household_key": key})
    issue_receipt(repo, doc)  # if the worker has not issued it yet, so that it is marked too
    repo.set_receipt_status(doc["receipt_no"], "reversed")
    repo.audit_settled(doc)
    repo.log_money(order_no, "reversed", r["at"], r["by"], -doc["amount_fen"], reason=r["reason"],
                   revokes_enrolment=True, household_key=key)

    def step() -> None:
        o = repo.order(order_no)
        change = o.reverse(r["at"], r["by"], r["reversal_id"], r["reason"], payment=doc) if o else None
        if change is not None:
            repo.save_order(o, change)
    retry_stale(step)


def _refund_overpayment(repo: PaymentsRepository, order: Order, at: datetime, gateway: str, rid: str) -> bool:
    """duplicate_payment → reversed. Its records go first and the order's transition last, so a
    crash before it leaves the refund unacknowledged and the gateway's retry completes it; the
    enrolment is not touched (no event). Returns whether this call made the transition."""
    stored = repo.order(order.order_no)
    stored.reverse(at, gateway, rid, "overpayment")  # refuses another reversal before anything is written
    key = hh_key(order.year, order.household_no)
    repo.add_reversal({"_id": order.order_no, "reversal_id": rid, "reason": "overpayment",
                       "amount_fen": order.amount_fen, "gateway": gateway, "revokes_enrolment": False, "at": at,
                       "household_key": key})
    repo.log_money(order.order_no, "reversed", at, gateway, -order.amount_fen, reason="overpayment",
                   revokes_enrolment=False, household_key=key)

    def step() -> bool:
        o = repo.order(order.order_no)
        change = o.reverse(at, gateway, rid, "overpayment")
        if change is None:
            return False
        repo.save_order(o, change)
        return True
    return retry_stale(step)

# ---- bank withholding (代扣) -----------------------------------------------------------------------

def sign_agreement(repo: PaymentsRepository, clock: Clock, principal: Principal, banks: set[str],
                   data: dict[str, Any]) -> dict[str, Any]:
    """Register (or sign again, replacing) a household's three-party agreement. Signing again keeps
    the hold of a batch awaiting its result, so that the household is not debited by a second one."""
    household = repo.household(data["year"], data["household_no"])
    if household is None:
        raise NotFound("HOUSEHOLD_UNKNOWN", "未找到该户的登记信息", {"household_no": data["household_no"]})
    principal.check_township(household["township"])
    if data["bank"] not in banks:
        raise ValidationFailed("BANK_UNKNOWN", "该银行未接入代扣", {"bank": data["bank"]})
    wh.check_account(data["account_no"], data["account_name"])
    head = next((m for m in household["members"] if m["name"] == household["head_name"]), household["members"][0])
    doc = {"_id": data["household_no"], "agreement_no": "WA" + data["household_no"],
           "household_no": data["household_no"], "bank": data["bank"], "account_no": data["account_no"],
           "account_name": data["account_name"].strip(), "signed_on": data["signed_on"].isoformat(),
           "status": "active", "county": household["county"], "township": household["township"],
           "village": household["village"], "head_id": head["person_id"], "pending_batch": None,
           "invalid_reason": None, "created_by": principal.subject, "created_at": clock.now()}

    def step() -> dict[str, Any]:
        current = repo.agreement(data["household_no"])
        if current is None:
            if repo.add_agreement(doc):
                return doc
            raise StaleVersion("signed at the same moment")
        fields = {k: v for k, v in doc.items() if k != "_id"}
        fields["pending_batch"] = current.get("pending_batch")
        repo.save_agreement(current, Change(fields))
        return {**doc, "pending_batch": fields["pending_batch"]}
    return retry_stale(step)


def create_batch(repo: PaymentsRepository, policy: PolicyYear, clock: Clock, principal: Principal,
                 data: dict[str, Any], batch_seq: str) -> dict[str, Any]:
    """A withholding batch for one bank: every household with an active agreement that is not paid
    and not in a batch awaiting its result; a retry batch takes the retryable failures of a batch
    (insufficient balance, bank error) again.

    The batch is written first (`holding`), then each household's agreement is held for it by
    compare-and-set; a household another batch holds first is skipped with IN_PENDING_BATCH, so
    two batches made at once never debit one household twice. A hold a crash left behind is
    finished or freed here (and by the worker's sweep), never by the passing of time."""
    bank, year, now = data["bank"], data["year"], clock.now()
    if data.get("retry_of"):
        src = repo.batch(data["retry_of"])
        if src is None:
            raise NotFound("BATCH_NOT_FOUND", "代扣批次不存在", {"batch_no": data["retry_of"]})
        if src["bank"] != bank or src["status"] != "result_imported":
            raise Conflict("BATCH_NOT_RETRYABLE", "只能对已回盘的同一银行批次发起重扣", {"batch_no": src["_id"]})
        candidates = [repo.agreement(l["household_no"]) for l in src["lines"] if l.get("retryable")]
        candidates = [a for a in candidates if a and a["status"] == "active" and a["bank"] == bank]
    else:
        candidates = repo.active_agreements(bank)
    batch_no = wh.new_batch_no(now.astimezone(SHANGHAI), batch_seq)
    planned, skipped = [], []
    for a in candidates:
        if a.get("pending_batch"):
            a = _free_left_over_hold(repo, clock, a)
            if a.get("pending_batch"):
                skipped.append({"household_no": a["household_no"], "code": "IN_PENDING_BATCH"})
                continue
        try:
            q = make_quote(repo, policy, clock, year, a["household_no"], supplements=False)
        except DomainError as e:
            skipped.append({"household_no": a["household_no"], "code": e.code})
            continue
        if q.total_fen == 0:
            skipped.append({"household_no": a["household_no"], "code": "ZERO_PAYABLE"})
            continue
        planned.append((a, Order.create(q, bank, "withholding", now, ttl=wh.WITHHOLDING_ORDER_TTL,
                                        household=repo.household(year, a["household_no"]))))
    if not planned:
        raise DomainError("BATCH_EMPTY", "没有可代扣的参保户", {"skipped": skipped[:50]})
    lines = []
    for n, (a, order) in enumerate(planned, start=1):
        repo.add_order(order)
        household = repo.household(year, a["household_no"])
        lines.append({"line_no": n, "order_no": order.order_no, "household_no": a["household_no"],
                      "agreement_no": a["agreement_no"], "account_no": a["account_no"],
                      "account_name": a["account_name"], "amount_fen": order.amount_fen,
                      "township": household["township"], "status": "sent"})
    doc = {"_id": batch_no, "bank": bank, "year": year, "retry_of": data.get("retry_of"), "status": "holding",
           "created_at": now, "created_by": principal.subject, "lines": lines, "skipped": skipped,
           "count": len(lines), "total_fen": sum(l["amount_fen"] for l in lines)}
    repo.add_batch(doc)
    doc = _hold_lines(repo, {**doc, "version": 1})
    if doc["status"] != "sent":
        raise DomainError("BATCH_EMPTY", "没有可代扣的参保户", {"skipped": doc["skipped"][:50]})
    repo.log_money(batch_no, "withholding_batch_created", now, principal.subject, doc["total_fen"], bank=bank,
                   count=doc["count"])
    return doc


def _hold_lines(repo: PaymentsRepository, batch: dict[str, Any]) -> dict[str, Any]:
    """holding → sent: hold each line's agreement for this batch (compare-and-set; one held by
    another batch is lost), then keep the lines held. Safe to run twice at once (a sweep finishing
    a batch its request is still making): a hold this call made for a line the batch did not
    keep is freed again. Returns the batch as it now stands."""
    made, held = set(), set()
    for line in batch["lines"]:
        hh = line["household_no"]

        def step() -> bool:
            a = repo.agreement(hh)
            if a is None:
                return False
            try:
                change = wh.hold(a, batch["_id"])
            except Conflict:
                return False  # IN_PENDING_BATCH: another batch holds it
            if change is not None:
                repo.save_agreement(a, change)
                made.add(hh)
            return True
        if retry_stale(step):
            held.add(hh)

    def finish() -> dict[str, Any]:
        b = repo.batch(batch["_id"])
        if b["status"] != "holding":
            return b
        change = wh.sent(b, held)
        repo.save_batch(b, change)
        return {**b, **change.set_, "version": b.get("version", 0) + 1}
    b = retry_stale(finish)
    for line in batch["lines"]:
        if not wh.holds_line(b, line["household_no"]):
            if line["household_no"] in made:
                _release(repo, line["household_no"], b["_id"])
            repo.drop_order(line["order_no"])  # never sent to the bank
    return b


def _release(repo: PaymentsRepository, household_no: str, batch_no: str) -> None:
    def step() -> None:
        a = repo.agreement(household_no)
        change = wh.release(a, batch_no) if a else None
        if change is not None:
            repo.save_agreement(a, change)
    retry_stale(step)


def _free_left_over_hold(repo: PaymentsRepository, clock: Clock, a: dict[str, Any]) -> dict[str, Any]:
    """An agreement held by a batch: if that batch is still `holding` (its request may have died),
    finish it first; if the batch does not (or no longer may) debit this household, free the hold.
    Returns the agreement as it now stands."""
    b = repo.batch(a["pending_batch"])
    if b is not None and b["status"] == "holding":
        b = _hold_lines(repo, b)
    if b is None or not wh.holds_line(b, a["household_no"]):
        _release(repo, a["household_no"], a["pending_batch"])
    return repo.agreement(a["household_no"]) or a


def import_results(repo: PaymentsRepository, clock: Clock, gateway: str, batch_no: str, text: str,
                   correlation_id: str | None) -> dict[str, Any]:
    """The bank's result file (回盘): validated whole before anything is written; then the batch's
    line results and a payments.withholding.failed per failure in one compare-and-set write
    (sent → result_imported); then each success is settled like a notification. Importing the
    same file again completes a crashed import, and so does the payments worker's sweep."""
    batch = repo.batch(batch_no)
    if batch is None:
        raise NotFound("BATCH_NOT_FOUND", "代扣批次不存在", {"batch_no": batch_no})
    if batch["bank"] != gateway:
        raise Forbidden("BATCH_BANK_MISMATCH", "该批次不属于此银行")
    file_hash = hashlib.sha256(text.encode()).hexdigest()
    if batch["status"] == "result_imported":
        if batch["result_hash"] != file_hash:
            raise Conflict("RESULT_ALREADY_IMPORTED", "该批次已回盘，不能以不同内容再次回盘", {"batch_no": batch_no})
    else:
        wh.check_exportable(batch)  # a batch still holding or cancelled never went to the bank
        results = wh.parse_results(text, batch)
        now = clock.now()
        by_line = {r.line_no: r for r in results}
        lines, events = [], []
        for l in batch["lines"]:
            r = by_line[l["line_no"]]
            lines.append({**l, "status": "paid" if r.ok else "failed", "result_code": r.code, "reason": r.reason,
                          "reason_text": r.reason_text, "retryable": r.retryable, "bank_txn_id": r.bank_txn_id,
                          "debited_at": r.debited_at, "message": r.message})
            if not r.ok:
                hh = repo.household(batch["year"], l["household_no"])
                events.append(Event("payments.withholding.failed", {
                    "batch_no": batch_no, "order_no": l["order_no"], "household_no": l["household_no"],
                    "year": batch["year"], "county": hh["county"], "township": hh["township"],
                    "village": hh["village"], "head_name": hh["head_name"], "head_phone": hh.get("head_phone"),
                    "amount_fen": l["amount_fen"], "bank": gateway, "reason": r.reason,
                    "reason_text": r.reason_text, "retryable": r.retryable}))
        try:
            repo.save_batch(batch, wh.results_imported(batch, lines, file_hash, now, _batch_summary(lines), events),
                            correlation_id)
        except StaleVersion:  # another import of this batch came first: this one is a repeat, or refused
            return import_results(repo, clock, gateway, batch_no, text, correlation_id)
        batch = repo.batch(batch_no)
    _finish_batch(repo, clock, batch, correlation_id)
    return {"batch_no": batch_no, **batch["summary"]}


def returned_to_town(repo: PaymentsRepository, principal: Principal, batch_no: str) -> list[dict[str, Any]]:
    """The failed lines of a batch that go back to the towns (002 六(二)3: 对余额不足的代扣帐户发回各镇),
    with the reason, for the town to urge a deposit or a new agreement; a township sees its own."""
    batch = repo.batch(batch_no)
    if batch is None:
        raise NotFound("BATCH_NOT_FOUND", "代扣批次不存在", {"batch_no": batch_no})
    if batch["status"] != "result_imported":
        raise Conflict("BATCH_RESULT_PENDING", "该批次尚未回盘", {"batch_no": batch_no})
    out = []
    for l in batch["lines"]:
        if l["status"] != "failed" or (principal.role == "township" and l["township"] != principal.township):
            continue
        out.append({"household_no": l["household_no"], "township": l["township"], "order_no": l["order_no"],
                    "amount_fen": l["amount_fen"], "account_no": wh.mask_account(l["account_no"]),
                    "reason": l["reason"], "reason_text": l["reason_text"], "retryable": l["retryable"]})
    return out


def _batch_summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
    failed: dict[str, int] = {}
    for l in lines:
        if l["status"] == "failed":
            failed[l["reason"]] = failed.get(l["reason"], 0) + 1
    paid = [l for l in lines if l["status"] == "paid"]
    return {"count": len(lines), "paid": len(paid), "paid_fen": sum(l["amount_fen"] for l in paid),
            "failed": len(lines) - len(paid), "failed_by_reason": failed,
            "retryable": sum(1 for l in lines if l.get("retryable"))}


def _finish_batch(repo: PaymentsRepository, clock: Clock, batch: dict[str, Any], correlation_id: str | None) -> None:
    """Idempotent: settle the successes, invalidate dead agreements, release the agreements, then
    mark the batch finished (what the worker's sweep looks for)."""
    now = clock.now()
    for l in batch["lines"]:
        if l["status"] == "paid":
            order = repo.order(l["order_no"])
            proof = {"agreement_no": l["agreement_no"], "batch_no": batch["_id"]}
            settle(repo, clock, order, l["bank_txn_id"], l["debited_at"], proof, correlation_id, actor=batch["bank"])
        else:
            _, _, _, agreement_valid = wh.classify(l["result_code"])
            if not agreement_valid:
                _invalidate(repo, l["household_no"], l["reason"], now)
            repo.log_money(l["order_no"], "withholding_failed", now, batch["bank"], 0, reason=l["reason"],
                           batch_no=batch["_id"], household_key=hh_key(batch["year"], l["household_no"]))
        _release(repo, l["household_no"], batch["_id"])
    if not batch.get("finished_at"):
        repo.mark_batch_finished(batch["_id"], now)


def _invalidate(repo: PaymentsRepository, household_no: str, reason: str, at: datetime) -> None:
    def step() -> None:
        a = repo.agreement(household_no)
        change = wh.invalidate(a, reason, at) if a else None
        if change is not None:
            repo.save_agreement(a, change)
    retry_stale(step)


def redrive_batches(repo: PaymentsRepository, clock: Clock) -> int:
    """The payments worker's sweep: finish batches a crash left half done (holding: hold or drop
    their lines; imported: settle, invalidate, release). Returns how many it touched."""
    n = 0
    for b in repo.unfinished_batches():
        if b["status"] == "holding":
            _hold_lines(repo, b)
        else:
            _finish_batch(repo, clock, b, None)
        n += 1
    return n


# ---- reconciliation (对账) and remittances (解款) -------------------------------------------------

def import_statement(repo: PaymentsRepository, clock: Clock, gateway: str, data: dict[str, Any],
                     correlation_id: str | None) -> dict[str, Any]:
    """A gateway's statement of one Shanghai day against the orders it was paid for here. Matched
    household payments are audited at once (the reconciliation is the verification)."""
    day = data["date"].isoformat()
    now = clock.now()
    named = list(dict.fromkeys(line["order_no"] for line in data["lines"]))
    orders = {o["_id"]: o for o in repo.paid_orders(gateway, day, also=named)}
    recorded = {}  # order number → its payment record's `_id` (a supplement's is not the household's)
    for o in repo.orders([no for no in named if no not in orders]).values():  # recorded, order not marked yet
        p = payment_of(repo, o.year, o.household_no, o.order_no, bool(o.supplement)) if o.gateway == gateway else None
        if p is not None and p.get("paid_day") == day:
            recorded[p["order_no"]] = p["_id"]
            orders[p["order_no"]] = {"_id": p["order_no"], "year": p["year"], "household_no": p["household_no"],
                                     "transaction_id": p["transaction_id"], "amount_fen": p["amount_fen"],
                                     "status": "reversed" if p["status"] == "reversed" else "paid"}
    platform = [{"order_no": no, "transaction_id": o["transaction_id"], "amount_fen": o["amount_fen"]}
                for no, o in orders.items()]
    report = reconcile(data["lines"], platform)
    actor = f"reconciliation:{gateway}:{day}"
    paid = [orders[no] for no in report["matched"] if orders[no]["status"] == "paid"]
    plain = repo.payments_by_id([recorded.get(o["_id"]) or hh_key(o["year"], o["household_no"])
                                 for o in paid if not o.get("supplement")])
    payments = [p for o in paid if (p := (plain.get(recorded.get(o["_id"]) or hh_key(o["year"], o["household_no"]))
                                          if not o.get("supplement") else
                                          payment_of(repo, o["year"], o["household_no"], o["_id"], True)))
                and p["order_no"] == o["_id"] and p["status"] == "confirmed"]
    report["audited"] = _audit_many(repo, clock, payments, actor, "reconciliation", correlation_id)
    repo.save_reconciliation({"_id": f"{gateway}:{day}", "gateway": gateway, "date": day, "imported_at": now,
                              "statement_lines": len(data["lines"]), "report": report})
    repo.log_money(f"{gateway}:{day}:{iso(now)}", "reconciled", now, gateway, report["statement_total_fen"],
                   balanced=report["balanced"], difference_fen=report["difference_fen"])
    return {"gateway": gateway, "date": day, **report}


def remittances(repo: PaymentsRepository, policy: PolicyYear, clock: Clock, principal: Principal,
                year: int) -> list[dict[str, Any]]:
    """From the townships' day counters (kept by the payments worker from confirmed and reversed
    events, a second or so behind the gateways), never a scan of the payments."""
    townships = [principal.township] if principal.role == "township" else [t.name for t in policy.townships]
    today = clock.today_shanghai()
    opens = policy.window_opens
    days = repo.remittance_days(year, townships, opens, max(opens, min(today, opens + timedelta(days=730))))
    last = max(days, default="")
    until = min(today, max(policy.window_closes, date.fromisoformat(last) if last else policy.window_closes))
    return remittance_summary(days, opens, until, closes=policy.window_closes)
