"""Use cases of subsidy: identity updates (bus feed and HTTP batch), registry and payment events,
entitlement queries, claims, the funding ledger and coverage.

Identity updates are applied one at a time (the feed's queue has a single active consumer and the
worker runs every handler on one thread), so a person's aggregate has one writer.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from shared.aggregate import retry_stale
from shared.clock import Clock, iso, parse_instant
from shared.errors import NotFound
from shared.events import Envelope, Event
from shared.masking import mask_id

from ..adapters.repository import SubsidyRepository, pkey
from ..domain import claim as claims
from ..domain.coverage import Contribution
from ..domain.entitlement import Entitlement, entitlement_from, frozen_entitlement, reimbursement_due
from ..domain.identity import PersonIdentities, Rejected, parse_update
from ..domain.rules import SubsidyRules
from . import metrics

log = logging.getLogger(__name__)
UNATTRIBUTED = "unattributed"  # subsidy charged by payments that no identity of ours explains


@dataclass
class Ctx:
    repo: SubsidyRepository
    rules: SubsidyRules  # the current year's (POLICY_FILE): categories an update may name
    clock: Clock
    county: str
    years: dict[int, SubsidyRules] = field(default_factory=dict)  # every loaded year of the county

    def __post_init__(self):
        self.years = {self.rules.year: self.rules, **self.years}

    def rules_for(self, year: int) -> SubsidyRules | None:
        return self.years.get(year)

    def live_years(self) -> list[int]:
        """Years whose entitlements can still change (not yet over): each gets its own events."""
        today = self.clock.today_shanghai()
        return sorted(y for y in self.years if today <= date(y, 12, 31))


# ---- identity updates ---------------------------------------------------------------------------

def receive_identity_update(ctx: Ctx, raw: Any, *, via: str, message_id: str,
                            correlation_id: str | None = None) -> dict[str, Any]:
    """Judge one update; returns its outcome (applied | unchanged | duplicate | rejected)."""
    now = ctx.clock.now()
    base = {"received_at": now, "via": via, "message_id": message_id}
    try:
        u = parse_update(raw, ctx.rules)
    except Rejected as e:
        return _reject(ctx, raw, e, base)
    logged = ctx.repo.update_log(u.key)
    if logged is not None:
        if not u.same_as(logged):
            return _reject(ctx, raw, Rejected("SOURCE_REF_REUSED", "该来源业务编号已用于另一条内容不同的变更",
                                              {"source_ref": u.source_ref}), base)
        ctx.repo.count_duplicate(u.key, now)
        metrics.IDENTITY_UPDATES.labels(u.source_system, "duplicate").inc()
        return {"status": "duplicate", "key": u.key, "code": "DUPLICATE",
                "message": "重复的身份变更（同一来源业务编号），只生效一次", "first_outcome": logged["outcome"]}
    loaded = ctx.repo.person(u.id_number)
    person, published = loaded or (PersonIdentities(u.id_number), {})
    try:
        outcome = person.apply(u, now)
    except Rejected as e:
        return _reject(ctx, raw, e, base)
    if outcome == "duplicate":  # applied before a crash lost its report: report it now
        outcome = "applied"
    elif outcome == "applied":
        events = _entitlement_events(ctx, person, published, u.effective_date)
        ctx.repo.save_person(person, published, events, correlation_id=correlation_id)
    code = "ALREADY_GRANTED" if outcome == "unchanged" else None
    message = "该人员已有此身份，未作变更" if outcome == "unchanged" else "已生效"
    ctx.repo.log_update({"_id": u.key, **u.to_doc(), "outcome": outcome, "code": code, "message": message, **base})
    metrics.IDENTITY_UPDATES.labels(u.source_system, outcome).inc()
    if outcome == "applied":
        _after_identity_change(ctx, person, correlation_id)
    return {"status": outcome, "key": u.key, "code": code, "message": message}


def report_rejection(ctx: Ctx, raw: Any, e: Rejected, *, via: str, message_id: str) -> dict[str, Any]:
    """A refusal made before the queue (HTTP batch checks) goes into the same report."""
    return _reject(ctx, raw, e, {"received_at": ctx.clock.now(), "via": via, "message_id": message_id})


def _reject(ctx: Ctx, raw: Any, e: Rejected, base: dict[str, Any]) -> dict[str, Any]:
    src = raw.get("source_system") if isinstance(raw, dict) else None
    src = src if isinstance(src, str) else None
    doc = {"_id": f"rejected:{base['message_id']}", "outcome": "rejected", "code": e.code, "message": e.message,
           "details": e.details, "source_system": src, **base}
    if isinstance(raw, dict):
        doc.update({k: str(raw.get(k))[:80] for k in ("category", "action", "effective_date", "source_ref")
                    if raw.get(k) is not None})
        if isinstance(raw.get("id_number"), str):
            doc["id_number_masked"] = mask_id(raw["id_number"][:18])
    if not ctx.repo.log_update(doc):
        ctx.repo.count_duplicate(doc["_id"], base["received_at"])
    metrics.IDENTITY_UPDATES.labels(src or "unknown", "rejected").inc()
    log.info("identity update rejected: %s %s", e.code, e.message)
    return {"status": "rejected", "key": doc["_id"], "code": e.code, "message": e.message, "details": e.details}


def _entitlement_events(ctx: Ctx, person: PersonIdentities, published: dict[str, Any], since: date,
                        years: list[int] | None = None) -> list[Event]:
    """subsidy.entitlement.changed for each live year whose best entitlement changes, in effect from
    the update's date; nothing for a year once it is paid (frozen: 缴费后不再补退)."""
    events = []
    for year in (ctx.live_years() if years is None else years):
        rules = ctx.years[year]
        if since > date(year, 12, 31) or ctx.repo.freeze(year, person.id_number) is not None:
            continue
        day = max(ctx.clock.today_shanghai(), since)
        ent = entitlement_from(rules, person.id_number, person.granted_on(day))
        before = published.get(str(year), [None, 0, False, None])
        if list(ent.event_key()) == list(before):
            continue
        published[str(year)] = list(ent.event_key())
        payload = ent.event_payload()
        payload["effective_from"] = since.isoformat()
        events.append(Event("subsidy.entitlement.changed", payload))
    return events


