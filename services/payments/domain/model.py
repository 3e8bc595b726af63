"""Quotes, orders and confirmed payments (缴费) of whole households, in integer fen.

Rules: 001_93f5b63ac6b4a653.txt 三 (250 yuan per person, paid once a year in full), 四 (window
2019-09-01..12-31; after it only members approved for mid-year enrolment, at the financing
standard; a newborn within 28 days at the individual standard, also when the household has paid
already: a supplementary payment, 补缴), 五 (the household pays as a whole; no split or selective payment; the proof of payment
per channel), 六 (hardship subsidies by the payer's identity at the time of payment).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Iterable

from shared.aggregate import machine
from shared.clock import SHANGHAI, iso, stamp
from shared.errors import Conflict, DomainError, ValidationFailed
from shared.events import Event
from shared.masking import mask_id
from shared.policy import PolicyYear, mid_year_benefit_start

from .payment import Change

ORDER_TTL = timedelta(hours=2)
CHANNELS = ("mobile_app", "online_banking", "pos", "bank_counter", "self_service", "village_cash", "withholding")

# Proof of payment (缴费依据) per channel, 001 五: the electronic order for app and online payments
# (order number + the gateway's transaction id, no extra field), the machine slip (机打小票) for POS
# and self-service terminals, the bank's collection voucher (银行收款凭单) at the counter; village
# cash collection names the collector and the 湖南省社会保险基金收据 book and sheet; withholding
# names the three-party agreement and the batch.
PROOF_FIELDS: dict[str, tuple[str, ...]] = {
    "mobile_app": (),
    "online_banking": (),
    "pos": ("terminal_id", "slip_no"),
    "self_service": ("terminal_id", "slip_no"),
    "bank_counter": ("branch", "voucher_no"),
    "village_cash": ("collector_id", "collector_name", "receipt_book_no", "receipt_sheet_no"),
    "withholding": ("agreement_no", "batch_no"),
}
PAYER_FIELDS = ("county", "township", "village", "head_name", "head_phone")
CHANNEL_NAMES = {"mobile_app": "手机APP", "online_banking": "网上银行", "pos": "银行POS机",
                 "bank_counter": "银行柜面", "self_service": "银行自助终端", "village_cash": "村（社区）现金代收",
                 "withholding": "银行代扣"}


# ---- subsidy entitlements (read model of subsidy.entitlement.changed) -------------------------

@dataclass(frozen=True)
class Entitlement:
    """What the subsidy service last said about a person-year, in effect from `effective_from`."""
    category: str | None
    subsidy_fen: int
    full_coverage: bool
    effective_from: date
    occurred_at: str = ""
    seq: str = ""


def current_entitlement(changes: Iterable[Entitlement], on: date) -> Entitlement | None:
    """The subsidy service's latest word already in effect on `on` (Shanghai date).

    The latest published change wins among those in effect, so a correction (e.g. a category
    withdrawn with the same effective date) overrides what it corrects.
    """
    live = [c for c in changes if c.effective_from <= on]
    return max(live, key=lambda c: (c.occurred_at, c.seq)) if live else None


def subsidy_for(standard_fen: int, ent: Entitlement | None) -> int:
    """001 六: 特困 fully covered (pays 0); registered poor and 低保 get a fixed subsidy (130 yuan)."""
    if ent is None or ent.category is None:
        return 0
    if ent.full_coverage:
        return standard_fen
    return min(ent.subsidy_fen, standard_fen)


# ---- mid-year approvals (read model of registry.mid_year.approved) -----------------------------

@dataclass(frozen=True)
class MidYearApproval:
    """Registry approved a person's mid-year enrolment (中途参保) for the year: what they pay and why."""
    pays: str  # "full_financing" (the listed special cases) | "individual"
    code: str
    reason: str
    benefits_rule: str | None = None  # how benefits start from the payment date (policy mid_year.benefits_from)


# ---- quotes -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuoteLine:
    person_id: str
    name: str
    standard_fen: int
    subsidy_fen: int
    category: str | None = None
    benefits_rule: str | None = None  # a mid-year member's: how benefits start from the payment date

    @property
    def payable_fen(self) -> int:
        return self.standard_fen - self.subsidy_fen


@dataclass(frozen=True)
class Quote:
    household_no: str
    year: int
    lines: tuple[QuoteLine, ...]
    mid_year: bool = False  # after the window: only the members approved for mid-year enrolment
    supplement: bool = False  # 补缴: the household paid already; only its approved, unpaid members

    @property
    def total_fen(self) -> int:
        return sum(l.payable_fen for l in self.lines)

    @property
    def standard_total_fen(self) -> int:
        return sum(l.standard_fen for l in self.lines)

    @property
    def subsidy_total_fen(self) -> int:
        return sum(l.subsidy_fen for l in self.lines)


