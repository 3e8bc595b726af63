"""Stored bulletins (通报), collection `bulletins` of the county's notices database.

- `<year>:<YYYYMMDDHHMM>` (the bulletin instant, Shanghai time; domain/bulletin.py stamp_of): one per
  ranking event however often it arrives (insert_once), holding `html` (the page), `png` (the chart,
  bson Binary), `content` (domain Bulletin.to_doc), `font`, `font_missing` and `created_at`;
- `index:<year>`: the year's bulletins as short entries (id, stamp, title, as_of, rows), added with
  `$addToSet` after the bulletin itself, so the list API and the previous-bulletin lookup read one
  document by `_id` and never scan (the local store scans any other filter). A crash between the two
  writes is healed by the redelivery: the entry is added again, and `$addToSet` keeps it once.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import Binary

from shared.store import insert_once

BULLETINS = "bulletins"


def bulletin_id(year: int, stamp: str) -> str:
    return f"{year}:{stamp}"


def index_id(year: int) -> str:
    return f"index:{year}"


def entry_of(content: dict[str, Any]) -> dict[str, Any]:
    """A bulletin's line in its year's index (deterministic: the same bulletin gives the same entry)."""
    return {"id": bulletin_id(content["year"], content["stamp"]), "stamp": content["stamp"], "title": content["title"],
            "as_of": content["as_of"], "rows": len(content["rows"])}


class BulletinStore:
    def __init__(self, db):
        self.coll = db[BULLETINS]

    def add(self, content: dict[str, Any], html: str, png: bytes, font: str | None, font_missing: bool,
            at: datetime, pdf: bytes | None = None) -> bool:
        """The bulletin once, then its index entry (always: a redelivery completes an interrupted add).
        True if this call created it."""
        doc = {"_id": bulletin_id(content["year"], content["stamp"]), "year": content["year"],
               "stamp": content["stamp"], "content": content, "html": html, "png": Binary(png), "font": font,
               "font_missing": font_missing, "pdf": Binary(pdf) if pdf is not None else None, "created_at": at}
        created = insert_once(self.coll, doc)
        self.note(content)
        return created

    def note(self, content: dict[str, Any]) -> None:
        year = content["year"]
        self.coll.update_one({"_id": index_id(year)}, {"$setOnInsert": {"year": year},
                                                       "$addToSet": {"entries": entry_of(content)}}, upsert=True)

    def exists(self, year: int, stamp: str) -> dict[str, Any] | None:
        """The stored bulletin's content (without its page and chart), or None."""
        doc = self.coll.find_one({"_id": bulletin_id(year, stamp)}, {"content": 1})
        return None if doc is None else doc["content"]

    def entries(self, year: int) -> list[dict[str, Any]]:
        """The year's bulletins, oldest first."""
        doc = self.coll.find_one({"_id": index_id(year)}) or {}
        return sorted(doc.get("entries") or [], key=lambda e: e["stamp"])

    def previous(self, year: int, stamp: str) -> dict[str, Any] | None:
        """The content of the newest bulletin of the year before `stamp` (two `_id` reads)."""
        earlier = [e for e in self.entries(year) if e["stamp"] < stamp]
        return self.exists(year, earlier[-1]["stamp"]) if earlier else None

    def page(self, year: int, stamp: str) -> dict[str, Any] | None:
        """The bulletin without its chart and PDF bytes: `html`, `content`, `font_missing`."""
        return self.coll.find_one({"_id": bulletin_id(year, stamp)}, {"png": 0, "pdf": 0})

    def chart(self, year: int, stamp: str) -> bytes | None:
        doc = self.coll.find_one({"_id": bulletin_id(year, stamp)}, {"png": 1})
        return None if doc is None else bytes(doc["png"])

    def pdf(self, year: int, stamp: str) -> dict[str, Any] | None:
        """The bulletin's `pdf` (None where it was stored without one) and `content.title`, or None."""
        return self.coll.find_one({"_id": bulletin_id(year, stamp)}, {"pdf": 1, "content.title": 1})