def _after_identity_change(ctx: Ctx, person: PersonIdentities, correlation_id: str | None) -> None:
    for year in ctx.live_years():
        freeze = ctx.repo.freeze(year, person.id_number)
        if freeze is not None:
            _claim_if_due(ctx, freeze, person, correlation_id, None)
        refresh_cover(ctx, year, person.id_number, correlation_id)


# ---- year rollover --------------------------------------------------------------------------------

def publish_year(ctx: Ctx, year: int, *, limit: int = 500, correlation_id: str | None = None) -> dict[str, Any]:
    """Year rollover (年度切换): publish year `year`'s entitlement of every standing identity, so the
    new year's quotes carry identities granted before its policy was loaded. A bounded batch (a
    scan of `identities` in `_id` order from the run's cursor: a batch job, never a request's hot
    path); idempotent (a person whose year-`year` entitlement was published is unchanged) and
    resumable (the cursor is stored after each batch). Returns this batch's report."""
    rules = check_year(ctx, year)
    run = ctx.repo.rollover(year) or {"after": "", "seen": 0, "published": 0, "frozen": 0}
    ids = ctx.repo.identity_ids_after(run["after"], limit)
    published = frozen = 0
    for pid in ids:
        loaded = ctx.repo.person(pid)
        if loaded is None:
            continue
        person, pub = loaded
        if ctx.repo.freeze(year, pid) is not None:
            frozen += 1
            continue
        # in effect from the person's latest change (as the update that made it would have said)
        since = max((h["effective_date"] for h in person.history), default=date(year, 1, 1))
        events = _entitlement_events(ctx, person, pub, min(since, date(year, 12, 31)), years=[rules.year])
        if events:
            ctx.repo.save_person(person, pub, events, correlation_id=correlation_id)
            published += 1
        refresh_cover(ctx, year, pid, correlation_id, loaded=loaded)
    done = len(ids) < limit
    run = {"after": ids[-1] if ids else run["after"], "seen": run["seen"] + len(ids),
           "published": run["published"] + published, "frozen": run["frozen"] + frozen, "done": done,
           "at": ctx.clock.now()}
    ctx.repo.save_rollover(year, run)
    return {"year": year, "batch": {"persons": len(ids), "published": published, "frozen": frozen},
            "total": {k: run[k] for k in ("seen", "published", "frozen")}, "done": done}