def quote(household: dict[str, Any] | None, policy: PolicyYear, at: datetime, already_paid: bool,
          entitlements: dict[str, Entitlement | None] | None = None, *,
          open_duplicates: Iterable[str] = (), mid_year: dict[str, MidYearApproval] | None = None,
          paid_ids: Iterable[str] | None = None) -> Quote:
    """Inside the window: the whole household, every active member, at the standard of the policy
    year less the subsidy of the member's identity current at `at` (001 六: 依据缴费人当前身份进行征收).
    After it: see `mid_year_quote`. A household that paid already: see `supplement_quote`
    (`paid_ids`: the persons its payments cover; None: all its members).

    A member whose duplicate enrolment case (多地重复参保) is still open holds the whole household
    (001 五: the household pays as a whole), until county staff resolve where the person belongs."""
    if household is None:  # payments knows only what registry published: never registered, or refused there
        raise DomainError("HOUSEHOLD_UNKNOWN", "未找到该户的参保登记信息：该户未在医保系统登记或登记未被受理，"
                          "请到户籍所在地村（社区）核实登记后再缴费", {"registered": False}, status=404)
    if household["year"] != policy.year:
        raise ValidationFailed("YEAR_NOT_OPEN", "该政策年度未开放缴费", {"year": household["year"]})
    if household.get("merged_into"):  # 合户: the household ended; its members pay with the other one
        raise DomainError("HOUSEHOLD_MERGED", "该户已合并到其他户，请按合并后的户缴费",
                          {"merged_into": household["merged_into"]}, status=409)
    entitlements = entitlements or {}
    if already_paid:
        return supplement_quote(household, policy, at, entitlements, mid_year or {}, open_duplicates, paid_ids)
    check_no_open_duplicate(household, open_duplicates)
    if not policy.window_open_at(at):
        return mid_year_quote(household, policy, at, entitlements, mid_year or {})
    lines = []
    for m in household["members"]:
        ent = entitlements.get(m["person_id"])
        lines.append(QuoteLine(m["person_id"], m["name"], policy.standard_fen, subsidy_for(policy.standard_fen, ent),
                               ent.category if ent else None))
    return Quote(household["household_no"], household["year"], tuple(lines))


def mid_year_quote(household: dict[str, Any], policy: PolicyYear, at: datetime,
                   entitlements: dict[str, Entitlement | None], approvals: dict[str, MidYearApproval]) -> Quote:
    """After the window, 001 四: 原则上不得中途参保 — only the members registry approved for mid-year
    enrolment (中途参保) are charged, each as the decision says; the other members are not charged
    (they stay outside the year's enrolment):

    - `full_financing`, the listed special cases: 按当年度城乡居民医保筹资标准(含个人缴费部分和财政补助部分)
      一次性足额缴纳. Our reading: the person pays the whole financing standard, the government-subsidy
      part included, so no hardship subsidy (001 六) is deducted from it; the standard is the policy
      file's `mid_year.financing_standard_fen`, and while it is unset (the notice prints no figure)
      the quote is refused with FINANCING_STANDARD_UNSET rather than charged at a guessed figure.
    - `individual` (newborns within 28 days, Wuming's exceptions): the individual standard less the
      subsidy of the member's current identity, as inside the window.

    Before the window opens, after the policy year ends, or with nobody approved: WINDOW_CLOSED with
    the reason."""
    window = "不在集中参保缴费期内（{}至{}）".format(policy.window_opens.isoformat(), policy.window_closes.isoformat())
    if not policy.after_window_in_year_at(at):
        raise DomainError("WINDOW_CLOSED", window, {"at": iso(at)})
    approved = [(m, approvals[m["person_id"]]) for m in household["members"] if m["person_id"] in approvals]
    if not approved:
        raise DomainError("WINDOW_CLOSED", window + "；集中缴费期后原则上不得中途参保，本户没有经批准可中途参保的人员",
                          {"at": iso(at), "reason": "NO_MID_YEAR_APPROVAL"})
    return Quote(household["household_no"], household["year"], approved_lines(approved, policy, entitlements),
                 mid_year=True)


