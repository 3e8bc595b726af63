"""Use cases of notices."""
from __future__ import annotations

from shared.clock import Clock
from shared.events import Envelope

from ..adapters.repository import NoticeRepository
from ..domain.notice import receipt_notice


def on_payment_confirmed(repo: NoticeRepository, clock: Clock, env: Envelope) -> None:
    repo.add(receipt_notice(env.payload), clock.now())