def publish_live_years(ctx: Ctx, limit: int = 500) -> list[dict[str, Any]]:
    """The worker's rollover step: one batch for each live year not finished yet."""
    out = []
    for year in ctx.live_years():
        run = ctx.repo.rollover(year)
        if run is None or not run.get("done"):
            out.append(publish_year(ctx, year, limit=limit))
    return out


# ---- registry and payment events ------------------------------------------------------------------

def on_household_registered(ctx: Ctx, env: Envelope) -> None:
    """Where hardship persons live (township, village, household) for coverage and claims; a
    registry.household.changed snapshot (异动) replaces the copy, and members who left it no longer
    count in its township."""
    p = env.payload
    current = [m["person_id"] for m in p["members"]]
    for pid in ctx.repo.household_members(p["year"], p["household_no"]):
        if pid in current:
            continue
        res = ctx.repo.resident(p["year"], pid)
        if res and res.get("household_no") == p["household_no"]:
            ctx.repo.upsert_resident(p["year"], pid, {"household_no": None, "township": "", "village": "",
                                                      "left": p.get("change", "")})
            if p["year"] in ctx.years:
                refresh_cover(ctx, p["year"], pid, env.correlation_id, env.id)
    ctx.repo.set_household_members(p["year"], p["household_no"], current)
    for m in p["members"]:
        ctx.repo.upsert_resident(p["year"], m["person_id"], {
            "household_no": p["household_no"], "county": p["county"], "township": p["township"],
            "village": p["village"], "name": m["name"]})
        if p["year"] in ctx.years:
            refresh_cover(ctx, p["year"], m["person_id"], env.correlation_id, env.id)


def on_household_snapshots(ctx: Ctx, envs: list[Envelope]) -> None:
    """A run of household snapshots (a roster import brings thousands): what on_household_registered
    does, in a few store commands for the run — the households' member lists read in one `$in`, the
    members' residences and the lists written in one bulk write each, the members' identities read in
    one `$in`; only hardship persons (those with an identity record, a few in a hundred) go through
    refresh_cover one by one. A snapshot in which members left the household takes the per-event path."""
    prior = ctx.repo.households_members([(e.payload["year"], e.payload["household_no"]) for e in envs])
    plain = []
    for e in envs:
        p = e.payload
        left = set(prior.get((p["year"], p["household_no"])) or ()) - {m["person_id"] for m in p["members"]}
        if left:
            on_household_registered(ctx, e)
        else:
            plain.append(e)
    ctx.repo.set_households_members([(e.payload["year"], e.payload["household_no"],
                                      [m["person_id"] for m in e.payload["members"]]) for e in plain])
    ctx.repo.upsert_residents([(e.payload["year"], m["person_id"], {
        "household_no": e.payload["household_no"], "county": e.payload["county"], "township": e.payload["township"],
        "village": e.payload["village"], "name": m["name"]}) for e in plain for m in e.payload["members"]])
    live = [(e, m["person_id"]) for e in plain if e.payload["year"] in ctx.years for m in e.payload["members"]]
    loaded = ctx.repo.persons([pid for _e, pid in live])
    for e, pid in live:
        if pid in loaded:
            refresh_cover(ctx, e.payload["year"], pid, e.correlation_id, e.id, loaded=loaded[pid])


def on_enrolment_changed(ctx: Ctx, env: Envelope) -> None:
    p = env.payload
    enrolled = p["status"] in ("paid", "confirmed")
    for pid in p["person_ids"]:
        ctx.repo.upsert_resident(p["year"], pid, {"household_no": p["household_no"], "county": p["county"],
                                                  "township": p["township"], "village": p["village"],
                                                  "enrolled": enrolled})
        if p["year"] in ctx.years:
            refresh_cover(ctx, p["year"], pid, env.correlation_id, env.id)


def on_enrolments_changed(ctx: Ctx, envs: list[Envelope]) -> None:
    """A batch of enrolment changes: every resident row in one ordered bulk write, every member's
    identities in one read; the coverage of the few with an identity refreshed as one by one."""
    rows = [(e.payload["year"], pid, {"household_no": e.payload["household_no"], "county": e.payload["county"],
                                      "township": e.payload["township"], "village": e.payload["village"],
                                      "enrolled": e.payload["status"] in ("paid", "confirmed")})
            for e in envs for pid in e.payload["person_ids"]]
    ctx.repo.upsert_residents(rows)
    loaded = ctx.repo.persons([pid for _, pid, _ in rows])
    for e in envs:
        if e.payload["year"] in ctx.years:
            for pid in e.payload["person_ids"]:
                if pid in loaded:
                    refresh_cover(ctx, e.payload["year"], pid, e.correlation_id, e.id, loaded=loaded[pid])