def supplement_quote(household: dict[str, Any], policy: PolicyYear, at: datetime,
                     entitlements: dict[str, Entitlement | None], approvals: dict[str, MidYearApproval],
                     open_duplicates: Iterable[str] = (), paid_ids: Iterable[str] | None = None) -> Quote:
    """补缴 (新增人员缴费): the household paid for the year already (one payment per household-year
    for its members then, 001 五), and members joined after its order — a newborn above all (001 四:
    出生28天以内新生儿……应先行到乡镇办理当年度参保缴费). Those registry approved for mid-year enrolment
    and not paid yet are charged, each at the standard the approval names (`approved_lines`), inside
    the window too; nobody approved: HOUSEHOLD_ALREADY_PAID, as before. Only the charged members'
    duplicate cases hold the quote (the others are enrolled already)."""
    paid = {m["person_id"] for m in household["members"]} if paid_ids is None else set(paid_ids)
    unpaid = [m for m in household["members"] if m["person_id"] not in paid]
    approved = [(m, approvals[m["person_id"]]) for m in unpaid if m["person_id"] in approvals]
    if not approved:
        details: dict[str, Any] = {"household_no": household["household_no"]}
        message = "该户本年度已缴费"
        if unpaid:
            details.update(unpaid_members=len(unpaid), reason="NO_MID_YEAR_APPROVAL")
            message += "；户内新增人员须先到乡镇办理中途参保（新生儿参保）批准后补缴"
        raise Conflict("HOUSEHOLD_ALREADY_PAID", message, details)
    if not (policy.window_open_at(at) or policy.after_window_in_year_at(at)):
        raise DomainError("WINDOW_CLOSED", f"{policy.year}年度已结束，不能再补缴该年度的医保费", {"at": iso(at)})
    check_no_open_duplicate({**household, "members": [m for m, _ in approved]}, open_duplicates)
    return Quote(household["household_no"], household["year"], approved_lines(approved, policy, entitlements),
                 mid_year=True, supplement=True)


def approved_lines(approved: list[tuple[dict[str, Any], MidYearApproval]], policy: PolicyYear,
                   entitlements: dict[str, Entitlement | None]) -> tuple[QuoteLine, ...]:
    """Each approved member at the standard the approval names (see `mid_year_quote`)."""
    if policy.financing_standard_fen is None and any(a.pays == "full_financing" for _, a in approved):
        raise DomainError("FINANCING_STANDARD_UNSET", "未配置{}年度城乡居民医保筹资标准（含个人缴费部分和财政补助部分），"
                          "暂不能办理按筹资标准一次性足额缴费的中途参保".format(policy.year), {"year": policy.year})
    lines = []
    for m, a in approved:
        if a.pays == "full_financing":
            lines.append(QuoteLine(m["person_id"], m["name"], policy.financing_standard_fen, 0,
                                   benefits_rule=a.benefits_rule))
        else:
            ent = entitlements.get(m["person_id"])
            lines.append(QuoteLine(m["person_id"], m["name"], policy.standard_fen,
                                   subsidy_for(policy.standard_fen, ent), ent.category if ent else None,
                                   a.benefits_rule))
    return tuple(lines)


def check_no_open_duplicate(household: dict[str, Any], open_duplicates: Iterable[str]) -> None:
    """Refuse while any member has an open duplicate case; the message names them by masked ID."""
    held = set(open_duplicates)
    ids = [mask_id(m["person_id"]) for m in household["members"] if m["person_id"] in held]
    if ids:
        raise Conflict("MEMBER_DUPLICATE_UNRESOLVED",
                       "户内成员 {} 存在未处理的多地重复参保记录，须经县医保局处理后方可缴费".format("、".join(ids)),
                       {"household_no": household["household_no"], "id_numbers": ids})


def check_whole_household(q: Quote, person_ids: list[str] | None) -> None:
    """001 五: 不得拆分参保、不得选择性参保 — an order naming members must name all of them."""
    if person_ids is None:
        return
    wanted, members = set(person_ids), {l.person_id for l in q.lines}
    if wanted != members or len(person_ids) != len(wanted):
        raise ValidationFailed("HOUSEHOLD_SPLIT", "须以户为单位整体缴费，不得拆分或选择性缴费",
                               {"household_members": len(members), "requested": len(wanted),
                                "missing": len(members - wanted), "unknown": len(wanted - members)})


# ---- orders -----------------------------------------------------------------------------------

def new_order_no(at: datetime) -> str:
    return "P" + stamp(at) + secrets.token_hex(4).upper()  # Shanghai wall clock, as batch numbers


