"""Use cases of scoring."""
from __future__ import annotations

from shared.events import Envelope
from shared.policy import PolicyYear

from ..adapters.repository import ProgressRepository
from ..domain.progress import progress_table


def on_enrolment_changed(repo: ProgressRepository, env: Envelope) -> None:
    p = env.payload
    households = 0 if p.get("supplement") else 1  # 补缴: members joining a household counted already
    if p["status"] == "paid":
        repo.count_paid_household(p["year"], p["township"], p["household_no"], p["order_no"], len(p["person_ids"]),
                                  households)
    elif p["status"] == "revoked":
        repo.uncount_revoked_household(p["year"], p["township"], p["household_no"], p["order_no"],
                                       len(p["person_ids"]), households)


def progress(repo: ProgressRepository, policy: PolicyYear, year: int):
    return progress_table(policy, repo.counters(year, [t.name for t in policy.townships]))


def on_accuracy_published(repo: ProgressRepository, env: Envelope) -> None:
    p = env.payload
    repo.store_accuracy(p["year"], p["as_of"], p["rows"])


def on_coverage_changed(repo: ProgressRepository, env: Envelope) -> None:
    repo.store_coverage(env.payload)