def on_payment_confirmed(ctx: Ctx, env: Envelope) -> None:
    """Freeze each member's year as charged (依据缴费人当前身份进行征收; 缴费后不再补退), count the
    subsidy into its department's ledger (直接代缴), and open a 先缴后补 claim when one is due.
    Most members hold no identity: for them this is one read and one (household-wide) insert."""
    loaded = {m["person_id"]: ctx.repo.person(m["person_id"]) for m in env.payload["members"]}
    docs = _freezes(ctx, env, loaded)
    if docs is not None:
        _after_freezes(ctx, env, docs, ctx.repo.add_freezes(docs), loaded)


def on_payments_confirmed(ctx: Ctx, envs: list[Envelope]) -> None:
    """A batch of confirmations: every member's identities in one read, every freeze in one insert;
    the ledger, claims and coverage of members with a subsidy or an identity as one by one."""
    found = ctx.repo.persons([m["person_id"] for e in envs for m in e.payload["members"]])
    staged = []
    for e in envs:
        loaded = {m["person_id"]: found.get(m["person_id"]) for m in e.payload["members"]}
        docs = _freezes(ctx, e, loaded)
        if docs is not None:
            staged.append((e, docs, loaded))
    existed = ctx.repo.add_freezes([d for _, docs, _ in staged for d in docs])
    for e, docs, loaded in staged:
        _after_freezes(ctx, e, docs, existed, loaded)


def _freezes(ctx: Ctx, env: Envelope, loaded: dict) -> list[dict] | None:
    """The members' freezes as charged; None for a year without subsidy rules."""
    p = env.payload
    rules = ctx.rules_for(p["year"])
    if rules is None:
        log.warning("payment for year %s ignored: no subsidy rules for it", p["year"])
        return None
    paid_at = parse_instant(p["paid_at"])
    docs = []
    for m in p["members"]:
        pid = m["person_id"]
        ours = entitlement_from(rules, pid, loaded[pid][0].granted_at(paid_at) if loaded[pid] else {})
        department = None
        if m["subsidy_fen"] > 0:
            department = ours.department if ours.subsidy_fen > 0 and ours.department else UNATTRIBUTED
        docs.append({
            "_id": pkey(p["year"], pid), "id_number": pid, "year": p["year"], "name": m["name"],
            "household_no": p["household_no"], "county": p["county"], "township": p["township"],
            "village": p["village"], "order_no": p["order_no"], "receipt_no": p["receipt_no"], "paid_at": paid_at,
            "standard_fen": m["standard_fen"], "subsidy_fen": m["subsidy_fen"], "payable_fen": m["payable_fen"],
            "category": ours.category, "department": department, "our_subsidy_fen": ours.subsidy_fen,
            "mismatch": ours.subsidy_fen != m["subsidy_fen"], "frozen_at": ctx.clock.now()})
    return docs


def _after_freezes(ctx: Ctx, env: Envelope, docs: list[dict], existed: set, loaded: dict) -> None:
    """Ledger, claim and coverage of each member from its freeze (a member frozen earlier keeps
    the first freeze)."""
    p = env.payload
    paid_at = parse_instant(p["paid_at"])
    for m, doc in zip(p["members"], docs):
        pid = m["person_id"]
        freeze = ctx.repo.freeze(p["year"], pid) if doc["_id"] in existed else doc
        if freeze["subsidy_fen"] > 0:
            ctx.repo.count_ledger(p["year"], freeze["department"], pid, freeze["subsidy_fen"], {
                "id_number": pid, "name": m["name"], "household_no": p["household_no"], "township": p["township"],
                "village": p["village"], "order_no": p["order_no"], "receipt_no": p["receipt_no"],
                "category": freeze["category"], "subsidy_fen": freeze["subsidy_fen"], "paid_at": paid_at})
        if loaded[pid]:
            _claim_if_due(ctx, freeze, loaded[pid][0], env.correlation_id, env.id)
        refresh_cover(ctx, p["year"], pid, env.correlation_id, env.id, loaded=loaded[pid])