def check_proof(channel: str, proof: dict[str, Any] | None) -> dict[str, str]:
    """The proof of payment the channel needs (PROOF_FIELDS); unknown keys are dropped."""
    proof = proof or {}
    needed = PROOF_FIELDS[channel]
    missing = [k for k in needed if not str(proof.get(k) or "").strip()]
    if missing:
        raise ValidationFailed("PROOF_MISSING", "缺少该缴费渠道要求的缴费凭证信息",
                               {"channel": channel, "missing": missing})
    return {k: str(proof[k]).strip() for k in needed}


# An order's states: paid when its money recorded the household's payment, duplicate_payment when
# the household was already paid by another order (the money is to be refunded), reversed when the
# gateway gave the money back. The stored status may lag the payment record (the payments worker
# marks it from payments.payment.confirmed), so a reversal can find it still `created`.
ORDER = machine("ORDER", {"created": ("paid", "duplicate_payment"), "paid": ("reversed",),
                          "duplicate_payment": ("reversed",), "reversed": ()},
                {"created": "待支付", "paid": "已支付", "duplicate_payment": "重复缴费待退款", "reversed": "已冲正"})


@dataclass
class Order:
    order_no: str
    household_no: str
    year: int
    gateway: str
    channel: str
    amount_fen: int
    lines: tuple[QuoteLine, ...]
    created_at: datetime
    expires_at: datetime
    status: str = "created"  # created → paid | duplicate_payment → reversed
    transaction_id: str | None = None
    paid_at: str | None = None
    receipt_no: str | None = None
    payer: dict[str, Any] | None = None  # the household's places, head and phone as at the order
    version: int = 0  # as read (0: a new order, or one stored before versions)
    reversal: dict[str, Any] | None = None  # {reversal_id, reason, at, by} once its money went back
    supplement: bool = False  # 补缴 for members who joined a household paid already (Quote.supplement)

    @classmethod
    def create(cls, q: Quote, gateway: str, channel: str, at: datetime, ttl: timedelta = ORDER_TTL,
               allowed_channels: tuple[str, ...] = (), household: dict[str, Any] | None = None) -> "Order":
        """The amount and every member's subsidy are frozen here: a later identity change does not
        alter an order (001 六: 缴费后特殊身份标识发生变化的，不再补退)."""
        if channel not in CHANNELS:
            raise ValidationFailed("UNKNOWN_CHANNEL", "不支持的缴费渠道", {"channel": channel})
        if allowed_channels and channel not in allowed_channels:
            raise DomainError("CHANNEL_NOT_ALLOWED", "该支付渠道未开通此缴费方式", {"channel": channel}, status=403)
        payer = {k: household.get(k) for k in PAYER_FIELDS} if household else None
        return cls(new_order_no(at), q.household_no, q.year, gateway, channel, q.total_fen, q.lines, at, at + ttl,
                   payer=payer, supplement=q.supplement)

    def check_notification(self, gateway: str, amount_fen: int, at: datetime) -> None:
        if gateway != self.gateway:
            raise DomainError("ORDER_GATEWAY_MISMATCH", "订单不属于该支付渠道", status=403)
        if amount_fen != self.amount_fen:
            raise ValidationFailed("AMOUNT_MISMATCH", "支付金额与订单金额不一致",
                                   {"order_fen": self.amount_fen, "paid_fen": amount_fen})
        if self.status == "created" and at > self.expires_at:
            raise DomainError("ORDER_EXPIRED", "订单已过期", {"expires_at": iso(self.expires_at)})

    def receipt(self) -> str:
        return "R" + self.order_no[1:]

    def members_payload(self) -> list[dict[str, Any]]:
        """Each member as paid for; a mid-year member whose policy sets a benefit start carries
        `benefits_from` (待遇享受起始日, from the payment's Shanghai day)."""
        out = []
        for l in self.lines:
            m = {"person_id": l.person_id, "name": l.name, "standard_fen": l.standard_fen,
                 "subsidy_fen": l.subsidy_fen, "payable_fen": l.payable_fen}
            start = mid_year_benefit_start(l.benefits_rule, date.fromisoformat(shanghai_day(self.paid_at))) \
                if l.benefits_rule and self.paid_at else None
            if start is not None:
                m["benefits_from"] = start.isoformat()
            out.append(m)
        return out

    def apply_recorded(self, payment: dict[str, Any] | None) -> "Order":
        """The order as its household's payment record says: a confirmation is acknowledged once the
        payment is recorded, and the order's own status follows a moment later (the payments worker
        marks it from the confirmed event), so readers that must not wait look at the payment too."""
        if self.status == "created" and payment is not None and payment.get("order_no") == self.order_no:
            self.status = "reversed" if payment.get("status") == "reversed" else "paid"
            self.transaction_id, self.paid_at = payment["transaction_id"], payment["paid_at"]
            self.receipt_no = payment["receipt_no"]
        return self

    def mark_paid(self, payment: dict[str, Any]) -> Change | None:
        """created → paid from the household's payment record this order paid; None when the order
        is past that already (a reversal recorded first stays)."""
        if self.status != "created" or payment.get("order_no") != self.order_no:
            return None
        ORDER.check(self.status, "paid", {"order_no": self.order_no})
        return Change({"status": "paid", "transaction_id": payment["transaction_id"], "paid_at": payment["paid_at"],
                       "receipt_no": payment["receipt_no"], "paid_day": payment["paid_day"],
                       "proof": payment.get("proof") or {}})

    def mark_duplicate(self, transaction_id: str, paid_at: str, proof: dict[str, str]) -> Change:
        """created → duplicate_payment: the household was paid by another order; this money is refunded."""
        ORDER.check(self.status, "duplicate_payment", {"order_no": self.order_no})
        return Change({"status": "duplicate_payment", "transaction_id": transaction_id, "paid_at": paid_at,
                       "receipt_no": None, "paid_day": shanghai_day(paid_at), "proof": proof})

    def reverse(self, at: datetime, by: str, reversal_id: str, reason: str,
                payment: dict[str, Any] | None = None) -> Change | None:
        """paid or duplicate_payment → reversed (an order still `created` whose payment is recorded
        goes through paid). The same reversal again is None; another one is refused."""
        if self.status == "reversed":
            if (self.reversal or {}).get("reversal_id", reversal_id) == reversal_id:
                return None
            raise Conflict("ORDER_ALREADY_REVERSED", "该订单已冲正", {"order_no": self.order_no})
        set_: dict[str, Any] = {}
        status = self.status
        if status == "created" and payment is not None:
            paid = self.mark_paid(payment)
            if paid is not None:
                set_.update(paid.set_)
                status = "paid"
        ORDER.check(status, "reversed", {"order_no": self.order_no})
        set_.update({"status": "reversed", "reversal": {"reversal_id": reversal_id, "reason": reason, "at": at,
                                                       "by": by}})
        return Change(set_)

    def confirmed_event(self, household: dict[str, Any], transaction_id: str, paid_at: str) -> Event:
        return Event("payments.payment.confirmed", {
            "order_no": self.order_no, "receipt_no": self.receipt(), "household_no": self.household_no,
            "year": self.year, "county": household["county"], "township": household["township"],
            "village": household["village"], "head_name": household["head_name"],
            "head_phone": household.get("head_phone"), "amount_fen": self.amount_fen, "channel": self.channel,
            "gateway": self.gateway, "transaction_id": transaction_id, "paid_at": paid_at,
            "members": self.members_payload(), **({"supplement": True} if self.supplement else {})})


