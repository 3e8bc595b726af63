"""Payments storage. Every hot path is an `_id` lookup or a unique `_id` insert:

- `households`   read model fed by registry events, `_id` "<year>:<household_no>"
- `entitlements` read model fed by subsidy events, `_id` "<year>:<person_id>", changes keyed by event id
- `duplicate_cases` read model of registry.duplicate.changed, `_id` "<year>:<person_id>" (newest wins):
                  an open case holds the household's quote
- `mid_year_approvals` read model of registry.mid_year.approved, `_id` "<year>:<person_id>" (newest
                  wins): whom a quote after the window charges, and at which standard
- `orders`       `_id` order number; its status moves by compare-and-set on `version` (domain ORDER)
- `idempotency`  `_id` "<gateway>:<Idempotency-Key>" → order number and body hash
- `nonces`       `_id` "<gateway>:<nonce>" (replay protection)
- `payments`     `_id` "<year>:<household_no>": at most one confirmed payment per household-year,
                  written with its payments.payment.confirmed event (the exactly-once step); later
                  audited or reversed by compare-and-set on its `version` (domain.payment), each
                  write carrying its event. Supplementary payments (补缴) for members who joined
                  after it: `_id` "<year>:<household_no>:<n>", n = 2, 3, ... (domain.model
                  supplement_key), each claimed by the same unique insert, read by `_id` in order
- `receipts`     `_id` receipt number (one per household payment)
- `money_log`    audit log of every state change of money, `_id` "<ref>:<action>" (written once)
- `agreements`   three-party withholding agreements, `_id` household number; `pending_batch` (the
                  hold) and `status` change by compare-and-set on `version`
- `withholding_batches` `_id` batch number, lines inside, states by compare-and-set on `version`
                  (domain.withholding BATCH); failures' events ride in it
- `reconciliations` `_id` "<gateway>:<date>": the last report of a gateway's daily statement
- `reversals`    `_id` order number: the money of that order went back (a record written after the
                  transition; the transition itself is in the payment or the order)
- `settings`     `_id` "receipt_check_key": the key of receipt check codes, made once per database
- `audit_days`   `_id` "<year>:<paid day>|<township>": the payments of that township's day still
                  waiting for the tax bureau's audit (`open`, keyed by payment `_id`); joined when a
                  payment is recorded, left when it is audited or reversed, so the overdue audits
                  are read from a few small documents instead of scanning `payments`
- `audit_index`  `_id` "<year>": the shards ("<day>|<township>") that may hold open audits
- `overdue_audit_reports` `_id` "<year>:<day>": the day's overdue-audit digest, written once with
                  its payments.audits.overdue event
"""
from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from shared.store import (Count, count_many, keep_newest, keep_newest_many, shard_key, GroupInsert, IndexSpec, KeyIndex, OutboxWriter, find_by_ids,
                          insert_many_once, insert_once)
from shared.workdays import YearSchedule

from ..domain.reconciliation import remitted
from ..domain.model import Entitlement, MidYearApproval, Order, QuoteLine, supplement_key
from ..domain.payment import Change

HOUSEHOLDS, ORDERS, IDEMPOTENCY, NONCES, PAYMENTS = "households", "orders", "idempotency", "nonces", "payments"
NONCE_TTL_SECONDS = 3600  # > twice the signature window (a timestamp may be ±300 s off): replays stay refused
ENTITLEMENTS, RECEIPTS, MONEY_LOG = "entitlements", "receipts", "money_log"
DUPLICATE_CASES, MID_YEAR_APPROVALS = "duplicate_cases", "mid_year_approvals"
HOLIDAY_SCHEDULES = "holiday_schedules"  # registry.holidays.published, `_id` = the year
AGREEMENTS, BATCHES, RECONCILIATIONS, REVERSALS, SETTINGS = (
    "agreements", "withholding_batches", "reconciliations", "reversals", "settings")