def on_payment_reversed(ctx: Ctx, env: Envelope) -> None:
    """A payment's money went back (冲正): what it froze no longer stands. Each member's subsidy
    leaves its department's ledger (a negative statement line), a pending 先缴后补 claim is cancelled
    (a paid one records the reversal, for the county to recover), the freeze goes, and coverage
    follows the resident's enrolment (registry revokes it) instead of the freeze. Each step is
    idempotent, so a redelivery after a crash finishes the rest."""
    p = env.payload
    if p["year"] not in ctx.years:
        return
    for pid in p["person_ids"]:
        freeze = ctx.repo.freeze(p["year"], pid)
        if freeze is not None and freeze.get("order_no") == p["order_no"]:
            if freeze["subsidy_fen"] > 0:
                ctx.repo.uncount_ledger(p["year"], freeze["department"], pid, freeze["subsidy_fen"], p["reversal_id"], {
                    "id_number": pid, "name": freeze.get("name", ""), "household_no": p["household_no"],
                    "township": p["township"], "village": p["village"], "order_no": p["order_no"],
                    "receipt_no": freeze.get("receipt_no"), "category": freeze["category"],
                    "paid_at": parse_instant(p["reversed_at"]), "reversal_id": p["reversal_id"]})
            claim = ctx.repo.claim(p["year"], pid)
            fields = claims.cancel(claim, p["order_no"], p["reversal_id"], ctx.clock.now()) if claim else None
            if fields:
                ctx.repo.set_claim(claim["_id"], claim.get("version", 0), fields)
                metrics.CLAIMS.labels(claim["department"], fields.get("status", "reversed_after_payment")).inc()
            ctx.repo.drop_freeze(p["year"], pid, p["order_no"])
        refresh_cover(ctx, p["year"], pid, env.correlation_id, env.id)


def _claim_if_due(ctx: Ctx, freeze: dict, person: PersonIdentities, correlation_id, causation_id) -> None:
    due = reimbursement_due(ctx.years[freeze["year"]], person.granted_at(ctx.clock.now()), freeze["subsidy_fen"])
    if due is None or ctx.repo.claim(freeze["year"], freeze["id_number"]) is not None:
        return
    claim = {"_id": freeze["_id"], "id_number": freeze["id_number"], "name": freeze.get("name", ""),
             "year": freeze["year"], "category": due.category.code, "amount_fen": due.amount_fen,
             "department": due.category.department, "effective_date": due.effective_date.isoformat(),
             "household_no": freeze.get("household_no"), "county": freeze.get("county"),
             "township": freeze.get("township"), "village": freeze.get("village"), "order_no": freeze.get("order_no"),
             "status": "pending", "created_at": ctx.clock.now(), "version": 1}
    event = Event("subsidy.claim.created", {"claim_id": claim["_id"], **{k: claim[k] for k in (
        "name", "year", "category", "amount_fen", "department", "effective_date", "household_no", "county",
        "township", "village", "order_no")}, "person_id": claim["id_number"]})
    if ctx.repo.add_claim(claim, event, correlation_id=correlation_id, causation_id=causation_id):
        metrics.CLAIMS.labels(claim["department"], "created").inc()


# ---- coverage -----------------------------------------------------------------------------------

_UNREAD = object()


def refresh_cover(ctx: Ctx, year: int, id_number: str, correlation_id: str | None = None,
                  causation_id: str | None = None, loaded: Any = _UNREAD) -> None:
    """Move a person's contribution to the coverage counters when it changes, crash-safely: the new
    state and the pending delta are written first, each counter step is counted once per version.
    `loaded` is the person's identities when the caller has just read them. A person with no
    identity record has no coverage record either (identity records are never deleted): nothing
    to read further, which is most residents."""
    if loaded is _UNREAD:
        loaded = ctx.repo.person(id_number)
    if loaded is None:
        return
    doc = ctx.repo.cover(year, id_number)
    if doc and doc.get("pending"):
        events = _apply_cover_delta(ctx, year, id_number, doc["pending"])
        ctx.repo.finish_cover(year, id_number, events, correlation_id=correlation_id, causation_id=causation_id)
    best = ctx.years[year].best(loaded[0].granted_at(ctx.clock.now())) if loaded else None
    new = None
    if best is not None:
        res = ctx.repo.resident(year, id_number)
        enrolled = bool(res and res.get("enrolled")) or ctx.repo.freeze(year, id_number) is not None
        new = {"township": (res or {}).get("township", ""), "category": best.code, "enrolled": enrolled}
    old = doc.get("state") if doc else None
    if new == old:
        return
    pending = {"old": old, "new": new, "v": (doc or {}).get("v", 0) + 1}
    ctx.repo.set_cover(year, id_number, new, pending["v"], pending)
    events = _apply_cover_delta(ctx, year, id_number, pending)
    ctx.repo.finish_cover(year, id_number, events, correlation_id=correlation_id, causation_id=causation_id)


