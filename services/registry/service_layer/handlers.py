"""Use cases of the registry: commands from the API and events from the bus.

Every use case that writes a household reads it, decides and writes it with the version it read
(HouseholdRepository.save); when another writer came first (a payment event on the worker, a staff
change on a web thread) it reads again and decides again (retry_stale), so neither write is lost
and a decision is never made on a stale household.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from shared.aggregate import retry_stale
from shared.auth import Principal
from shared.bus import PermanentFailure
from shared.clock import iso
from shared.errors import Conflict, DomainError, NotFound, ValidationFailed
from shared.events import Envelope
from shared.masking import mask_id
from shared.policy import PolicyYear, refuse_if_closed
from shared.resident_id import parse_resident_id

from ..adapters.duplicates import places
from ..adapters.repository import HouseholdRepository
from ..domain import midyear
from ..domain.corrections import Correction
from ..domain.model import Household
from ..domain.roster import CATEGORY_LABELS, PAYMENT_STATUS_LABELS

log = logging.getLogger(__name__)


def register_household(repo: HouseholdRepository, policy: PolicyYear, data: dict[str, Any],
                       principal: Principal | None, correlation_id: str | None = None,
                       duplicates=None, clock=None) -> Household:
    """A member another household holds (多地重复参保) does not stop the registration: the household
    is registered with them, their case opened first (open_duplicates) for county staff to decide."""
    if principal is not None:
        principal.check_township(data["township"])
    if clock is not None:
        refuse_if_closed(policy, clock.now())
    insured = {m["id_number"].strip().upper() for m in data["members"]
               if duplicates is not None and duplicates.excluded(data["year"], m["id_number"].strip().upper())}
    hh = Household.register(policy, data, insured)
    opener = None
    if duplicates is not None:
        def opener(clashes):
            open_duplicates(duplicates, hh, clashes, clock.now(), source="api", correlation_id=correlation_id)
    repo.add(hh, correlation_id=correlation_id, open_cases=opener)
    return hh


def open_duplicates(duplicates, hh: Household, clashes, at, source: str, correlation_id: str | None = None) -> None:
    """Open a case for county staff with both places (多地重复参保), before `hh` is written;
    registry.duplicate.changed rides in the same write, so payments holds every household that has
    the person until the case is resolved. `clashes`: [(person_id, the holding household's place)]."""
    for person_id, kept in clashes:
        duplicates.record(hh.year, person_id, kept,
                          {"household_no": hh.household_no, "township": hh.township, "village": hh.village,
                           "source": source}, at, correlation_id=correlation_id)


def duplicate_places(case: dict) -> list[dict]:
    """The households a case names, the holder first (the event carries the same list)."""
    return places(case)


def resolve_duplicate(repo: HouseholdRepository, duplicates, year: int, person_id: str, keep: str, note: str | None,
                      principal: Principal, at, correlation_id: str | None = None,
                      household_no: str | None = None) -> dict:
    """County staff decide where the person belongs (001 五: 以户籍家庭为单位…到户籍所在地所属村(社区)参保缴费,
    so one household). `keep="current"`: the household holding the person keeps them; `keep="other"`:
    the other household that registered them (`household_no` names it when there are several).
    The person then leaves every other household (a move out, with its registry.household.changed,
    so payments' read model and quotes follow; refused if that household has paid).

    Writes, each completed by repeating the decision after a crash: 0. the case takes the decision
    (`pending`: a different decision is refused from then on, so two decisions at once cannot
    leave the person in no household); 1. the person's claim moves to the kept household; 2. each
    other household loses the member (version-checked; claims of other households untouched);
    3. the case is resolved (its event lets payments quote every household again). A household
    registering the person meanwhile bumps the case, and the decision is taken again with it."""
    for _ in range(5):  # a place added meanwhile (a third registration) bumps the case: decide again
        case = duplicates.get(year, person_id)
        if case is None:
            raise NotFound("DUPLICATE_NOT_FOUND", "重复参保记录不存在", {"person_id": person_id})
        if case["status"] != "open":
            raise Conflict("DUPLICATE_RESOLVED", "该重复参保记录已处理")
        places = duplicate_places(case)
        if keep == "current":
            target = places[0]
        else:
            others = [p for p in places[1:] if household_no in (None, p["household_no"])]
            if household_no is None and len(others) > 1:
                raise ValidationFailed("DUPLICATE_HOUSEHOLD_REQUIRED", "该人员在多个户登记，须指明保留在哪一户（household_no）",
                                       {"households": [p["household_no"] for p in places[1:]]})
            if not others:
                raise ValidationFailed("DUPLICATE_HOUSEHOLD_UNKNOWN", "指定的户不在该重复参保记录中",
                                       {"household_no": household_no})
            target = others[0]
        pending = case.get("pending")
        if pending is not None and pending["household_no"] != target["household_no"]:
            raise Conflict("DUPLICATE_RESOLVING", "该重复参保记录正在按另一决定处理（保留在{}户），请重复该决定以完成处理".format(
                pending["household_no"]), {"household_no": pending["household_no"]})
        kept_hh = repo.get(year, target["household_no"])
        if kept_hh is None or all(m.person_id != person_id for m in kept_hh.members):
            raise Conflict("DUPLICATE_HOUSEHOLD_NOT_REGISTERED",
                           "保留的户未登记该人员（此前被退回的户须先登记），请核实后再处理",
                           {"household_no": target["household_no"]})
        leaving = [p for p in places if p["household_no"] != target["household_no"]]
        for p in leaving:  # check every household first: nothing is written for a decision that cannot hold
            hh = repo.get(year, p["household_no"])
            if hh is not None and any(m.person_id == person_id for m in hh.members):
                hh.check_can_leave(person_id)
        if pending is None:
            if not duplicates.begin(case, target):
                continue
            case = {**case, "version": case.get("version", 0) + 1}
        repo.move_claim(year, person_id, target["household_no"])
        for p in leaving:
            _leave(repo, year, p["household_no"], person_id, target["household_no"], correlation_id)
        decision = {"keep": keep, "household_no": target["household_no"], "left": leaving, "note": note,
                    "by": principal.subject, "at": at}
        if duplicates.resolve(case, decision, target, correlation_id):
            return {**case, "status": "resolved", "resolution": decision, "kept": target, "others": []}
    raise Conflict("DUPLICATE_BUSY", "该重复参保记录正在变化，请稍后再试")


def _leave(repo: HouseholdRepository, year: int, household_no: str, person_id: str, kept_no: str,
           correlation_id: str | None) -> None:
    def step() -> None:
        hh = repo.get(year, household_no)
        if hh is None or all(m.person_id != person_id for m in hh.members):
            return  # never registered (a case from before), or left already (a repeated decision)
        removed = hh.remove_member(person_id, "move_out", f"重复参保处理：保留在{kept_no}户")
        repo.save_change(hh, removed=[removed], correlation_id=correlation_id)
    retry_stale(step)


def decide_mid_year(repo: HouseholdRepository, decisions, policy: PolicyYear, clock, data: dict,
                    principal: Principal | None, correlation_id: str | None = None):
    """中途参保资格判定 with its reason (domain/midyear.py). Naming a person of a registered household
    (`id_number`) also records an approval for the policy year, once, with registry.mid_year.approved
    in the same write, so payments can charge that person after the window (001 四). The birth date
    is the registered one (from the ID number), not the caller's.

    Returns (decision, approval record or None, created)."""
    on = data.get("on") or clock.today_shanghai()
    if not data.get("id_number"):
        return midyear.decide(policy, on, data.get("birth_date"), data.get("special_case"),
                              data.get("hardship", False)), None, False
    year = data.get("year") or policy.year
    if year != policy.year:
        raise ValidationFailed("YEAR_NOT_OPEN", "该政策年度未开放登记", {"year": year})
    person_id = parse_resident_id(data["id_number"]).number
    key = repo.household_of(year, person_id)
    if key is None:
        raise NotFound("PERSON_NOT_FOUND", "未找到该人员的登记信息（须先在户内登记，如办理出生或迁入异动）",
                       {"id_number": mask_id(person_id)})
    hh = get_household(repo, year, key.split(":", 1)[1], principal)
    member = next(m for m in hh.members if m.person_id == person_id)
    midyear.check_recordable(year, policy.window_closes, on, member.status, hh.locked,
                             left_unpaid=member in hh.unpaid_members)
    special_case = data.get("special_case")
    d = midyear.decide(policy, on, member.birth_date, special_case, data.get("hardship", False))
    if not d.allowed:
        return d, None, False
    place = {"household_no": hh.household_no, "county": hh.county, "township": hh.township, "village": hh.village}
    doc = {"_id": f"{year}:{person_id}", "year": year, "person_id": person_id, **place, "code": d.code,
           "reason": d.reason, "pays": d.pays, "special_case": special_case, "decided_on": on.isoformat(),
           "benefits_from": d.benefits_from.isoformat() if d.benefits_from else None,
           "benefits_rule": d.benefits_rule,
           "decided_by": principal.subject if principal else None, "decided_at": clock.now()}
    if decisions.approve(doc, lambda v: midyear.approved_event(year, person_id, place, d, on, special_case, v),
                         correlation_id):
        return d, doc, True
    prior = decisions.get(year, person_id)
    if (prior["code"], prior["pays"], prior.get("special_case")) != (d.code, d.pays, special_case):
        raise Conflict("MID_YEAR_DECIDED", "该人员本年度已有经批准的中途参保决定（{}）".format(prior["reason"]),
                       {"id_number": mask_id(person_id), "code": prior["code"], "decided_on": prior["decided_on"]})
    return d, prior, False


def withdraw_mid_year(repo: HouseholdRepository, decisions, clock, year: int, id_number: str, reason: str,
                      principal: Principal, correlation_id: str | None = None) -> dict:
    """Withdraw a mid-year approval recorded in error (registry.mid_year.withdrawn), before the
    person's household pays; a paid one is undone by a reversal of the payment instead. Withdrawing
    a withdrawn approval again changes nothing."""
    person_id = parse_resident_id(id_number).number
    prior = decisions.get(year, person_id)
    if prior is None:
        raise NotFound("MID_YEAR_NOT_FOUND", "该人员本年度没有中途参保批准记录", {"id_number": mask_id(person_id)})
    hh = get_household(repo, year, prior["household_no"], principal)
    member = next((m for m in hh.members if m.person_id == person_id), None)
    if hh.locked or (member is not None and member.status in ("paid", "confirmed")):
        raise Conflict("MID_YEAR_PAID", "该人员已缴费，不能撤销中途参保批准（须由缴费渠道冲正）",
                       {"id_number": mask_id(person_id)})
    if prior.get("status") == "withdrawn":
        return prior
    on = clock.today_shanghai()
    withdrawal = {"reason": reason, "by": principal.subject, "at": clock.now(), "on": on.isoformat()}
    decisions.withdraw(prior, withdrawal, lambda v: midyear.withdrawn_event(prior, reason, on, v), correlation_id)
    return decisions.get(year, person_id)


def get_household(repo: HouseholdRepository, year: int, household_no: str, principal: Principal | None) -> Household:
    hh = repo.get(year, household_no)
    if hh is None:
        raise NotFound("HOUSEHOLD_NOT_FOUND", "未找到该户", {"household_no": household_no, "year": year})
    if hh.merged_into:
        raise NotFound("HOUSEHOLD_MERGED", "该户已合并到其他户", {"household_no": household_no, "merged_into": hh.merged_into})
    if principal is not None:
        principal.check_township(hh.township)
    return hh


def on_payment_confirmed(repo: HouseholdRepository, env: Envelope, mid_year=None) -> None:
    """payments.payment.confirmed → the persons the order paid for are enrolled (→ enrolment.changed)."""
    _apply(repo, env, confirmed_change(env, mid_year))


def confirmed_change(env: Envelope, mid_year=None):
    """The change a confirmed payment makes: members who joined after the order stay unpaid and
    are listed for mid-year enrolment, persons who left since are recorded for staff
    (Household.record_payment): the money is taken, so the payment is never refused for a change
    made while its order was open. After the window, members approved for mid-year enrolment are
    looked up (only then). A supplementary payment (补缴) for members who joined after the
    household's payment enrols them alone (Household.record_supplement)."""
    p = env.payload
    paid = [m["person_id"] for m in p["members"]]
    starts = {m["person_id"]: m["benefits_from"] for m in p["members"] if m.get("benefits_from")}

    def with_starts(done: bool, hh: Household) -> bool:
        if done:
            hh.note_benefit_starts(starts)
        return done
    if p.get("supplement"):
        return lambda hh: with_starts(hh.record_supplement(p["order_no"], paid, p["paid_at"]), hh)

    def change(hh: Household) -> bool:
        approved = set()
        if mid_year is not None and set(paid) != {m.person_id for m in hh.members}:
            approved = mid_year.approved_ids(hh.year, paid)
        return with_starts(hh.record_payment(p["order_no"], paid, p["paid_at"], approved), hh)
    return change


class SupplementNotHereYet(LookupError):
    """An audit or reversal of a supplement whose confirmation registry has not taken yet (events
    may arrive out of order on a retry): retried with backoff, never dead-lettered at once."""


def _supplement_step(p: dict, decide):
    def change(hh: Household) -> bool:
        done = decide(hh)
        if done is None:
            raise SupplementNotHereYet(f"supplement {p['order_no']} of {p['household_no']} not recorded yet")
        return done
    return change


def on_payment_audited(repo: HouseholdRepository, env: Envelope) -> None:
    """payments.payment.audited → enrolment confirmed (paid → confirmed); a supplement's members alone."""
    _apply(repo, env, audited_change(env))


def audited_change(env: Envelope):
    p = env.payload
    if p.get("supplement"):
        return _supplement_step(p, lambda hh: hh.record_supplement_audit(p["order_no"], p["audited_at"]))
    return lambda hh: hh.record_audit(p["order_no"], p["audited_at"])


def on_payment_reversed(repo: HouseholdRepository, env: Envelope) -> None:
    """payments.payment.reversed → the enrolment that payment bought is revoked (a supplement's:
    only the members it paid for)."""
    _apply(repo, env, reversed_change(env))


def reversed_change(env: Envelope):
    p = env.payload
    if p.get("supplement"):
        return _supplement_step(p, lambda hh: hh.record_supplement_reversal(p["order_no"], p["reason"], p["reversed_at"]))
    return lambda hh: hh.record_reversal(p["order_no"], p["reason"], p["reversed_at"])


def _apply(repo: HouseholdRepository, env: Envelope, change) -> None:
    """Read, decide, write with the version read; again from the start when another write came first."""
    p = env.payload

    def step() -> None:
        hh = repo.get(p["year"], p["household_no"])
        if hh is None:
            raise LookupError(f"household {p['household_no']} not registered yet")  # retried: may be a race
        try:
            changed = change(hh)
        except DomainError as e:
            raise PermanentFailure(f"{e.code}: {e.message}") from e
        if changed:
            repo.save_enrolment(hh, causation_id=env.id, correlation_id=env.correlation_id)
    retry_stale(step, tries=20)


def apply_many(repo: HouseholdRepository, envs: list[Envelope], change_of) -> None:
    """A batch of payment events of one type (a busy queue) in a few store commands: the households
    read in one query, each event's change made in delivery order on its household in memory
    (one household may take several), each changed household written once (one bulk
    compare-and-set, one insert of its events' pointers; every event still names the message that
    caused it). Anything out of the ordinary raises (a household not registered yet, a refused
    change, a household someone wrote meanwhile) and the consumer applies the batch one event at a
    time through `_apply`, whose changes are idempotent: what this call wrote is recorded already."""
    households = repo.get_many([(e.payload["year"], e.payload["household_no"]) for e in envs])
    staged: dict[tuple[int, str], list[tuple[list, str, str | None]]] = {}
    for env in envs:
        key = (env.payload["year"], env.payload["household_no"])
        hh = households.get(key)
        if hh is None:
            raise LookupError(f"household {key[1]} not registered yet")
        if change_of(env)(hh):
            staged.setdefault(key, []).append((list(hh.events), env.id, env.correlation_id))
            hh.events.clear()
    repo.save_enrolments([(households[k], changes) for k, changes in staged.items()])


def awaiting_mid_year(repo: HouseholdRepository, year: int, townships: list[str], principal: Principal | None = None,
                      decisions=None) -> list[dict]:
    """Members a household payment did not cover because they joined after its order (a newborn),
    or whose supplementary payment went back: the township enrols each through mid-year enrolment
    (001 四; decide_mid_year accepts them) and payments then charges them a supplement (补缴). With
    `decisions`, each row says whether the approval is recorded (then only the payment is due)."""
    township = principal.township if principal is not None and principal.role == "township" else None
    rows = []
    for hh in repo.awaiting_mid_year(year, township, townships):
        for m in hh.unpaid_members:
            approval = decisions.get(year, m.person_id) if decisions is not None else None
            if approval is not None and approval.get("status") == "withdrawn":
                approval = None
            rows.append({"household_no": hh.household_no, "township": hh.township, "village": hh.village,
                         "order_no": hh.enrolment.get("order_no"), "person_id": m.person_id, "name": m.name,
                         "birth_date": m.birth_date.isoformat(),
                         "approval": {"code": approval["code"], "pays": approval["pays"],
                                      "decided_on": approval["decided_on"]} if approval else None})
    return rows


def needing_review(repo: HouseholdRepository, year: int, townships: list[str],
                   principal: Principal | None = None) -> list[dict]:
    """Persons a payment was recorded for who were no longer members when it arrived (a death, a
    move out, a merge after the order), or were enrolled already: county staff decide (a refund is
    a reversal through payments); a township sees its own."""
    township = principal.township if principal is not None and principal.role == "township" else None
    return [{"household_no": hh.household_no, "township": hh.township, "village": hh.village,
             "order_no": x.get("order_no") or hh.enrolment.get("order_no"), "person_id": x["person_id"],
             "reason": x["reason"]}
            for hh in repo.needing_review(year, township, townships) for x in hh.enrolment.get("paid_not_members") or []]


def village_roster(repo: HouseholdRepository, year: int, township: str, village: str):
    """Rows of the printed roster (参保缴费名册) of one village, household by household, IDs in full
    and each member's payment status: the village checks them against the hukou books and sees who
    has not paid (逐户逐人核对)."""
    sexes = {"M": "男", "F": "女"}
    for hh in repo.in_village(year, township, village):
        for m in hh.members:
            yield [hh.household_no, hh.township, hh.village, m.name, m.person_id, sexes[m.sex],
                   m.birth_date.isoformat(), m.relation, CATEGORY_LABELS.get(m.category, m.category),
                   hh.head_phone if m.relation == "户主" else "", PAYMENT_STATUS_LABELS.get(m.status, m.status)]


# ---- changes (异动) and corrections (信息更正) ------------------------------------------------

def change_household(repo: HouseholdRepository, year: int, household_no: str, data: dict,
                     principal: Principal | None, correlation_id: str | None = None,
                     duplicates=None, clock=None) -> Household:
    """异动. A birth or move-in of a person another household holds (多地重复参保) is recorded as a
    registration is: the member joins, their case is opened (or names this household too) before
    the household is written, and both households are held until county staff decide."""
    kind = data["kind"]
    if kind in ("birth", "move_in") and not data.get("member"):
        raise ValidationFailed("MEMBER_REQUIRED", "新增人员须提供人员信息", {"kind": kind})
    if kind not in ("birth", "move_in") and not data.get("id_number"):
        raise ValidationFailed("MEMBER_REQUIRED", "移出人员须提供身份证号码", {"kind": kind})

    def step() -> Household:
        hh = get_household(repo, year, household_no, principal)
        if kind in ("birth", "move_in"):
            added = hh.add_member(data["member"], kind, data.get("reason", ""))
            opener = None
            if duplicates is not None:
                def opener(clashes):
                    open_duplicates(duplicates, hh, clashes, clock.now(), source=kind, correlation_id=correlation_id)
            repo.save_change(hh, added=[added], correlation_id=correlation_id, open_cases=opener)
        else:
            removed = hh.remove_member(data["id_number"], kind, data.get("reason", ""))
            repo.save_change(hh, removed=[removed], correlation_id=correlation_id)
        return hh
    return retry_stale(step)


def _check_not_resolving(duplicates, year: int, person_ids) -> None:
    """A split or merge does not move a person whose case is being decided (the decision names
    households as they were): repeat the decision first."""
    if duplicates is None:
        return
    for pid, case in duplicates.open_cases(year, person_ids).items():
        if case.get("pending"):
            raise Conflict("DUPLICATE_RESOLVING", "该人员的重复参保记录正在处理，请先完成处理（重复该决定）",
                           {"id_number": mask_id(pid), "household_no": case["pending"]["household_no"]})


def split_household(repo: HouseholdRepository, year: int, household_no: str, data: dict, principal: Principal | None,
                    correlation_id: str | None = None, duplicates=None) -> tuple[Household, Household]:
    """分户. A member in an open duplicate case keeps the claim where it is unless this household held
    it; the case names the new household instead of this one (HouseholdRepository.save_split)."""
    ids = [x.strip().upper() for x in data["id_numbers"]]

    def step() -> tuple[Household, Household]:
        source = get_household(repo, year, household_no, principal)
        new = source.split(ids, data["new_household_no"], data["new_head"].strip().upper(), data.get("reason", ""))
        _check_not_resolving(duplicates, year, [m.person_id for m in new.members])
        repo.save_split(source, new, correlation_id, cases=duplicates)
        return source, new
    return retry_stale(step)


def merge_households(repo: HouseholdRepository, year: int, household_no: str, data: dict, principal: Principal | None,
                     correlation_id: str | None = None, duplicates=None) -> Household:
    """合户 in two version-checked writes: the other household ends (its members kept with it), then
    this one takes them in. A lost race on the first reads both again; on the second, only this
    household is read again. A merge repeated after it ended half-way (a crash) finishes it. Open
    duplicate cases of the members name this household instead of the ended one; claims move
    only from the ended household."""
    other_no = data["other_household_no"]
    reason = data.get("reason", "")

    def end_other() -> Household:
        target = get_household(repo, year, household_no, principal)
        other = repo.get(year, other_no)
        if other is not None and other.merged_into == household_no:
            if principal is not None:
                principal.check_township(other.township)
            return other  # ended by an earlier call: finish it
        other = get_household(repo, year, other_no, principal)
        _check_not_resolving(duplicates, year, [m.person_id for m in other.members])
        target.merge(other, reason)  # decides on both (places, payment locks); writes only `other` now
        repo.end_merged(other, correlation_id)
        return other
    other = retry_stale(end_other)

    def absorb() -> Household:
        target = get_household(repo, year, household_no, principal)
        changed = target.absorb(other.merged_members, reason)
        repo.save_absorbed(target, other.merged_members, correlation_id, from_no=other_no, cases=duplicates,
                           changed=changed)
        return target
    return retry_stale(absorb)


def file_correction(repo: HouseholdRepository, corrections, clock, data: dict, principal: Principal) -> Correction:
    from datetime import date
    from shared.clock import shanghai_end_of_day
    if not 2000 <= data["year"] <= 2100:
        raise ValidationFailed("BAD_YEAR", "政策年度无效", {"year": data["year"]})
    if clock.now() > shanghai_end_of_day(date(data["year"], 12, 31)):  # its benefit period (待遇享受期) is over
        raise Conflict("YEAR_CLOSED", "该政策年度已结束（待遇享受期至当年12月31日），不再受理信息更正", {"year": data["year"]})
    hh = get_household(repo, data["year"], data["household_no"], principal)
    c = Correction.file("C" + uuid.uuid4().hex[:16], hh, data.get("id_number"), data["changes"], data["reason"],
                        principal.subject, clock.now())
    corrections.add(c)
    return c


def decide_correction(repo: HouseholdRepository, corrections, clock, correction_id: str, approve: bool,
                      note: str | None, principal: Principal, correlation_id: str | None = None) -> Correction:
    """County staff approve (the change is applied to the household) or reject a correction.

    The household is written first, version-checked and marked with the correction's id (so it is
    applied once, even by two approvals at once or a retry), then the correction is closed."""
    c = corrections.get(correction_id)
    if c is None:
        raise NotFound("CORRECTION_NOT_FOUND", "更正申请不存在", {"correction_id": correction_id})
    c.decide(approve, principal.subject, clock.now(), note)
    if approve:
        def apply() -> None:
            hh = get_household(repo, c.year, c.household_no, None)
            old = c.person_id
            if not hh.apply_correction(c.person_id, c.changes, c.reason, c.correction_id):
                return  # applied by a concurrent approval of the same correction
            new = c.changes.get("id_number")
            repo.save_change(hh, moved=(old, hh_member_id(hh, new)) if new else None, correlation_id=correlation_id)
        retry_stale(apply)
    if not corrections.decide(c):
        raise Conflict("CORRECTION_DECIDED", "该更正申请已处理", {"correction_id": correction_id})
    return c


def hh_member_id(hh: Household, raw: str) -> str:
    return next(m.person_id for m in hh.members if m.person_id == raw.strip().upper())


def report_overdue_corrections(corrections, clock) -> int:
    """Publish each overdue correction once (the flag and the event are one write)."""
    n = 0
    for c in corrections.listing("open", None):
        if c.is_overdue(clock.now()) and not c.overdue_reported and corrections.report_overdue(c):
            n += 1
    return n


def on_household_snapshots(repo: HouseholdRepository, envs: list) -> None:
    """Registry's own household events (registered, changed, dissolved) → the members each household
    counts for its township (the accuracy table's registered persons), newest snapshot winning."""
    repo.count_members([(e.payload["year"], e.payload["township"], e.payload["household_no"],
                         0 if e.type == "registry.household.dissolved" else len(e.payload.get("members") or []),
                         e.seq or "") for e in envs])


def accuracy(repo: HouseholdRepository, corrections, duplicates, policy: PolicyYear, year: int):
    """Per-township information accuracy (see domain/accuracy.py for the definition); the registered
    persons are counted from registry's own household events, a second or so behind its writes."""
    from ..domain.accuracy import accuracy_table
    open_people: dict[str, set[str]] = {}
    for c in corrections.listing("open", None):
        if c.year != year:
            continue
        if c.person_id:
            open_people.setdefault(c.township, set()).add(c.person_id)
        else:
            hh = repo.get(year, c.household_no)
            open_people.setdefault(c.township, set()).update(m.person_id for m in (hh.members if hh else []))
    for d in duplicates.listing("open"):
        if d["year"] == year and d["kept"].get("township"):
            open_people.setdefault(d["kept"]["township"], set()).add(d["person_id"])
    names = [t.name for t in policy.townships]
    return accuracy_table(repo.registered_persons(year, names), open_people, names)


def publish_accuracy(db_outbox, repo, corrections, duplicates, policy: PolicyYear, year: int, at) -> list:
    """Record the table and its event in one write (collection `accuracy_reports`)."""
    from shared.events import Event
    rows = accuracy(repo, corrections, duplicates, policy, year)
    payload = {"year": year, "county": policy.county, "as_of": iso(at),
               "rows": [{"township": r.township, "registered_persons": r.registered_persons,
                         "persons_with_open_problems": r.persons_with_open_problems, "rate_bp": r.rate_bp} for r in rows]}
    from pymongo.errors import DuplicateKeyError
    try:
        db_outbox.insert("accuracy_reports", {"_id": f"{year}:{iso(at)}", **payload},
                         [Event("registry.accuracy.published", payload)])
    except DuplicateKeyError:
        pass  # published at this very instant already (a double click, a pinned clock): one report, one event
    return rows