AUDIT_DAYS, AUDIT_INDEX, OVERDUE_REPORTS = "audit_days", "audit_index", "overdue_audit_reports"
PAID_DAYS = "paid_days"  # KeyIndex: a gateway's orders paid on a Shanghai day, "<gateway>:<day>#<shard>"
PAID_DAY_SHARDS = 16
MONEY_DAYS = "money_days"  # KeyIndex: the money-log rows of a Shanghai hour, "<day>T<HH>#<shard>"
MONEY_HOUR_SHARDS = 16  # a busy hour's rows in 16 lists: each append rewrites one (at 4, a 12,000-row hour
# of the county-size benchmark made ~100 kB rewrites per payment, the heaviest write of the request path);
# the first 4 are the lists of the 4-shard layout, so rows listed before are still read
AGREEMENTS_BY_BANK = "agreements_by_bank"  # KeyIndex: a bank's active agreements, "<bank>#<shard>"
AGREEMENT_SHARDS = 16
REMITTANCE_DAYS = "remittance_days"  # counters: a township's day of remittance totals, "<year>:<day>:<township>"  # a busy gateway's day (~20,000 orders in a large county) in lists of ~1,250
OUTBOX_COLLECTIONS = (PAYMENTS, BATCHES, OVERDUE_REPORTS)
# every kind of money-log row: a reference's rows are read by `_id` "<ref>:<action>", one per kind
MONEY_ACTIONS = ("order_created", "confirmed", "overpaid", "paid_twice", "audited", "reversed",
                 "withholding_batch_created", "withholding_failed", "reconciled")
INDEXES = (
    IndexSpec(ORDERS, (("household_key", 1),)),
    IndexSpec(PAYMENTS, (("order_no", 1),), unique=True),
    IndexSpec(PAYMENTS, (("status", 1), ("paid_day", 1))),
    IndexSpec(NONCES, (("at", 1),), expire_after_seconds=NONCE_TTL_SECONDS),  # + cleanup loop on FerretDB
    IndexSpec(MONEY_LOG, (("ref", 1),)),
)


def audit_shard(paid_day: str, township: str) -> str:
    """A shard of the open audits: one township's paid day ("<day>|<township>")."""
    return f"{paid_day}|{township}"


def _paid_day_key(gateway: str, day: str, order_no: str) -> str:
    return shard_key(f"{gateway}:{day}", order_no, PAID_DAY_SHARDS)


def hh_key(year: int, household_no: str) -> str:
    return f"{year}:{household_no}"


def line_to_doc(l: QuoteLine) -> dict[str, Any]:
    return {"person_id": l.person_id, "name": l.name, "standard_fen": l.standard_fen, "subsidy_fen": l.subsidy_fen,
            "category": l.category, **({"benefits_rule": l.benefits_rule} if l.benefits_rule else {})}


def order_to_doc(o: Order) -> dict[str, Any]:
    return {"_id": o.order_no, "household_no": o.household_no, "household_key": hh_key(o.year, o.household_no),
            "year": o.year, "gateway": o.gateway, "channel": o.channel, "amount_fen": o.amount_fen,
            "lines": [line_to_doc(l) for l in o.lines],
            "created_at": o.created_at, "expires_at": o.expires_at, "status": o.status,
            "transaction_id": o.transaction_id, "paid_at": o.paid_at, "receipt_no": o.receipt_no,
            "payer": o.payer, "version": o.version or 1, **({"supplement": True} if o.supplement else {})}


def order_from_doc(d: dict[str, Any]) -> Order:
    return Order(d["_id"], d["household_no"], d["year"], d["gateway"], d["channel"], d["amount_fen"],
                 tuple(QuoteLine(l["person_id"], l["name"], l["standard_fen"], l["subsidy_fen"], l.get("category"),
                                 l.get("benefits_rule")) for l in d["lines"]),
                 d["created_at"], d["expires_at"], d["status"], d.get("transaction_id"), d.get("paid_at"),
                 d.get("receipt_no"), d.get("payer"), int(d.get("version", 0)), d.get("reversal"),
                bool(d.get("supplement")))


