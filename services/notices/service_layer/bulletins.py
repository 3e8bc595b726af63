"""Use cases of bulletins (通报): each ranking event becomes its bulletin document once, and the
ranking SMS can carry a short summary and the bulletin's link.

Rules: 002_9137bd928f251374.txt 七(四) — 每周四通报各镇工作进展情况，表扬先进，鞭策后进;
001_93f5b63ac6b4a653.txt 七(五) — 一月一通报 (the rhythm is scoring's: `scoring.ranking.published`).

The link is `{NOTICE_PUBLIC_BASE_URL}/v1/counties/{county}/bulletins/{year}/{stamp}`:
NOTICE_PUBLIC_BASE_URL is the address the notices web is reached at from a phone (a public host
behind the county's proxy); by default the local suite's `http://127.0.0.1:8105`. The page is public
(entrypoints/bulletin_api.py says why), so the link opens without a token.
"""
from __future__ import annotations

import logging

from shared.clock import Clock
from shared.config import env as setting
from shared.events import Envelope

from ..adapters.bulletin_render import render
from ..adapters.bulletin_store import BulletinStore
from ..domain.bulletin import Bulletin, bulletin_content, bulletin_sms_notices, stamp_of
from ..domain.notice import Notice

log = logging.getLogger(__name__)

DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8105"


def on_ranking_published_bulletin(store: BulletinStore, clock: Clock, env: Envelope) -> bool:
    """The bulletin of a ranking event, once: a redelivery finds it by `_id` and renders nothing again
    (it only re-adds its index entry, in case the first delivery stopped between the two writes).
    The rate changes are measured from the newest bulletin stored before this one. True if created."""
    p = env.payload
    year, stamp = p["year"], stamp_of(p["as_of"])
    stored = store.exists(year, stamp)
    if stored is not None:
        store.note(stored)
        return False
    content = bulletin_content(p, store.previous(year, stamp))
    out = render(content, clock.now())
    if out.font_missing:
        log.warning("bulletin %s:%s stored with font_missing: its chart has no Chinese glyphs", year, stamp)
    return store.add(content.to_doc(), out.html, out.png, out.font, out.font_missing, clock.now(), pdf=out.pdf)


def public_base_url() -> str:
    return (setting("NOTICE_PUBLIC_BASE_URL") or DEFAULT_PUBLIC_BASE_URL).rstrip("/")


def bulletin_link(county: str, year: int, stamp: str, base_url: str | None = None) -> str:
    return f"{(base_url or public_base_url()).rstrip('/')}/v1/counties/{county}/bulletins/{year}/{stamp}"


def bulletin_sms_text(content: Bulletin | dict, base_url: str | None = None) -> str:
    """The extra SMS of a bulletin: its summary (≤ 70 characters) and the link (`详见：<link>`). The
    signature (【…】) is added by TemplateBook when the notice is filled, as for every SMS."""
    c = content.to_doc() if isinstance(content, Bulletin) else content
    return f"{c['summary']}详见：{bulletin_link(c['county'], c['year'], c['stamp'], base_url)}"


def bulletin_sms(store: BulletinStore, env: Envelope, leaders: dict[str, list[dict]],
                 base_url: str | None = None) -> list[Notice]:
    """The summary SMS of the event's bulletin (stored by on_ranking_published_bulletin first, so the
    link opens) to each leader's number once: template `bulletin.sms` (summary, link)."""
    p = env.payload
    content = store.exists(p["year"], stamp_of(p["as_of"]))
    if content is None:
        return []
    return bulletin_sms_notices(content, bulletin_link(content["county"], content["year"], content["stamp"], base_url),
                                leaders)
