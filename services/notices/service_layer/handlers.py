"""Use cases of notices: each event becomes its notices once (natural `_id`s), each rendered from
its template (adapters/templates.py) before it is stored."""
from __future__ import annotations

from shared.clock import Clock
from shared.events import Envelope

from ..adapters.repository import NoticeRepository
from ..adapters.templates import TemplateBook
from ..domain import notice as n


def _add(repo: NoticeRepository, book: TemplateBook, clock: Clock, *notices) -> None:
    for x in notices:
        if x is not None:
            repo.add(book.fill(x), clock.now())


def on_payment_confirmed(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, n.receipt_notice(env.payload))


def on_household_snapshot(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    repo.save_contact(env.payload)


def on_withholding_failed(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, *n.withholding_failure_notices(env.payload))


def on_correction_overdue(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, n.correction_overdue_notice(env.payload))


def on_claim_created(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    p = env.payload
    _add(repo, book, clock, n.claim_created_notice(p, repo.contact(p["year"], p.get("household_no"))))


def on_claim_paid(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    p = env.payload
    _add(repo, book, clock, n.claim_paid_notice(p, repo.contact(p["year"], p.get("household_no"))))


def on_coverage_changed(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, n.coverage_alert(env.payload))


def on_stage_evaluated(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, *n.stage_result_notices(env.payload))


def on_forecast_published(repo: NoticeRepository, clock: Clock, env: Envelope, book: TemplateBook) -> None:
    _add(repo, book, clock, *n.forecast_notices(env.payload))
