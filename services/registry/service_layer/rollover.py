"""Year rollover of the roster (年度切换): year Y's households start from year Y-1's as they stand.

What carries: the household (number, township, village, head's phone) and the members it has now
(a member who died, moved out or left with a split or merge is no longer in it, so is not carried).
What does not: enrolment and payment status (year Y starts `registered`), the lock that payment
registration puts on a household (001 七(二)), mid-year approvals, corrections, a household that
merged into another (合户: it ended).

A batch job, never a request's hot path: it reads year Y-1's households in `_id` order from a
stored cursor (adapters/rollover_store.py), `limit` at a time, and registers them with the roster import's bulk writer
(adapters.repository.add_batch), so it is idempotent (a household already carried, or registered
for Y by hand with the same members, is `unchanged`) and resumable after a crash. Each call does one
batch and returns the run's report.
"""
from __future__ import annotations

from typing import Any

from shared.errors import Conflict, DomainError, ValidationFailed
from shared.policy import PolicyYear

from ..adapters.repository import add_batch
from ..domain.model import Household

REPORT_LIMIT = 200  # refusals listed in the report (all are counted)


def _registration(hh: Household, year: int) -> dict[str, Any]:
    return {"household_no": hh.household_no, "year": year, "township": hh.township, "village": hh.village,
            "head_phone": hh.head_phone,
            "members": [{"id_number": m.person_id, "name": m.name, "relation": m.relation, "category": m.category,
                         "birth_date": m.birth_date, "sex": m.sex} for m in hh.members]}


def roll_over(repo, store, duplicates, policy: PolicyYear, from_year: int, at, *, limit: int = 500,
              correlation_id: str | None = None) -> dict[str, Any]:
    """One bounded batch of the rollover `from_year` → `policy.year`; returns the run's report."""
    to_year = policy.year
    if from_year != to_year - 1:
        raise ValidationFailed("ROLLOVER_YEARS", "年度切换只能从上一年度结转到下一年度",
                               {"from_year": from_year, "to_year": to_year})
    key = f"households:{from_year}-{to_year}"
    run = store.run(key) or {
        "_id": key, "from_year": from_year, "to_year": to_year, "after": "", "read": 0, "created": 0,
        "unchanged": 0, "rejected": 0, "ended": 0, "refusals": [], "done": False, "batches": 0}
    if run["done"]:
        return _report(run, {"read": 0, "created": 0, "unchanged": 0, "rejected": 0, "ended": 0})
    docs = store.households_after(from_year, run["after"], limit)
    batch, counts, refusals = [], {"read": len(docs), "created": 0, "unchanged": 0, "rejected": 0, "ended": 0}, []
    for _, old in docs:
        if old.merged_into or not old.members:
            counts["ended"] += 1
            continue
        try:
            insured = {m.person_id for m in old.members
                       if duplicates is not None and duplicates.excluded(to_year, m.person_id)}
            batch.append(Household.register(policy, _registration(old, to_year), insured))
        except DomainError as e:  # e.g. a township or village the new year's table no longer has
            counts["rejected"] += 1
            refusals.append({"household_no": old.household_no, "code": e.code, "message": e.message})
    run_id = correlation_id or f"rollover:{key}"

    def opener(hh, clashes):
        from .handlers import open_duplicates
        open_duplicates(duplicates, hh, clashes, at, source="rollover", correlation_id=run_id)
    outcome = add_batch(repo, batch, run_id, True, opener if duplicates is not None else None) if batch else {}
    for no, (status, err) in outcome.items():
        counts[status] += 1
        if status == "rejected":
            refusals.append({"household_no": no, "code": err.code, "message": err.message})
    version = run.get("version", 0)
    run.update({k: run[k] + counts[k] for k in counts})
    run.update(after=docs[-1][0] if docs else run["after"], done=len(docs) < limit, batches=run["batches"] + 1,
               refusals=(run["refusals"] + refusals)[:REPORT_LIMIT], at=at, version=version + 1)
    # compare-and-set on the run's version: of two calls at once one records its batch; the other's
    # households were written idempotently all the same, and it is told to call again
    if not store.save(run, version):
        raise Conflict("ROLLOVER_BUSY", "另一次年度结转正在处理同一批，请稍后再次调用", {"from_year": from_year,
                                                                          "to_year": to_year})
    return _report(run, counts)


def _report(run: dict[str, Any], batch: dict[str, int]) -> dict[str, Any]:
    return {"from_year": run["from_year"], "to_year": run["to_year"], "done": run["done"], "batch": batch,
            "total": {k: run[k] for k in ("read", "created", "unchanged", "rejected", "ended")},
            "refusals": run["refusals"]}