def _apply_cover_delta(ctx: Ctx, year: int, id_number: str, pending: dict) -> list[Event]:
    touched: dict[tuple[str, str], None] = {}
    key = f"{pkey(year, id_number)}:{pending['v']}"
    for side, sign in (("old", -1), ("new", 1)):
        state = pending.get(side)
        if state:
            c = Contribution(**state)
            ctx.repo.count_coverage(year, c.township, f"{key}:{side}", c.increments(sign))
            touched[(c.township, c.category)] = None
    counters = ctx.repo.coverage(year, sorted({t for t, _ in touched}))
    events = []
    for township, cat in touched:
        row = counters.get(township, {})
        h, e = row.get(f"h_{cat}", 0), row.get(f"e_{cat}", 0)
        events.append(Event("subsidy.coverage.changed", {
            "year": year, "county": ctx.county, "township": township, "category": cat, "hardship_persons": h,
            "enrolled_persons": e, "not_enrolled_persons": h - e,
            "rate_bp": 10000 if h == 0 else e * 10000 // h, "as_of": iso(ctx.clock.now()), "version": row.get("n", 0)}))
    return events


# ---- queries and staff actions ----------------------------------------------------------------------

def check_year(ctx: Ctx, year: int) -> SubsidyRules:
    rules = ctx.rules_for(year)
    if rules is None:
        raise NotFound("YEAR_UNKNOWN", "没有该年度的资助政策", {"year": year, "open_year": ctx.rules.year,
                                                          "years": sorted(ctx.years)})
    return rules


def entitlement_of(ctx: Ctx, year: int, id_number: str, at: datetime | None = None) -> Entitlement:
    """For a person, year and instant; a paid year answers what was charged (frozen)."""
    rules = check_year(ctx, year)
    at = at or ctx.clock.now()
    freeze = ctx.repo.freeze(year, id_number)
    if freeze is not None and freeze["paid_at"] <= at:
        return frozen_entitlement(rules, freeze, ctx.repo.claim(year, id_number))
    loaded = ctx.repo.person(id_number)
    return entitlement_from(rules, id_number, loaded[0].granted_at(at) if loaded else {})


def pay_claim(ctx: Ctx, year: int, id_number: str, payment_ref: str, paid_on: date,
              correlation_id: str | None = None) -> dict[str, Any]:
    """A department reports the reimbursement paid back (→ subsidy.claim.paid, announced by notices).
    Paid once: the write checks the version read; a request that lost the race reads again and is
    answered as a repeat (same payment_ref) or refused (CLAIM_ALREADY_PAID, 409)."""
    check_year(ctx, year)

    def step() -> dict[str, Any]:
        claim = ctx.repo.claim(year, id_number)
        if claim is None:
            raise NotFound("CLAIM_NOT_FOUND", "没有该人员本年度的先缴后补报销申请", {"id_number": mask_id(id_number)})
        fields = claims.pay(claim, payment_ref, paid_on, ctx.clock.now())
        if fields is None:
            return claim
        event = Event("subsidy.claim.paid", {
            "claim_id": claim["_id"], "person_id": id_number, "name": claim.get("name", ""), "year": year,
            "amount_fen": claim["amount_fen"], "department": claim["department"], "payment_ref": payment_ref,
            "paid_on": paid_on.isoformat(), "household_no": claim.get("household_no"), "county": claim.get("county"),
            "township": claim.get("township"), "village": claim.get("village")})
        ctx.repo.mark_claim_paid(claim["_id"], claim.get("version", 0), fields, event, correlation_id=correlation_id)
        metrics.CLAIMS.labels(claim["department"], "paid").inc()
        return {**claim, **fields}
    return retry_stale(step)
