"""Use cases of scoring."""
from __future__ import annotations

from datetime import datetime
from itertools import groupby

from shared.events import Envelope
from shared.policy import PolicyYear

from ..adapters.repository import ProgressRepository
from ..domain.progress import effective_at, progress_table, village_table


def _paid(env: Envelope) -> dict:
    """The arguments of ProgressRepository.count_paid_household for an enrolment change."""
    p = env.payload
    return {"year": p["year"], "township": p["township"], "household_no": p["household_no"],
            "order_no": p["order_no"], "persons": len(p["person_ids"]),
            "households": 0 if p.get("supplement") else 1,  # 补缴: members joining a household counted already
            "village": p["village"], "at": effective_at(p, env.occurred_at)}


def on_enrolment_changed(repo: ProgressRepository, env: Envelope) -> None:
    p = env.payload
    households = 0 if p.get("supplement") else 1
    if p["status"] == "paid":
        repo.count_paid_household(**_paid(env))
    elif p["status"] == "revoked":
        repo.uncount_revoked_household(p["year"], p["township"], p["household_no"], p["order_no"],
                                       len(p["person_ids"]), households, at=effective_at(p, env.occurred_at))


def on_enrolments_changed(repo: ProgressRepository, envs: list[Envelope]) -> None:
    """A batch of registry.enrolment.changed in delivery order: each run of payments counted
    together (ProgressRepository.count_paid_households), any other change one at a time where it
    falls, so a reversal still follows the payment it takes back."""
    for paid, run in groupby(envs, lambda env: env.payload["status"] == "paid"):
        if paid:
            repo.count_paid_households([_paid(env) for env in run])
        else:
            for env in run:
                on_enrolment_changed(repo, env)


def progress(repo: ProgressRepository, policy: PolicyYear, year: int, at: datetime | None = None):
    """The township table as of instant `at` (000 二: 在截止时间内); None: everything counted so far."""
    standings = repo.progress_as_of(year, [t.name for t in policy.townships], at)
    return progress_table(policy, {t: {"persons": s.persons, "households": s.households}
                                   for t, s in standings.items()})


def village_progress(repo: ProgressRepository, policy: PolicyYear, year: int, township: str, at: datetime | None):
    """A township's villages as of `at`, ranked (000 二(二): 本乡(镇、街道)排名后两位村(社区)), and
    the township's own standing. None: no such township in the year's task table."""
    town = policy.township(township)
    if town is None:
        return None
    standing = repo.progress_as_of(year, [town.name], at, villages=True)[town.name]
    return town, standing, village_table(town.villages, standing)


def on_accuracy_published(repo: ProgressRepository, env: Envelope) -> None:
    p = env.payload
    repo.store_accuracy(p["year"], p["as_of"], p["rows"])


def on_coverage_changed(repo: ProgressRepository, env: Envelope) -> None:
    repo.store_coverage(env.payload)