class PaymentsRepository:
    def __init__(self, db, outbox: OutboxWriter):
        self.db = db
        self.outbox = outbox
        self._nonces = GroupInsert(db[NONCES])  # every signed call writes one: grouped across threads
        self._receipt_key: bytes | None = None
        self.paid_days = KeyIndex(db[PAID_DAYS])
        self.money_days = KeyIndex(db[MONEY_DAYS])
        self.active_by_bank = KeyIndex(db[AGREEMENTS_BY_BANK])

    # ---- read models -----------------------------------------------------------------------
    def upsert_household(self, payload: dict[str, Any], seq: str = "") -> None:
        """Keep the newest household snapshot (registered, then changed): an older one redelivered
        late never overwrites a newer one (one atomic write, shared.store.keep_newest)."""
        key = hh_key(payload["year"], payload["household_no"])
        fields = {k: v for k, v in payload.items() if k not in ("change", "reason")}
        keep_newest(self.db[HOUSEHOLDS], key, {**fields, "snapshot_seq": seq}, seq or "")

    def upsert_households(self, rows: list[tuple[dict[str, Any], str]]) -> None:
        """upsert_household for a batch of (snapshot, seq): a few store commands (keep_newest_many)."""
        keep_newest_many(self.db[HOUSEHOLDS], [
            (hh_key(p["year"], p["household_no"]),
             {**{k: v for k, v in p.items() if k not in ("change", "reason")}, "snapshot_seq": seq}, seq or "")
            for p, seq in rows])

    def end_household(self, payload: dict[str, Any], seq: str = "") -> None:
        """registry.household.dissolved: keep the record, marked, so a quote says why it is refused
        (unless a newer snapshot is stored already)."""
        key = hh_key(payload["year"], payload["household_no"])
        try:
            self.db[HOUSEHOLDS].update_one({"_id": key, "_order": {"$not": {"$gt": seq or ""}}}, {"$set": {
                "merged_into": payload["merged_into"], "snapshot_seq": seq, "_order": seq or ""}}, upsert=True)
        except DuplicateKeyError:
            pass

    def household(self, year: int, household_no: str) -> dict[str, Any] | None:
        return self.db[HOUSEHOLDS].find_one({"_id": hh_key(year, household_no)})

    def add_entitlement_change(self, event_id: str, seq: str, occurred_at: str, p: dict[str, Any]) -> None:
        """Idempotent by event id: a redelivery sets the same field to the same value."""
        key = f"{p['year']}:{p['person_id']}"
        self.db[ENTITLEMENTS].update_one({"_id": key}, {"$set": {f"changes.{event_id}": {
            "category": p.get("category"), "subsidy_fen": p["subsidy_fen"], "full_coverage": p.get("full_coverage", False),
            "department": p.get("department"), "effective_from": p["effective_from"], "reason": p.get("reason", ""),
            "occurred_at": occurred_at, "seq": seq}}}, upsert=True)

    def entitlement_changes(self, year: int, person_ids: list[str]) -> dict[str, list[Entitlement]]:
        """Each member's entitlement changes (none for most: they hold no identity), in one read."""
        found = self._by_person(ENTITLEMENTS, year, person_ids)
        return {pid: [Entitlement(c["category"], c["subsidy_fen"], c["full_coverage"],
                                  date.fromisoformat(c["effective_from"][:10]), c.get("occurred_at", ""), c.get("seq", ""))
                      for c in (found.get(pid, {}).get("changes") or {}).values()] for pid in person_ids}

    def upsert_duplicate(self, payload: dict[str, Any], seq: str = "") -> None:
        """Keep registry's newest word on a person's duplicate case (open, re-opened, resolved)."""
        _keep_newest(self.db[DUPLICATE_CASES], f"{payload['year']}:{payload['person_id']}", payload, seq)

    def open_duplicates(self, year: int, person_ids: list[str]) -> set[str]:
        """The members whose duplicate case is open."""
        return {pid for pid, d in self._by_person(DUPLICATE_CASES, year, person_ids, {"status": 1}).items()
                if d.get("status") == "open"}

    def upsert_holiday_schedule(self, payload: dict[str, Any], seq: str = "") -> bool:
        """Keep registry's newest loaded schedule of a year (its version wins; a late older one is dropped)."""
        return keep_newest(self.db[HOLIDAY_SCHEDULES], str(payload["year"]), {**payload, "seq": seq},
                           payload["version"])

    def holiday_schedules(self) -> list[YearSchedule]:
        """Every year's official schedule payments knows (a few small documents: read whole, every 30 s)."""
        return [YearSchedule(d["year"], d["source"], {date.fromisoformat(h["date"]): h["name"] for h in d["holidays"]},
                             {date.fromisoformat(w["date"]): w["name"] for w in d["workdays"]})
                for d in self.db[HOLIDAY_SCHEDULES].find({})]

    def upsert_mid_year(self, payload: dict[str, Any], seq: str = "") -> None:
        _keep_newest(self.db[MID_YEAR_APPROVALS], f"{payload['year']}:{payload['person_id']}", payload, seq)

    def mid_year_approvals(self, year: int, person_ids: list[str]) -> dict[str, MidYearApproval]:
        """The members approved for mid-year enrolment."""
        return {pid: MidYearApproval(d["pays"], d["code"], d["reason"], d.get("benefits_rule"))
                for pid, d in self._by_person(MID_YEAR_APPROVALS, year, person_ids).items()
                if d.get("status") != "withdrawn"}

    def mid_year_version(self, year: int, person_id: str) -> int:
        """The newest version of the person's approval payments has seen (0: none yet)."""
        d = self.db[MID_YEAR_APPROVALS].find_one({"_id": f"{year}:{person_id}"}, {"version": 1})
        return int((d or {}).get("version") or 0)

    def _by_person(self, coll: str, year: int, person_ids: list[str],
                   projection: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
        """A person-year read model's documents for these people, by one `_id $in` read (which the
        local store's launcher answers from its index; one lookup per person before: ≈ 12 store
        commands of a payment's quote and order, bench: tools.simulate with STORE_TRACE)."""
        by_id = {f"{year}:{pid}": pid for pid in person_ids}
        return {by_id[d["_id"]]: d for d in find_by_ids(self.db[coll], by_id, projection)}

    # ---- payments --------------------------------------------------------------------------
    def payment(self, year: int, household_no: str) -> dict[str, Any] | None:
        return self.db[PAYMENTS].find_one({"_id": hh_key(year, household_no)}, {"_outbox": 0})

    def payments_by_id(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """Payments by `_id`, one `_id $in` read for the lot; absent ones left out."""
        return {d["_id"]: d for d in find_by_ids(self.db[PAYMENTS], keys, {"_outbox": 0})}

    def payment_by_id(self, key: str) -> dict[str, Any] | None:
        return self.db[PAYMENTS].find_one({"_id": key}, {"_outbox": 0})

    def payment_at(self, year: int, household_no: str, number: int) -> dict[str, Any] | None:
        """The household-year's `number`-th payment (1: its first; 2, 3, ...: supplements)."""
        return self.db[PAYMENTS].find_one({"_id": supplement_key(year, household_no, number)}, {"_outbox": 0})

    def supplements(self, year: int, household_no: str) -> list[dict[str, Any]]:
        """The household-year's supplementary payments in order: `_id` lookups until the first
        number not taken (numbers are claimed in order and never freed)."""
        out, n = [], 2
        while (doc := self.payment_at(year, household_no, n)) is not None:
            out.append(doc)
            n += 1
        return out

    def count_remitted(self, items: list[tuple[dict[str, Any], int]]) -> None:
        """Each (payment, sign) into its township's day of remittance totals once: +1 from its
        confirmed event, -1 from its reversed event (facts `+<_id>` and `-<_id>`; count_many)."""
        count_many(self.db, REMITTANCE_DAYS, [
            Count(f"{p['year']}:{p['paid_day']}:{p['township']}", f"{'+' if sign > 0 else '-'}{p['_id']}",
                  remitted(p, sign), {"payment": p["_id"]}) for p, sign in items])

    def remittance_days(self, year: int, townships: list[str], first: date, last: date) -> dict[str, dict[str, Any]]:
        """Day totals of the townships from `first` to `last` (one `_id $in` read of their counters),
        summed over the townships; days without any are left out."""
        days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
        out: dict[str, dict[str, Any]] = {}
        for d in find_by_ids(self.db[REMITTANCE_DAYS], [f"{year}:{day}:{t}" for day in days for t in townships]):
            day = out.setdefault(d["_id"].split(":")[1], {"households": 0, "amount_fen": 0, "subsidy_fen": 0,
                                                         "by_channel": {}, "by_gateway": {}})
            for k in ("households", "amount_fen", "subsidy_fen"):
                day[k] += d.get(k, 0)
            for group in ("by_channel", "by_gateway"):
                for key, fen in (d.get(group) or {}).items():
                    day[group][key] = day[group].get(key, 0) + fen
        return out

    def payments_where(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        """Staff reports only (a scan on FerretDB; indexed on MongoDB)."""
        return list(self.db[PAYMENTS].find(flt, {"_outbox": 0}))

    def record_payment(self, doc: dict[str, Any], event, correlation_id: str | None) -> bool:
        """The exactly-once step: one payment per household-year, written with its event."""
        try:
            self.outbox.insert(PAYMENTS, doc, [event], correlation_id=correlation_id)
            return True
        except DuplicateKeyError:
            return False

    def save_payment(self, doc: dict[str, Any], change: Change, correlation_id: str | None = None) -> None:
        """A transition of the payment read as `doc`, with its events; StaleVersion if it changed since."""
        self._save(PAYMENTS, doc, change, correlation_id)

    def save_payments(self, changed: list[tuple[dict[str, Any], Change]], correlation_id: str | None = None) -> None:
        """save_payment for many: one insert of their events' pointers, one bulk compare-and-set
        (StaleVersion if any lost a race; the others are written)."""
        self.outbox.save_versioned_many(PAYMENTS, [
            (doc["_id"], int(doc.get("version", 0)), change.update(),
             self.outbox.envelopes(change.events, correlation_id, None)) for doc, change in changed])

    def audits_settled(self, docs: list[dict[str, Any]]) -> None:
        """audit_settled for many, one bulk write (one update per shard)."""
        by_shard: dict[str, list[str]] = {}
        for d in docs:
            by_shard.setdefault(f"{d['year']}:{audit_shard(d['paid_day'], d['township'])}", []).append(d["_id"])
        if by_shard:
            self.db[AUDIT_DAYS].bulk_write([UpdateOne({"_id": k}, {"$unset": {f"open.{i}": "" for i in ids}})
                                            for k, ids in by_shard.items()], ordered=False)

    def _save(self, coll: str, doc: dict[str, Any], change: Change, correlation_id: str | None = None) -> None:
        self.outbox.save_versioned(coll, doc["_id"], int(doc.get("version", 0)), change.update(), change.events,
                                   correlation_id=correlation_id)

    # ---- orders ----------------------------------------------------------------------------
    def order(self, order_no: str) -> Order | None:
        d = self.db[ORDERS].find_one({"_id": order_no})
        return order_from_doc(d) if d else None

    def orders(self, order_nos: list[str]) -> dict[str, Order]:
        """Orders by number, one `_id $in` read."""
        return {d["_id"]: order_from_doc(d) for d in find_by_ids(self.db[ORDERS], order_nos)}

    def order_doc(self, order_no: str) -> dict[str, Any] | None:
        return self.db[ORDERS].find_one({"_id": order_no})

    def add_order(self, o: Order) -> None:
        self.db[ORDERS].insert_one(order_to_doc(o))

    def drop_order(self, order_no: str) -> None:
        self.db[ORDERS].delete_one({"_id": order_no, "status": "created"})

    def save_order(self, o: Order, change: Change) -> None:
        """A transition of the order as read (Order.version); StaleVersion if it changed since."""
        self.save_orders([(o, change)])

    def save_orders(self, changed: list[tuple[Order, Change]]) -> None:
        """Transitions of orders as read, one bulk compare-and-set (StaleVersion if any lost a race;
        the others are written). An order that gets its paid day is listed under its gateway's day
        first (the reconciliation's list, `paid_orders`)."""
        by_key: dict[str, list[str]] = {}
        for o, change in changed:
            if change.set_.get("paid_day"):
                by_key.setdefault(_paid_day_key(o.gateway, change.set_["paid_day"], o.order_no), []).append(o.order_no)
        self.paid_days.add_many(by_key)
        if len(changed) == 1:
            [(o, change)] = changed
            self.outbox.save_versioned(ORDERS, o.order_no, o.version, change.update())
        else:
            self.outbox.save_versioned_many(ORDERS, [(o.order_no, o.version, change.update(), [])
                                                     for o, change in changed])

    def paid_orders(self, gateway: str, day: str, also: list[str] = ()) -> list[dict[str, Any]]:
        """The gateway's orders paid (or paid twice, or reversed) on a Shanghai day: its day's lists,
        then the orders by `_id` (with `also`, the order numbers a statement names), whatever the
        county's size. Listed orders that turn out to be of another day are dropped from the list."""
        keys = [f"{gateway}:{day}#{i}" for i in range(PAID_DAY_SHARDS)]
        listed = self.paid_days.documents(keys, self.db[ORDERS],
                                          lambda _k, d: (d.get("gateway"), d.get("paid_day")) == (gateway, day),
                                          pending=lambda _k, d: d.get("status") == "created")  # marking in flight
        docs = {d["_id"]: d for d in listed}
        docs.update({d["_id"]: d for d in find_by_ids(self.db[ORDERS], [no for no in also if no not in docs])
                     if (d.get("gateway"), d.get("paid_day")) == (gateway, day)})
        return [d for d in docs.values() if d.get("status") in ("paid", "duplicate_payment", "reversed")]

    def idempotent(self, gateway: str, key: str) -> dict[str, Any] | None:
        return self.db[IDEMPOTENCY].find_one({"_id": f"{gateway}:{key}"})

    def claim_idempotency(self, gateway: str, key: str, order_no: str, body_hash: str, at: datetime) -> bool:
        return insert_once(self.db[IDEMPOTENCY], {"_id": f"{gateway}:{key}", "order_no": order_no,
                                                  "body_hash": body_hash, "at": at})

    def use_nonce(self, gateway: str, nonce: str, at: datetime) -> bool:
        return self._nonces.insert_once({"_id": f"{gateway}:{nonce}", "at": at})

    def forget_nonces(self, before: datetime, limit: int = 1000) -> int:
        """Nonces used before `before` (past the signature window, replays of them are refused by
        their timestamp), at most `limit` per call; deleted by `_id`."""
        ids = [d["_id"] for d in self.db[NONCES].find({"at": {"$lt": before}}, {"_id": 1}).limit(limit)]
        return self.db[NONCES].delete_many({"_id": {"$in": ids}}).deleted_count if ids else 0

    # ---- receipts, the money log and claims ------------------------------------------------
    def receipt_key(self) -> bytes:
        """Made once per database and kept there (never in the repository or the image)."""
        if self._receipt_key is None:
            insert_once(self.db[SETTINGS], {"_id": "receipt_check_key", "key": secrets.token_hex(32)})
            self._receipt_key = bytes.fromhex(self.db[SETTINGS].find_one({"_id": "receipt_check_key"})["key"])
        return self._receipt_key

    def add_receipt(self, doc: dict[str, Any]) -> bool:
        return insert_once(self.db[RECEIPTS], doc)

    def add_receipts(self, docs: list[dict[str, Any]]) -> None:
        """add_receipt for a batch, one insert (a receipt written before stands)."""
        insert_many_once(self.db[RECEIPTS], docs)

    def receipt(self, receipt_no: str) -> dict[str, Any] | None:
        return self.db[RECEIPTS].find_one({"_id": receipt_no})

    def set_receipt_status(self, receipt_no: str, status: str) -> None:
        self.db[RECEIPTS].update_one({"_id": receipt_no}, {"$set": {"status": status}})

    def log_money(self, ref: str, action: str, at: datetime, actor: str, amount_fen: int, **details: Any) -> None:
        """One row per state change of money; written once per (ref, action)."""
        self.log_money_many([(ref, action, at, actor, amount_fen, details)])

    def log_money_many(self, rows: list[tuple[str, str, datetime, str, int, dict[str, Any]]]) -> None:
        """log_money for a batch of (ref, action, at, actor, amount_fen, details), one insert."""
        from shared.clock import SHANGHAI
        for _ref, action, *_ in rows:
            if action not in MONEY_ACTIONS:
                raise ValueError(f"unknown money-log action {action!r}")  # money_log_of reads only these
        docs = [{"_id": f"{ref}:{action}", "ref": ref, "action": action, "at": at,
                 "day": at.astimezone(SHANGHAI).date().isoformat(), "actor": actor, "amount_fen": amount_fen, **details}
                for ref, action, at, actor, amount_fen, details in rows]
        by_key: dict[str, list[str]] = {}
        for d in docs:  # listed under its hour first (money_log_of_day)
            hour = f"{d['day']}T{d['at'].astimezone(SHANGHAI).hour:02d}"
            by_key.setdefault(shard_key(hour, d["_id"], MONEY_HOUR_SHARDS), []).append(d["_id"])
        self.money_days.add_many(by_key)
        insert_many_once(self.db[MONEY_LOG], docs)

    def money_log_of(self, ref: str) -> list[dict[str, Any]]:
        """Every row of one reference, oldest first: one `_id` read per kind of change (MONEY_ACTIONS),
        never a scan of the log."""
        rows = [self.db[MONEY_LOG].find_one({"_id": f"{ref}:{action}"}) for action in MONEY_ACTIONS]
        return sorted((r for r in rows if r is not None), key=lambda r: r["at"])

    def money_log_of_day(self, day: str, offset: int = 0, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """A Shanghai day's rows in time order from `offset` (staff's audit report, a page at a time),
        and how many the day lists: the hours' lists (one `_id $in` read) say which hours hold the
        page, and only those hours' rows are read by `_id`, never a scan of the log."""
        hours = [f"{day}T{h:02d}" for h in range(24)]
        listed = self.money_days.members_of([f"{h}#{k}" for h in hours for k in range(MONEY_HOUR_SHARDS)])
        sizes = {h: sum(len(listed.get(f"{h}#{k}", ())) for k in range(MONEY_HOUR_SHARDS)) for h in hours}
        total, start, wanted = sum(sizes.values()), 0, []
        for h in hours:  # the hours the page falls in, and how many rows come before the first of them
            if start + sizes[h] <= offset and not wanted:
                start += sizes[h]
                continue
            if sizes[h]:
                wanted.append(h)
            if start + sum(sizes[w] for w in wanted) >= offset + limit:
                break
        rows = self.money_days.documents([f"{h}#{k}" for h in wanted for k in range(MONEY_HOUR_SHARDS)],
                                         self.db[MONEY_LOG], lambda _k, d: d["day"] == day)
        rows.sort(key=lambda r: (r["at"], r["_id"]))
        return rows[offset - start:offset - start + limit], total

    # ---- withholding -----------------------------------------------------------------------
    def agreement(self, household_no: str) -> dict[str, Any] | None:
        return self.db[AGREEMENTS].find_one({"_id": household_no})

    def add_agreement(self, doc: dict[str, Any]) -> bool:
        self._list_active(doc)
        return insert_once(self.db[AGREEMENTS], {**doc, "version": 1})

    def save_agreement(self, doc: dict[str, Any], change: Change) -> None:
        """A change of the agreement read as `doc` (its hold, its status, a new signature);
        StaleVersion if it changed since: two batches never both hold one household."""
        self._list_active({**doc, **change.set_})
        self._save(AGREEMENTS, doc, change)

    def _list_active(self, agreement: dict[str, Any]) -> None:
        """Before a write that makes an agreement active (signed, or signed again): its bank's list."""
        if agreement.get("status") == "active" and agreement.get("bank"):
            self.active_by_bank.add(shard_key(agreement["bank"], agreement["_id"], AGREEMENT_SHARDS), [agreement["_id"]])

    def active_agreements(self, bank: str) -> list[dict[str, Any]]:
        """The bank's active agreements in household order (batch creation): its lists, then the
        agreements by `_id`; one no longer active, or moved to another bank, leaves the list."""
        docs = self.active_by_bank.documents([f"{bank}#{i}" for i in range(AGREEMENT_SHARDS)], self.db[AGREEMENTS],
                                             lambda _k, d: d.get("bank") == bank and d.get("status") == "active")
        return sorted(docs, key=lambda d: d["_id"])

    def batch(self, batch_no: str) -> dict[str, Any] | None:
        return self.db[BATCHES].find_one({"_id": batch_no}, {"_outbox": 0})

    def add_batch(self, doc: dict[str, Any]) -> None:
        self.outbox.insert(BATCHES, {**doc, "version": 1})

    def save_batch(self, doc: dict[str, Any], change: Change, correlation_id: str | None = None) -> None:
        self._save(BATCHES, doc, change, correlation_id)

    def mark_batch_finished(self, batch_no: str, at: datetime) -> None:
        """Every line of an imported batch has its effects (settled, invalidated, released)."""
        self.db[BATCHES].update_one({"_id": batch_no}, {"$set": {"finished_at": at}})

    def unfinished_batches(self) -> list[dict[str, Any]]:
        """Batches a crash may have left half done (still holding, or imported and not finished):
        the worker's sweep only; batches are a few per bank and season, so the scan is small."""
        return list(self.db[BATCHES].find({"$or": [{"status": "holding"},
                                                   {"status": "result_imported", "finished_at": None}]},
                                          {"_outbox": 0}))

    # ---- reconciliation and reversals ------------------------------------------------------
    def save_reconciliation(self, doc: dict[str, Any]) -> None:
        self.db[RECONCILIATIONS].replace_one({"_id": doc["_id"]}, doc, upsert=True)

    def reconciliation(self, key: str) -> dict[str, Any] | None:
        return self.db[RECONCILIATIONS].find_one({"_id": key})

    def reversal(self, order_no: str) -> dict[str, Any] | None:
        return self.db[REVERSALS].find_one({"_id": order_no})

    def add_reversal(self, doc: dict[str, Any]) -> bool:
        return insert_once(self.db[REVERSALS], doc)

    # ---- audits waiting (缴款审核) ------------------------------------------------------------
    def await_audit(self, doc: dict[str, Any]) -> None:
        """A confirmed payment joins the open audits of its paid day and township, then that shard
        joins the year's index (in this order: prune_audit_shard relies on it). Both idempotent. A
        shard is one township's day, so no document grows with the county (the Dec 31 rush of one
        township is a few hundred entries) and township staff read their own shards only."""
        self.await_audits([doc])

    def await_audits(self, docs: list[dict[str, Any]]) -> None:
        """await_audit for a batch: one bulk write of the shards, then one of the index (in this order)."""
        if not docs:
            return
        shards: dict[tuple[int, str], dict[str, Any]] = {}
        for doc in docs:
            entry = {k: doc[k] for k in ("household_no", "order_no", "village", "amount_fen")}
            shards.setdefault((doc["year"], audit_shard(doc["paid_day"], doc["township"])), {})[f"open.{doc['_id']}"] = entry
        self.db[AUDIT_DAYS].bulk_write([UpdateOne({"_id": f"{year}:{shard}"}, {"$set": entries}, upsert=True)
                                        for (year, shard), entries in shards.items()], ordered=False)
        by_year: dict[int, list[str]] = {}
        for year, shard in shards:
            by_year.setdefault(year, []).append(shard)
        self.db[AUDIT_INDEX].bulk_write([UpdateOne({"_id": str(year)}, {"$addToSet": {"shards": {"$each": sorted(ss)}}},
                                                   upsert=True) for year, ss in by_year.items()], ordered=False)

    def audit_settled(self, doc: dict[str, Any]) -> None:
        """The payment was audited or reversed: no longer waiting (idempotent)."""
        shard = audit_shard(doc["paid_day"], doc["township"])
        self.db[AUDIT_DAYS].update_one({"_id": f"{doc['year']}:{shard}"}, {"$unset": {f"open.{doc['_id']}": ""}})

    def audit_shards(self, year: int) -> list[tuple[str, str]]:
        """(paid day, township) of every shard that may hold open audits, oldest first (one `_id` read)."""
        idx = self.db[AUDIT_INDEX].find_one({"_id": str(year)}) or {}
        return sorted(tuple(s.split("|", 1)) for s in idx.get("shards", ()))  # type: ignore[misc]

    def open_audits(self, year: int, day: str, township: str) -> dict[str, dict[str, Any]]:
        """The shard's open audits by payment `_id` (one `_id` read)."""
        d = self.db[AUDIT_DAYS].find_one({"_id": f"{year}:{audit_shard(day, township)}"}) or {}
        return d.get("open") or {}

    def prune_audit_shard(self, year: int, day: str, township: str) -> None:
        """Take a shard with no open audit out of the index. A payment joining it meanwhile is not
        lost: it writes the shard first and the index second, and the shard is re-read after the
        pull (either that read sees the payment, or the payment's index write comes after the pull)."""
        shard = audit_shard(day, township)
        self.db[AUDIT_INDEX].update_one({"_id": str(year)}, {"$pull": {"shards": shard}})
        if self.open_audits(year, day, township):
            self.db[AUDIT_INDEX].update_one({"_id": str(year)}, {"$addToSet": {"shards": shard}}, upsert=True)

    def report_overdue_audits(self, year: int, day: str, doc: dict[str, Any], event) -> bool:
        """The day's digest and its event, once (a unique `_id`)."""
        try:
            self.outbox.insert(OVERDUE_REPORTS, {"_id": f"{year}:{day}", **doc}, [event])
            return True
        except DuplicateKeyError:
            return False


def _keep_newest(coll, key: str, payload: dict[str, Any], seq: str) -> None:
    """A person-year read model: by the aggregate's `version` when the events carry one (written
    with the change itself), else by the envelope `seq`; see shared.store.keep_newest."""
    keep_newest(coll, key, {**payload, "seq": seq}, payload["version"] if payload.get("version") is not None else seq or "")


def confirmed_payload(doc: dict[str, Any]) -> dict[str, Any]:
    """payments.payment.confirmed built from the payment document when the relay publishes it
    (shared/outbox.py snapshots): the fields it carries never change after the payment is written,
    and the request that records a payment writes the document without a second copy of them."""
    return {"order_no": doc["order_no"], "receipt_no": doc["receipt_no"], "household_no": doc["household_no"],
            "year": doc["year"], "county": doc["county"], "township": doc["township"], "village": doc["village"],
            "head_name": doc["head_name"], "head_phone": doc.get("head_phone"), "amount_fen": doc["amount_fen"],
            "channel": doc["channel"], "gateway": doc["gateway"], "transaction_id": doc["transaction_id"],
            "paid_at": doc["paid_at"],
            "members": [{k: m[k] for k in ("person_id", "name", "standard_fen", "subsidy_fen", "payable_fen",
                                           "benefits_from") if k in m} for m in doc["members"]], **({"supplement": True} if doc.get("supplement") else {})}


SNAPSHOTS = {"payments.payment.confirmed": confirmed_payload}
