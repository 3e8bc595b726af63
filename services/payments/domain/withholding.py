"""Bank withholding (银行代扣): three-party agreements, batch files for a bank, the bank's result
file, failures classified, insufficient balances sent back to their towns and taken again.

Rules: 002_9137bd928f251374.txt 六(二)1-3 (签订委托代缴(扣)三方协议书; 将代扣银行代扣医疗保险费不成功的名单进行
分类汇总，对余额不足的代扣帐户发回各镇……以便代扣银行再次代扣). The file formats are docs/withholding.md.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.aggregate import machine
from shared.clock import stamp
from shared.errors import Conflict, ValidationFailed
from shared.masking import mask_id

from .payment import Change

WITHHOLDING_ORDER_TTL = timedelta(days=10)  # a bank answers a batch within days, not hours
EXPORT_HEADER = ["batch_no", "line_no", "order_no", "agreement_no", "account_no", "account_name", "amount_fen"]
RESULT_HEADER = ["batch_no", "line_no", "order_no", "amount_fen", "result_code", "bank_txn_id", "debited_at", "message"]

# result_code in the bank's file → (reason, zh-CN text, retryable, agreement still valid)
RESULT_CODES: dict[str, tuple[str, str, bool, bool]] = {
    "00": ("SUCCESS", "扣款成功", False, True),
    "51": ("INSUFFICIENT_BALANCE", "账户余额不足", True, True),
    "62": ("ACCOUNT_CLOSED", "账户已销户", False, False),
    "63": ("ACCOUNT_FROZEN", "账户冻结或止付", False, True),
    "65": ("AGREEMENT_INVALID", "代扣协议无效或已解除", False, False),
    "14": ("ACCOUNT_NAME_MISMATCH", "户名与账号不符", False, False),
    "96": ("BANK_ERROR", "银行系统故障", True, True),
}
OTHER = ("OTHER", "其他原因扣款失败", False, True)
ACCOUNT_RE = re.compile(r"^\d{8,32}$")


# A batch is written first as `holding` (its planned lines, not yet for the bank), then each line's
# agreement is held for it by compare-and-set; it becomes `sent` with the lines it holds (or
# `cancelled` when it holds none), and `result_imported` with the bank's result file. Only a sent
# batch goes to the bank, so a household is in at most one batch the bank sees until its result.
BATCH = machine("WITHHOLDING_BATCH", {"holding": ("sent", "cancelled"), "sent": ("result_imported",),
                                      "result_imported": (), "cancelled": ()},
                {"holding": "生成中", "sent": "已发送银行", "result_imported": "已回盘", "cancelled": "已作废"})
# The agreement's hold: `pending_batch` names the one batch that may debit the household now.
HOLD = machine("AGREEMENT_HOLD", {"free": ("held",), "held": ("free",)}, {"free": "未占用", "held": "待回盘批次占用"})
AGREEMENT = machine("AGREEMENT", {"active": ("invalid",), "invalid": ()}, {"active": "有效", "invalid": "已失效"})


def hold(agreement: dict[str, Any], batch_no: str) -> Change | None:
    """Hold the agreement for `batch_no`; None when that batch holds it already. Held by another
    batch: IN_PENDING_BATCH (the household waits for that batch's result)."""
    held_by = agreement.get("pending_batch")
    if held_by == batch_no:
        return None
    if held_by:
        raise Conflict("IN_PENDING_BATCH", "该户在待回盘的代扣批次中", {"household_no": agreement["household_no"],
                                                                   "batch_no": held_by})
    HOLD.check("free", "held")
    return Change({"pending_batch": batch_no})


def release(agreement: dict[str, Any], batch_no: str) -> Change | None:
    """Free the agreement from `batch_no`; None when that batch does not hold it."""
    if agreement.get("pending_batch") != batch_no:
        return None
    HOLD.check("held", "free")
    return Change({"pending_batch": None})


def invalidate(agreement: dict[str, Any], reason: str, at: datetime) -> Change | None:
    """active → invalid (the bank says the account or the agreement is dead); None if it is already."""
    if agreement["status"] == "invalid":
        return None
    AGREEMENT.check(agreement["status"], "invalid")
    return Change({"status": "invalid", "invalid_reason": reason, "invalid_at": at})


def holds_line(batch: dict[str, Any], household_no: str) -> bool:
    """Whether a batch may still debit this household: it is one of its lines and the batch is
    neither cancelled nor without them. A hold by any other batch is left over and can be freed."""
    if batch["status"] == "cancelled":
        return False
    return batch["status"] == "holding" or any(l["household_no"] == household_no for l in batch["lines"])


def sent(batch: dict[str, Any], held: set[str]) -> Change:
    """holding → sent with the lines whose agreement this batch holds (renumbered), or → cancelled
    when it holds none; the others are listed as skipped with IN_PENDING_BATCH."""
    lines = [l for l in batch["lines"] if l["household_no"] in held]
    lost = [{"household_no": l["household_no"], "code": "IN_PENDING_BATCH"} for l in batch["lines"]
            if l["household_no"] not in held]
    target = "sent" if lines else "cancelled"
    BATCH.check(batch["status"], target, {"batch_no": batch["_id"]})
    lines = [{**l, "line_no": n} for n, l in enumerate(lines, start=1)]
    return Change({"status": target, "lines": lines, "skipped": [*batch.get("skipped", []), *lost],
                   "count": len(lines), "total_fen": sum(l["amount_fen"] for l in lines)})


def results_imported(batch: dict[str, Any], lines: list[dict[str, Any]], result_hash: str, at: datetime,
                     summary: dict[str, Any], events) -> Change:
    """sent → result_imported with the line results and a payments.withholding.failed per failure."""
    BATCH.check(batch["status"], "result_imported", {"batch_no": batch["_id"]})
    return Change({"lines": lines, "status": "result_imported", "result_hash": result_hash, "result_at": at,
                   "summary": summary}, tuple(events))


def check_exportable(batch: dict[str, Any]) -> None:
    """Only a batch that holds its households goes to the bank."""
    if batch["status"] not in ("sent", "result_imported"):
        raise Conflict("BATCH_NOT_SENDABLE", "该代扣批次未生成完成或已作废，不能发送银行",
                       {"batch_no": batch["_id"], "status": batch["status"]})


def classify(code: str) -> tuple[str, str, bool, bool]:
    return RESULT_CODES.get(code, OTHER)


def mask_account(account_no: str) -> str:
    """6222 0000 0000 1234 → 6222********1234 (bank card numbers are as private as ID numbers)."""
    return account_no[:4] + "*" * max(len(account_no) - 8, 0) + account_no[-4:] if len(account_no) > 8 else "****"


def new_batch_no(at: datetime, seq: str) -> str:
    return "W" + stamp(at) + seq  # Shanghai wall clock, as order numbers


def check_account(account_no: str, account_name: str) -> None:
    if not ACCOUNT_RE.match(account_no or ""):
        raise ValidationFailed("ACCOUNT_NO_INVALID", "银行账号应为8至32位数字", {"field": "account_no"})
    if not (account_name or "").strip():
        raise ValidationFailed("ACCOUNT_NAME_REQUIRED", "缺少账户户名", {"field": "account_name"})


def export_csv(batch: dict[str, Any]) -> str:
    """The batch file for the bank: a header, one row per household, a TOTAL trailer (UTF-8, LF)."""
    check_exportable(batch)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(EXPORT_HEADER)
    for l in batch["lines"]:
        w.writerow([batch["_id"], l["line_no"], l["order_no"], l["agreement_no"], l["account_no"],
                    l["account_name"], l["amount_fen"]])
    w.writerow(["TOTAL", batch["_id"], len(batch["lines"]), sum(l["amount_fen"] for l in batch["lines"])])
    return out.getvalue()


@dataclass(frozen=True)
class LineResult:
    line_no: int
    order_no: str
    amount_fen: int
    code: str
    reason: str
    reason_text: str
    retryable: bool
    agreement_valid: bool
    bank_txn_id: str
    debited_at: str
    message: str

    @property
    def ok(self) -> bool:
        return self.reason == "SUCCESS"


def parse_results(text: str, batch: dict[str, Any]) -> list[LineResult]:
    """Every row checked before anything is written: the batch, the line, its order and amount;
    every line of the batch answered exactly once. A bad row refuses the whole file."""
    try:  # newline="": a bare CR ends a row as csv expects; a field over csv's size limit is refused
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")))
    except csv.Error:
        raise ValidationFailed("RESULT_FILE_FORMAT", "回盘文件不是有效的CSV（请检查换行与引号）") from None
    if not rows or [c.strip() for c in rows[0]] != RESULT_HEADER:
        raise ValidationFailed("RESULT_FILE_HEADER", "回盘文件表头不符合约定格式", {"expected": ",".join(RESULT_HEADER)})
    by_line = {l["line_no"]: l for l in batch["lines"]}
    out: list[LineResult] = []
    seen: set[int] = set()
    for n, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(RESULT_HEADER):
            raise ValidationFailed("RESULT_FILE_ROW", "回盘文件第{}行列数不符".format(n), {"row": n})
        b, line_no, order_no, amount, code, txn, debited_at, message = (c.strip() for c in row)
        if b != batch["_id"]:
            raise ValidationFailed("RESULT_FILE_BATCH", "回盘文件第{}行批次号与本批次不符".format(n), {"row": n})
        if not re.fullmatch(r"[0-9]{1,9}", line_no) or int(line_no) not in by_line:
            raise ValidationFailed("RESULT_FILE_LINE", "回盘文件第{}行明细序号不存在".format(n), {"row": n})
        line = by_line[int(line_no)]
        if int(line_no) in seen:
            raise ValidationFailed("RESULT_FILE_DUPLICATE", "回盘文件第{}行重复回盘同一明细".format(n), {"row": n})
        seen.add(int(line_no))
        if order_no != line["order_no"] or not re.fullmatch(r"-?[0-9]{1,15}", amount) or int(amount) != line["amount_fen"]:
            raise ValidationFailed("RESULT_FILE_MISMATCH", "回盘文件第{}行订单号或金额与批次明细不符".format(n),
                                   {"row": n, "line_no": int(line_no)})
        reason, text_zh, retryable, agreement_valid = classify(code)
        if reason == "SUCCESS":
            if not txn:
                raise ValidationFailed("RESULT_FILE_TXN", "回盘文件第{}行扣款成功但缺少银行流水号".format(n), {"row": n})
            try:
                if datetime.fromisoformat(debited_at).tzinfo is None:
                    raise ValueError
            except ValueError:
                raise ValidationFailed("RESULT_FILE_TIME", "回盘文件第{}行扣款时间应为带时区的ISO 8601时间".format(n),
                                       {"row": n}) from None
        out.append(LineResult(int(line_no), order_no, int(amount), code, reason, text_zh, retryable, agreement_valid,
                              txn, debited_at, message))
    missing = sorted(set(by_line) - seen)
    if missing:
        raise ValidationFailed("RESULT_FILE_INCOMPLETE", "回盘文件未覆盖本批次全部明细", {"missing_lines": missing[:50]})
    return out


def render_agreement(a: dict[str, Any]) -> dict[str, Any]:
    return {"agreement_no": a["agreement_no"], "household_no": a["household_no"], "bank": a["bank"],
            "account_no": mask_account(a["account_no"]), "account_name": a["account_name"][:1] + "*" * 2,
            "signed_on": a["signed_on"], "status": a["status"], "invalid_reason": a.get("invalid_reason"),
            "township": a["township"], "village": a["village"], "head_id": mask_id(a.get("head_id"))}
