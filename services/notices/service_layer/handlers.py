"""Use cases of notices: each event becomes its notices once (natural `_id`s), each rendered from
its template (adapters/templates.py) before it is stored."""
from __future__ import annotations

from itertools import groupby

from shared.clock import Clock
from shared.events import Envelope

from ..adapters.bulletin_store import BulletinStore
from ..adapters.repository import NoticeRepository
from ..adapters.templates import TemplateBook
from ..adapters.unpaid import UnpaidLedger
from ..domain import notice as n
from . import bulletins


def _add(repo: NoticeRepository, book: TemplateBook, clock: Clock, *notices, env: Envelope | None = None) -> None:
    for x in notices:
        if x is not None:
            repo.add(book.fill(x), clock.now(), event_id=env.id if env is not None else None)


def on_payment_confirmed(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, n.receipt_notice(env.payload), env=env)


def on_payments_confirmed(repo: NoticeRepository, clock: Clock, envs: list[Envelope], book: TemplateBook) -> None:
    """A batch of confirmations: their receipt notices stored, pointed and listed together."""
    repo.add_many([(book.fill(x), env.id) for env in envs if (x := n.receipt_notice(env.payload)) is not None],
                  clock.now())


def on_household_snapshot(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook,
                          ledger: UnpaidLedger | None = None) -> None:
    p = env.payload
    repo.save_contact(p)
    if ledger is not None:
        ledger.registered(p["year"], p["township"], p["household_no"])


def on_household_snapshots(repo: NoticeRepository, ledger: UnpaidLedger, envs: list[Envelope]) -> None:
    """A run of household snapshots (a roster import): the heads' contacts in one bulk write and the
    households on their townships' unpaid lists in one or two."""
    repo.save_contacts([e.payload for e in envs])
    ledger.registered_many([(e.payload["year"], e.payload["township"], e.payload["household_no"]) for e in envs])


def on_enrolment_changed(ledger: UnpaidLedger, env: Envelope) -> None:
    """Keeps who has not paid (for reminders): a paid household leaves the list, a revoked one returns."""
    p = env.payload
    if p.get("supplement"):
        return  # a newborn's supplement: the household counted as paid already
    if p["status"] in ("paid", "confirmed"):
        ledger.paid(p["year"], p["township"], p["household_no"])
    elif p["status"] == "revoked":
        ledger.revoked(p["year"], p["township"], p["household_no"])


def on_enrolments_changed(ledger: UnpaidLedger, envs: list[Envelope]) -> None:
    """A batch of enrolment changes: each run of payments leaves the unpaid lists together
    (UnpaidLedger.paid_many), a reversal returns its household where it falls in the batch."""
    def paid(env: Envelope) -> bool:
        return not env.payload.get("supplement") and env.payload["status"] in ("paid", "confirmed")
    for is_paid, run in groupby(envs, paid):
        if is_paid:
            ledger.paid_many([(e.payload["year"], e.payload["township"], e.payload["household_no"]) for e in run])
        else:
            for env in run:
                on_enrolment_changed(ledger, env)


def on_withholding_failed(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, *n.withholding_failure_notices(env.payload), env=env)


def on_correction_overdue(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, n.correction_overdue_notice(env.payload), env=env)


def on_audits_overdue(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, n.audits_overdue_notice(env.payload), env=env)


def on_claim_created(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    p = env.payload
    _add(repo, book, clock, n.claim_created_notice(p, repo.contact(p["year"], p.get("household_no"))), env=env)


def on_claim_paid(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    p = env.payload
    _add(repo, book, clock, n.claim_paid_notice(p, repo.contact(p["year"], p.get("household_no"))), env=env)


def on_coverage_changed(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, *n.coverage_alerts(env.payload), env=env)


def on_stage_evaluated(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, *n.stage_result_notices(env.payload), env=env)


def on_forecast_published(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, *n.forecast_notices(env.payload), env=env)


def on_ranking_published(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    """The bulletin page first (the SMS links to it), then each township's line to its leaders and
    its work list, and the bulletin's summary to the leaders."""
    store = BulletinStore(repo.db)
    bulletins.on_ranking_published_bulletin(store, clock, env)
    leaders = {}
    for row in env.payload["rows"]:
        doc = repo.leaders(row["township"])
        leaders[row["township"]] = (doc or {}).get("leaders") or []
    _add(repo, book, clock, *n.ranking_notices(env.payload, leaders), *bulletins.bulletin_sms(store, env, leaders), env=env)