# ---- supplementary payments (补缴) -----------------------------------------------------------------

def supplement_key(year: int, household_no: str, number: int) -> str:
    """The `_id` of a household-year's `number`-th payment: the first keeps "<year>:<household_no>",
    a supplement is "<year>:<household_no>:<n>" (n = 2, 3, ...; household numbers hold no colon)."""
    return f"{year}:{household_no}" if number == 1 else f"{year}:{household_no}:{number}"


def supplement_slot(recorded: dict[str, Any], order_no: str, person_ids: Iterable[str]) -> str:
    """What a recorded payment of the household-year means to a supplement order looking for its
    slot: "ours" (this order's money is recorded there), "taken" (it paid for one of our persons
    and still stands: our money is an overpayment to refund) or "other" (look at the next one).
    A reversed payment covers nobody any more, so a person whose supplement went back may pay again;
    each person is thus in at most one standing payment, because every claimant of a later slot
    has read every earlier one, and a standing payment is never un-reversed."""
    if recorded["order_no"] == order_no:
        return "ours"
    if recorded.get("status") != "reversed" and set(recorded["person_ids"]) & set(person_ids):
        return "taken"
    return "other"


def covered_persons(payments: Iterable[dict[str, Any]]) -> set[str]:
    """The persons the household-year's standing payments cover (the first payment always counts:
    a reversed one refuses the quote before this is asked)."""
    out: set[str] = set()
    for p in payments:
        if not p.get("supplement") or p.get("status") != "reversed":
            out.update(p["person_ids"])
    return out


def shanghai_day(iso_instant: str) -> str:
    """The Asia/Shanghai calendar day of an ISO instant (statements and audits count in it)."""
    return datetime.fromisoformat(iso_instant).astimezone(SHANGHAI).date().isoformat()
