"""Reconciliation (对账) of a gateway's daily statement against the payments recorded here, and the
remittance summaries to the special fund account (解款, 001 七(四): 要求3天进行一次解款;
000 四(三): 专户储存……做到日清周结).
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

REMITTANCE_INTERVAL_DAYS = 3  # Dong'an 2020 (001 七(四)); the policy file does not carry it yet


def reconcile(statement_lines: list[dict[str, Any]], platform: list[dict[str, Any]]) -> dict[str, Any]:
    """Match by order number, then check the transaction id and the amount.

    `platform` are the orders this gateway was paid for on that day (one dict per order with
    order_no, transaction_id, amount_fen). Missing on either side and differences are listed.
    """
    ours = {p["order_no"]: p for p in platform}
    theirs: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {"matched": [], "missing_on_platform": [], "missing_on_statement": [],
                              "amount_mismatch": [], "transaction_mismatch": [], "duplicates_on_statement": []}
    for line in statement_lines:
        if line["order_no"] in theirs:
            report["duplicates_on_statement"].append(line["order_no"])
            continue
        theirs[line["order_no"]] = line
    for no, line in theirs.items():
        p = ours.get(no)
        if p is None:
            report["missing_on_platform"].append({"order_no": no, "transaction_id": line["transaction_id"],
                                                  "statement_fen": line["amount_fen"]})
        elif p["transaction_id"] != line["transaction_id"]:
            report["transaction_mismatch"].append({"order_no": no, "platform_transaction_id": p["transaction_id"],
                                                   "statement_transaction_id": line["transaction_id"]})
        elif p["amount_fen"] != line["amount_fen"]:
            report["amount_mismatch"].append({"order_no": no, "platform_fen": p["amount_fen"],
                                              "statement_fen": line["amount_fen"],
                                              "difference_fen": line["amount_fen"] - p["amount_fen"]})
        else:
            report["matched"].append(no)
    for no, p in ours.items():
        if no not in theirs:
            report["missing_on_statement"].append({"order_no": no, "transaction_id": p["transaction_id"],
                                                   "platform_fen": p["amount_fen"]})
    report["statement_total_fen"] = sum(l["amount_fen"] for l in theirs.values())
    report["platform_total_fen"] = sum(p["amount_fen"] for p in ours.values())
    report["difference_fen"] = report["statement_total_fen"] - report["platform_total_fen"]
    report["balanced"] = not any(report[k] for k in ("missing_on_platform", "missing_on_statement", "amount_mismatch",
                                                     "transaction_mismatch", "duplicates_on_statement"))
    return report


def remittance_periods(opens: date, until: date, interval: int = REMITTANCE_INTERVAL_DAYS) -> list[tuple[date, date]]:
    """Consecutive periods of `interval` days from the window's opening up to `until` (inclusive)."""
    out, start = [], opens
    while start <= until:
        out.append((start, start + timedelta(days=interval - 1)))
        start += timedelta(days=interval)
    return out


def remitted(payment: dict[str, Any], sign: int = 1) -> dict[str, int]:
    """What one payment adds to its township's day of remittance totals (`sign` -1: what its
    reversal takes back), as counter increments: a household (none for a supplement, 补缴, which adds
    its money only), its money, the subsidies paid in directly, by channel and by gateway."""
    fen = sign * payment["amount_fen"]
    return {"households": 0 if payment.get("supplement") else sign, "amount_fen": fen,
            "subsidy_fen": sign * payment.get("subsidy_fen", 0),
            f"by_channel.{payment['channel']}": fen, f"by_gateway.{payment['gateway']}": fen}


def totals_by_day(payments: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Day totals (the shape the counters keep) of payments that stand (reversed ones left out)."""
    out: dict[str, dict[str, Any]] = {}
    for p in payments:
        if p.get("status") == "reversed":
            continue
        day = out.setdefault(p["paid_day"], {"households": 0, "amount_fen": 0, "subsidy_fen": 0,
                                             "by_channel": {}, "by_gateway": {}})
        for path, v in remitted(p).items():
            if "." in path:
                group, key = path.split(".", 1)
                day[group][key] = day[group].get(key, 0) + v
            else:
                day[path] += v
    return out


def remittance_summary(days: dict[str, dict[str, Any]], opens: date, until: date,
                       interval: int = REMITTANCE_INTERVAL_DAYS, closes: date | None = None) -> list[dict[str, Any]]:
    """Per period: households, the individual contributions collected per channel and gateway (to be
    remitted to the special account the day after the period ends), and the subsidies the
    departments pay in directly (相关部门直接代缴), from the day totals (`totals_by_day`, or the
    payments worker's counters: reversed payments taken back).

    With `closes` (the window's last day), the periods go on past it up to `until` for mid-year
    payments (中途参保, 001 四), listing only those periods that collected something."""
    periods = remittance_periods(opens, until, interval)
    rows = [{"period_start": s.isoformat(), "period_end": e.isoformat(), "remit_by": (e + timedelta(days=1)).isoformat(),
             "households": 0, "amount_fen": 0, "subsidy_fen": 0, "by_channel": {}, "by_gateway": {}} for s, e in periods]
    collected = [0] * len(rows)
    for day, t in days.items():
        d = date.fromisoformat(day)
        if d < opens or d > until or not (t.get("households") or t.get("amount_fen")):
            continue
        i = (d - opens).days // interval
        row = rows[i]
        collected[i] += 1
        for k in ("households", "amount_fen", "subsidy_fen"):
            row[k] += t.get(k, 0)
        for group in ("by_channel", "by_gateway"):
            for key, fen in (t.get(group) or {}).items():
                row[group][key] = row[group].get(key, 0) + fen
    for row in rows:
        for group in ("by_channel", "by_gateway"):
            row[group] = {k: v for k, v in row[group].items() if v}
    if closes is not None:
        rows = [r for r, n in zip(rows, collected) if r["period_start"] <= closes.isoformat() or n]
    return rows
