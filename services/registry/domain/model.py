"""Households (户) and their members for a policy year, and their enrolment status.

Rules (001_93f5b63ac6b4a653.txt, 五): a registered household enrols and pays as a whole at its
village (以户为单位…不得拆分参保、不得选择性参保); the receipt names the head (户主).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from shared.aggregate import machine
from shared.clock import iso
from shared.errors import Conflict, ValidationFailed
from shared.events import Event
from shared.policy import PolicyYear

from shared.resident_id import check_declared, parse_resident_id

RELATIONS = ("户主", "配偶", "子女", "父母", "祖父母", "孙子女", "兄弟姐妹", "其他")
CATEGORIES = ("rural", "urban_non_employed", "student", "resident_non_local")  # 农村居民 城镇非从业 在校学生 常住非户籍

# A household's enrolment for its year (001 七(二)): registered (no payment yet) → paid (缴费登记,
# payments.payment.confirmed) → confirmed (the tax bureau's audit, 县医保局确认完成参保登记和缴费登记);
# the money going back revokes it (paid or confirmed → revoked), and a revoked year may be paid again.
ENROLMENT = machine("ENROLMENT", {
    "registered": ("paid",),
    "paid": ("confirmed", "revoked"),
    "confirmed": ("revoked",),
    "revoked": ("paid",),
}, {"registered": "已登记未缴费", "paid": "已缴费", "confirmed": "已确认参保", "revoked": "已撤销"})


@dataclass
class Member:
    person_id: str  # 身份证号码, the natural key
    name: str
    relation: str
    category: str
    birth_date: date
    sex: str
    status: str = "registered"  # registered → paid → confirmed

    def to_doc(self) -> dict[str, Any]:
        return {"person_id": self.person_id, "name": self.name, "relation": self.relation,
                "category": self.category, "birth_date": self.birth_date.isoformat(), "sex": self.sex}


@dataclass
class Household:
    household_no: str  # 户编号
    year: int
    county: str
    township: str
    village: str
    head_phone: str | None
    members: list[Member]
    enrolment: dict[str, Any] = field(default_factory=dict)  # status for the year, set by payments events
    events: list[Event] = field(default_factory=list)
    excluded: list[dict[str, Any]] = field(default_factory=list)  # members left out: employee insurance
    merged_into: str | None = None  # set when this household merged into another (合户) and ended
    merged_members: list[Member] = field(default_factory=list)  # its members as they were when it ended
    corrections_applied: list[str] = field(default_factory=list)  # approved corrections written here (once each)
    version: int = 0  # the stored document's write count (0: not stored yet, or stored before versions)

    @property
    def head(self) -> Member:
        return next(m for m in self.members if m.relation == "户主")

    @property
    def enrolment_status(self) -> str:
        return self.enrolment.get("status") or "registered"

    @classmethod
    def register(cls, policy: PolicyYear, data: dict[str, Any], employee_insured: frozenset | set = frozenset()) -> "Household":
        """`employee_insured`: ID numbers on the county's employee-insurance list (城镇职工医保); they
        are left out of resident enrolment and reported (001 二: 除已参加城镇职工基本医疗保险以外)."""
        if data["year"] != policy.year:
            raise ValidationFailed("YEAR_NOT_OPEN", "该政策年度未开放登记", {"year": data["year"]})
        if policy.township(data["township"]) is None:
            raise ValidationFailed("UNKNOWN_TOWNSHIP", "乡镇不在本县参保任务表中", {"township": data["township"]})
        town = policy.township(data["township"])
        village = (data.get("village") or "").strip()
        if not village or (town.villages and not town.has_village(village)):
            raise ValidationFailed("UNKNOWN_VILLAGE", "村（社区）不在该乡镇的村（社区）名单中",
                                   {"township": data["township"], "village": village})
        members, excluded = [], []
        seen = set()
        for i, m in enumerate(data["members"]):
            fieldname = f"members[{i}].id_number"
            rid = parse_resident_id(m["id_number"], field=fieldname)
            check_declared(rid, m.get("birth_date"), m.get("sex"), field=fieldname)
            if rid.number in seen:
                raise ValidationFailed("DUPLICATE_IN_HOUSEHOLD", "同一户内身份证号码重复", {"field": fieldname})
            seen.add(rid.number)
            if rid.number in employee_insured:
                if m["relation"] == "户主":
                    raise ValidationFailed("HEAD_EMPLOYEE_INSURED", "户主已参加城镇职工医保，请县医保局核实后处理",
                                           {"field": fieldname})
                excluded.append({"id_number": rid.number, "name": m["name"], "field": fieldname})
                continue
            members.append(Member(rid.number, m["name"], m["relation"], m.get("category", "rural"),
                                  rid.birth_date, rid.sex))
        heads = [m for m in members if m.relation == "户主"]
        if len(heads) != 1:
            raise ValidationFailed("HEAD_REQUIRED", "每户必须有且只有一名户主", {"heads": len(heads)})
        hh = cls(data["household_no"], data["year"], policy.county, data["township"], data["village"].strip(),
                 data.get("head_phone"), members, excluded=excluded)
        hh.events.append(Event("registry.household.registered", hh._snapshot()))
        return hh

    def _snapshot(self) -> dict[str, Any]:
        return {"household_no": self.household_no, "year": self.year, "county": self.county,
                "township": self.township, "village": self.village, "head_name": self.head.name,
                "head_phone": self.head_phone,
                "members": [{"person_id": m.person_id, "name": m.name, "relation": m.relation, "category": m.category}
                            for m in self.members]}

    def _check_unlocked(self) -> None:
        if self.locked:  # 001 七(二): 在办理了缴费登记后，不允许办理异动
            raise Conflict("LOCKED_AFTER_PAYMENT", "该户本年度已办理缴费登记，不允许办理异动",
                           {"household_no": self.household_no, "year": self.year})

    def add_member(self, m: dict[str, Any], kind: str, reason: str = "") -> Member:
        """A birth or a move into the household (异动). A move-in waits for no payment registration
        (001 七(二)); a birth does not: the newborn of a household that paid joins it unpaid, to be
        enrolled mid-year at the township for the current year (001 四: 出生28天以内新生儿……应先行到
        乡镇办理当年度参保缴费), while the members the payment named stay as they were."""
        if kind != "birth":
            self._check_unlocked()
        rid = parse_resident_id(m["id_number"], field="member.id_number")
        check_declared(rid, m.get("birth_date"), m.get("sex"), field="member.id_number")
        if any(x.person_id == rid.number for x in self.members):
            raise ValidationFailed("DUPLICATE_IN_HOUSEHOLD", "同一户内身份证号码重复", {"field": "member.id_number"})
        if m["relation"] == "户主":
            raise ValidationFailed("HEAD_REQUIRED", "每户必须有且只有一名户主", {"heads": 2})
        member = Member(rid.number, m["name"], m["relation"], m.get("category", "rural"), rid.birth_date, rid.sex)
        self.members.append(member)
        if self.locked:  # a birth after the payment: listed for mid-year enrolment, as one born after the order is
            self.enrolment = {**self.enrolment, "unpaid": [*(self.enrolment.get("unpaid") or []),
                                                           {"person_id": member.person_id, "reason": "born_after_payment"}]}
        self.events.append(Event("registry.household.changed", {**self._snapshot(), "change": kind, "reason": reason}))
        return member

    def check_can_leave(self, person_id: str) -> Member:
        """Whether the member may leave (the checks of remove_member, nothing changed)."""
        self._check_unlocked()
        member = next((m for m in self.members if m.person_id == person_id), None)
        if member is None:
            raise ValidationFailed("PERSON_NOT_IN_HOUSEHOLD", "该人员不在此户", {"household_no": self.household_no})
        if member.relation == "户主":
            raise ValidationFailed("HEAD_REQUIRED", "户主不能直接移出，请先变更户主", {"heads": 0})
        return member

    def remove_member(self, person_id: str, kind: str, reason: str = "") -> Member:
        """A death or a move out (异动), before payment registration only; the head cannot leave
        without a new head (that is a household split or merge)."""
        member = self.check_can_leave(person_id)
        self.members.remove(member)
        self.events.append(Event("registry.household.changed", {**self._snapshot(), "change": kind, "reason": reason}))
        return member

    def apply_correction(self, person_id: str | None, changes: dict[str, Any], reason: str,
                         correction_id: str | None = None) -> bool:
        """An approved correction (信息更正) of registration errors; the ID number itself is corrected
        through the repository, which moves the person's claim. False when this correction was
        written here already (a retry after a crash or a lost race applies it once)."""
        if correction_id is not None and correction_id in self.corrections_applied:
            return False
        target = next((m for m in self.members if m.person_id == person_id), None) if person_id else None
        for k, v in changes.items():
            if k == "village":
                self.village = v
            elif k == "head_phone":
                self.head_phone = v
            elif target is None:
                raise ValidationFailed("CORRECTION_FIELDS", "更正人员信息时须指明人员", {"field": k})
            elif k == "id_number":
                rid = parse_resident_id(v, field="changes.id_number")
                target.person_id, target.birth_date, target.sex = rid.number, rid.birth_date, rid.sex
            elif k == "birth_date":
                target.birth_date = date.fromisoformat(v) if isinstance(v, str) else v
            else:
                setattr(target, k, v)
        heads = sum(m.relation == "户主" for m in self.members)
        if heads != 1:
            raise ValidationFailed("HEAD_REQUIRED", "每户必须有且只有一名户主", {"heads": heads})
        if correction_id is not None:
            self.corrections_applied.append(correction_id)
        self.events.append(Event("registry.household.changed", {**self._snapshot(), "change": "correction",
                                                                "reason": reason}))
        return True

    def split(self, person_ids: list[str], new_household_no: str, new_head: str, reason: str = "") -> "Household":
        """分户: members leave to form a new household with its own head; the head stays."""
        self._check_unlocked()
        ids = set(person_ids)
        moving = [m for m in self.members if m.person_id in ids]
        if not moving or len(moving) != len(ids):
            raise ValidationFailed("PERSON_NOT_IN_HOUSEHOLD", "分户人员不在此户", {"household_no": self.household_no})
        if self.head in moving:
            raise ValidationFailed("HEAD_REQUIRED", "户主不能分出，请先变更户主", {"heads": 0})
        if new_head not in ids:
            raise ValidationFailed("HEAD_REQUIRED", "新户户主须为分出人员之一", {"heads": 0})
        if new_household_no == self.household_no:
            raise ValidationFailed("HOUSEHOLD_NO_TAKEN", "新户编号不能与原户相同", {"household_no": new_household_no})
        for m in moving:
            self.members.remove(m)
            m.relation = "户主" if m.person_id == new_head else "其他"  # staff correct relations afterwards
        new = Household(new_household_no, self.year, self.county, self.township, self.village, None, moving)
        new.events.append(Event("registry.household.registered", new._snapshot()))
        self.events.append(Event("registry.household.changed", {**self._snapshot(), "change": "split", "reason": reason}))
        return new

    def merge(self, other: "Household", reason: str = "") -> None:
        """合户: every member of `other` joins this household, which keeps its head; `other` ends
        (keeping its members as they were in `merged_members`, so the move can be finished by
        `absorb` after a lost race or a crash)."""
        self._check_unlocked()
        other._check_unlocked()
        if other.household_no == self.household_no or other.year != self.year:
            raise ValidationFailed("MERGE_INVALID", "只能合并同一年度的另一户", {"household_no": other.household_no})
        if (other.township, other.village) != (self.township, self.village):
            raise ValidationFailed("MERGE_PLACES", "合户的两户应在同一村（社区）",
                                   {"village": self.village, "other_village": other.village})
        other.end_in(self.household_no, reason)
        self.absorb(other.merged_members, reason)

    def end_in(self, target_no: str, reason: str = "") -> None:
        """This household merged into `target_no` and ends for the year (registry.household.dissolved)."""
        self.merged_members = [Member(**vars(m)) for m in self.members]
        self.members = []
        self.merged_into = target_no
        self.events.append(Event("registry.household.dissolved", {
            "household_no": self.household_no, "year": self.year, "county": self.county,
            "township": self.township, "village": self.village, "merged_into": target_no, "reason": reason}))

    def absorb(self, moved: list[Member], reason: str = "") -> bool:
        """The members of a household that ended in this one join it (the second half of a merge).
        Not refused once this household is paid: the other household has ended already, so its
        members must land somewhere; joined after this year's order, they are listed unpaid."""
        ours = {m.person_id for m in self.members}
        new = [Member(**{**vars(m), "relation": "其他"}) for m in moved if m.person_id not in ours]
        if not new:  # relations to the new head are set by a correction afterwards
            return False
        self.members.extend(new)
        if self.locked:
            self.enrolment = {**self.enrolment, "unpaid": (self.enrolment.get("unpaid") or []) + [
                {"person_id": m.person_id, "reason": "joined_after_order"} for m in new]}
        self.events.append(Event("registry.household.changed", {**self._snapshot(), "change": "merge", "reason": reason}))
        return True

    @property
    def locked(self) -> bool:
        """After payment registration (缴费登记) no change (异动) may touch this year's record."""
        return self.enrolment_status in ("paid", "confirmed")

    def record_payment(self, order_no: str, person_ids: list[str], paid_at: str,
                       mid_year_approved: set[str] | frozenset = frozenset()) -> bool:
        """Record a confirmed payment. Returns False when already recorded (redelivery).

        The order fixes who is paid for (001 五: the household as it stood when the order was made;
        an order may stay open for days, a withholding order up to 10): the money is taken, so it is
        always recorded, never refused:
        - the persons paid for who are members are enrolled (`person_ids`);
        - members not paid for joined after the order (a birth, a move in, a merge): they stay
          registered and are listed in `unpaid` for the township (a newborn enrols through mid-year
          enrolment, 001 四; see domain/midyear.py);
        - persons paid for who are no longer members (a death, a move out, the household merged
          away) are listed in `paid_not_members` and the enrolment is flagged `review` for county
          staff (a refund is a reversal through payments).
        A payment for part of the household made after the window for members approved for
        mid-year enrolment (中途参保, 001 四: after the window they alone pay) enrols only them."""
        current = self.enrolment.get("order_no")
        if current == order_no:  # a redelivery; or a reversed order, which does not come back
            return False
        if self.locked:
            raise Conflict("ALREADY_PAID", "该户本年度已缴费", {"order_no": current})
        ENROLMENT.check(self.enrolment_status, "paid", {"order_no": order_no})
        ours, paid = {m.person_id for m in self.members}, set(person_ids)
        mid_year = bool(paid) and paid < ours and paid <= set(mid_year_approved)
        by_supplement = self._supplemented()  # a supplement taken before this payment (events out of order)
        supplements = self.enrolment.get("supplements")
        self.enrolment = {"status": "paid", "order_no": order_no, "paid_at": paid_at,
                          "person_ids": sorted(paid & ours)}
        if supplements:
            self.enrolment["supplements"] = supplements
        if mid_year:
            self.enrolment["mid_year"] = True
        unpaid = [] if mid_year else [m.person_id for m in self.members
                                      if m.person_id not in paid and m.person_id not in by_supplement]
        if unpaid:
            self.enrolment["unpaid"] = [{"person_id": p, "reason": "joined_after_order"} for p in unpaid]
        gone = sorted(paid - ours)
        if gone:
            self.enrolment["paid_not_members"] = [
                {"person_id": p, "reason": "merged_away" if self.merged_into else "left_after_order"} for p in gone]
            self.enrolment["review"] = True
        self._set_status("paid", order_no)
        return True

    # ---- supplementary payments (补缴) --------------------------------------------------------
    # A member who joined after the household's order (a newborn) enrols through mid-year enrolment
    # (001 四: 出生28天以内新生儿……应先行到乡镇办理当年度参保缴费) and is paid for by a payment of its own,
    # a supplement: kept in `enrolment.supplements` ({order_no, person_ids, paid_at, status}), each
    # moving paid → confirmed, or → revoked, for its members alone; the household's own enrolment
    # (its status, its order, its members) is not touched.

    def _supplement(self, order_no: str) -> dict[str, Any] | None:
        return next((s for s in self.enrolment.get("supplements") or [] if s["order_no"] == order_no), None)

    def _supplemented(self, but: str | None = None) -> set[str]:
        """The persons standing supplements cover (except the one of order `but`)."""
        return {p for s in self.enrolment.get("supplements") or [] if s["status"] != "revoked" and s["order_no"] != but
                for p in s["person_ids"]}

    def record_supplement(self, order_no: str, person_ids: list[str], paid_at: str) -> bool:
        """A confirmed supplementary payment: the members it paid for who are not enrolled yet are
        enrolled (they leave `unpaid`). Never refused, the money being taken: a person it paid for
        who is no longer a member or is enrolled already is listed in `paid_not_members` for county
        staff (payments pays each person once, so this is not expected). False on a redelivery."""
        if order_no == self.enrolment.get("order_no") or self._supplement(order_no) is not None:
            return False
        members = {m.person_id: m for m in self.members}
        paid = list(dict.fromkeys(person_ids))
        covered = sorted(p for p in paid if p in members and members[p].status not in ("paid", "confirmed"))
        enrolment = {**self.enrolment, "supplements": [*(self.enrolment.get("supplements") or []), {
            "order_no": order_no, "person_ids": covered, "paid_at": paid_at, "status": "paid"}]}
        self._set_unpaid(enrolment, [u for u in enrolment.get("unpaid") or [] if u["person_id"] not in covered])
        odd = [p for p in paid if p not in covered]
        if odd:
            enrolment["paid_not_members"] = [*(enrolment.get("paid_not_members") or []), *(
                {"person_id": p, "reason": "already_enrolled" if p in members else "left_after_order",
                 "order_no": order_no} for p in odd)]
            enrolment["review"] = True
        self.enrolment = enrolment
        self._set_members(covered, "paid", order_no)
        return True

    def record_supplement_audit(self, order_no: str, audited_at: str) -> bool | None:
        """paid → confirmed for a supplement's members (the tax bureau's audit of its money). None:
        no such supplement here (yet); False: confirmed already or revoked meanwhile."""
        s = self._supplement(order_no)
        if s is None:
            return None
        if not ENROLMENT.can(s["status"], "confirmed"):
            return False
        self._replace_supplement(order_no, {**s, "status": "confirmed", "audited_at": audited_at})
        members = {m.person_id: m for m in self.members}
        self._set_members([p for p in s["person_ids"] if p in members and members[p].status == "paid"],
                          "confirmed", order_no)
        return True

    def record_supplement_reversal(self, order_no: str, reason: str, reversed_at: str) -> bool | None:
        """The money of a supplement went back: its members alone are revoked (registered again and
        listed in `unpaid` for mid-year enrolment once more); the household and everyone else keep
        their enrolment. None: no such supplement here (yet); False: revoked already."""
        s = self._supplement(order_no)
        if s is None:
            return None
        if not ENROLMENT.can(s["status"], "revoked"):
            return False
        self._replace_supplement(order_no, {**s, "status": "revoked", "reversal_reason": reason,
                                            "reversed_at": reversed_at})
        base = set(self.enrolment.get("person_ids") or []) if self.enrolment_status in ("paid", "confirmed") else set()
        still = base | self._supplemented(but=order_no)
        members = {m.person_id for m in self.members}
        revoked = [p for p in s["person_ids"] if p in members and p not in still]
        unpaid = list(self.enrolment.get("unpaid") or [])
        unpaid += [{"person_id": p, "reason": "payment_reversed"} for p in revoked
                   if all(u["person_id"] != p for u in unpaid)]
        enrolment = dict(self.enrolment)
        self._set_unpaid(enrolment, unpaid)
        self.enrolment = enrolment
        self._set_members(revoked, "revoked", order_no)
        return True

    def _replace_supplement(self, order_no: str, new: dict[str, Any]) -> None:
        self.enrolment = {**self.enrolment, "supplements": [
            new if s["order_no"] == order_no else s for s in self.enrolment.get("supplements") or []]}

    @staticmethod
    def _set_unpaid(enrolment: dict[str, Any], unpaid: list[dict[str, Any]]) -> None:
        if unpaid:
            enrolment["unpaid"] = unpaid
        else:
            enrolment.pop("unpaid", None)  # nobody left for mid-year enrolment: off the township's list

    def _set_members(self, person_ids: list[str], status: str, order_no: str) -> None:
        """A supplement's members to `status` (revoked: registered), with registry.enrolment.changed."""
        if not person_ids:
            return
        ids = set(person_ids)
        for m in self.members:
            if m.person_id in ids:
                m.status = "registered" if status == "revoked" else status
        self.events.append(Event("registry.enrolment.changed", {
            "household_no": self.household_no, "year": self.year, "county": self.county,
            "township": self.township, "village": self.village, "status": status,
            "person_ids": [m.person_id for m in self.members if m.person_id in ids], "order_no": order_no,
            "supplement": True, **_effective_at(self._supplement(order_no) or {}, status)}))

    def note_benefit_starts(self, starts: dict[str, str]) -> None:
        """待遇享受起始日 of mid-year members a payment covered (payments computed them from the policy's
        rule and the payment date): kept in `enrolment.benefits_from` and carried by the
        registry.enrolment.changed this change emits (optional `benefits_from`)."""
        ours = {m.person_id for m in self.members}
        starts = {p: d for p, d in starts.items() if p in ours and d}
        if not starts:
            return
        self.enrolment["benefits_from"] = {**(self.enrolment.get("benefits_from") or {}), **starts}
        for e in self.events:
            if e.type == "registry.enrolment.changed":
                mine = {p: d for p, d in starts.items() if p in e.payload["person_ids"]}
                if mine:
                    e.payload["benefits_from"] = mine

    def benefits_from(self, person_id: str) -> str | None:
        """A paid member's 待遇享受起始日 when it is not the year's start (a mid-year enrolment)."""
        m = next((m for m in self.members if m.person_id == person_id), None)
        if m is None or m.status not in ("paid", "confirmed"):
            return None
        return (self.enrolment.get("benefits_from") or {}).get(person_id)

    @property
    def unpaid_members(self) -> list[Member]:
        """Members the year's payment did not cover because they joined after its order (for mid-year handling)."""
        ids = {u["person_id"] for u in self.enrolment.get("unpaid") or []}
        return [m for m in self.members if m.person_id in ids and m.status not in ("paid", "confirmed")]

    def record_audit(self, order_no: str, audited_at: str) -> bool:
        """paid → confirmed once the tax bureau's audit is done (001 七(二): 县医保局确认完成参保登记和缴费登记)."""
        if self.enrolment.get("order_no") != order_no:
            raise Conflict("ORDER_MISMATCH", "审核的订单不是该户本年度的缴费订单",
                           {"order_no": order_no, "current": self.enrolment.get("order_no")})
        if not ENROLMENT.can(self.enrolment_status, "confirmed"):
            return False  # already confirmed, or revoked meanwhile
        self.enrolment = {**self.enrolment, "status": "confirmed", "audited_at": audited_at}
        self._set_status("confirmed", order_no)
        return True

    def record_reversal(self, order_no: str, reason: str, reversed_at: str) -> bool:
        """The money went back (gateway reversal, overpayment): the enrolment it paid for is revoked."""
        if self.enrolment.get("order_no") != order_no or not ENROLMENT.can(self.enrolment_status, "revoked"):
            return False
        self.enrolment = {**self.enrolment, "status": "revoked", "reversal_reason": reason, "reversed_at": reversed_at}
        self._set_status("revoked", order_no)
        return True

    def _set_status(self, status: str, order_no: str) -> None:
        """The members the payment covers (`person_ids`; a payment recorded before they were kept
        covered the whole household)."""
        ids = self.enrolment.get("person_ids")
        covered = set(ids) if ids is not None else {m.person_id for m in self.members}
        members = [m for m in self.members if m.person_id in covered]
        for m in members:
            m.status = "registered" if status == "revoked" else status
        self.events.append(Event("registry.enrolment.changed", {
            "household_no": self.household_no, "year": self.year, "county": self.county,
            "township": self.township, "village": self.village, "status": status,
            "person_ids": [m.person_id for m in members], "order_no": order_no,
            **_effective_at(self.enrolment, status)}))


def _effective_at(record: dict[str, Any], status: str) -> dict[str, str]:
    """When an enrolment change took effect, for registry.enrolment.changed: the payment's `paid_at`
    (paid, confirmed) or its reversal's `reversed_at` (revoked), so scoring counts it by its own time
    against staged deadlines (000 二: 在截止时间内), not by when the event happened to be published."""
    key = "reversed_at" if status == "revoked" else "paid_at"
    return {key: iso(record[key])} if record.get(key) else {}
