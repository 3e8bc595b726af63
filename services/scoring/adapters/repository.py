"""Progress counters per township and year (`_id` "<year>:<township>"), counted once per household.

A township's counter holds the cumulative figures, the figures of each Shanghai calendar day
(`days.<YYYY-MM-DD>`) and the cumulative figures per village (`villages.<key>`; keys escaped by
domain.progress.village_key), all in the one `$inc` of count_once, so they never disagree. The
counter collection stays townships × years (a county's few dozen documents of a few kB): rankings
read all of a year's counters with one `_id $in` query. The instants inside a day live in
`progress_days`, one document per township and day (`_id` "<year>:<township>:<YYYY-MM-DD>",
read and written by `_id` alone), for a deadline that falls inside that day and for the villages
of a past instant.
"""
from __future__ import annotations

from datetime import datetime

from shared.clock import iso
from pymongo import UpdateOne

from shared.store import Count, count_many, count_once, find_by_ids, keep_newest

from ..domain.progress import Standing, counted_increments, coverage_order, days_from, shanghai_day, standing_as_of

PROGRESS = "progress"
DAYS = "progress_days"  # {_id: "<year>:<township>:<day>", entries: [{fact, at, persons, households, village}]}
OUTBOX_COLLECTIONS: tuple[str, ...] = ()
INDEXES = ()


def _paid(year: int, township: str, household_no: str, order_no: str, persons: int, households: int = 1, *,
          village: str | None = None, at: datetime | None = None) -> Count:
    """The count of one household payment: its fact (keyed by its order) and its increments."""
    return Count(f"{year}:{township}", f"paid:{year}:{household_no}:{order_no}",
                 counted_increments(at and shanghai_day(at), village, persons, households),
                 {"township": township, "persons": persons, "households": households, "village": village, "at": iso(at)},
                 {"year": year, "township": township})


class ProgressRepository:
    def __init__(self, db):
        self.db = db

    def count_paid_household(self, year: int, township: str, household_no: str, order_no: str, persons: int,
                             households: int = 1, *, village: str | None = None,
                             at: datetime | None = None) -> bool:
        """Once per household payment (keyed by its order): a redelivery never counts twice. A
        supplementary payment (补缴) counts its persons and no household (`households` 0). `at`: when
        the payment was recorded (its day and instant), `village`: where (None for either: not kept)."""
        c = _paid(year, township, household_no, order_no, persons, households, village=village, at=at)
        counted = count_once(self.db, PROGRESS, c.counter_id, c.fact_key, c.inc, c.fact, on_insert=c.on_insert)
        self._note_entry(year, c.fact_key, c.fact if counted else None)
        return counted

    def count_paid_households(self, paid: list[dict]) -> None:
        """count_paid_household for a batch (each a dict of its arguments) in a few store commands
        (shared.store.count_many), their day entries in one bulk write."""
        items = [_paid(**p) for p in paid]
        counted = count_many(self.db, PROGRESS, items)
        first = {c.fact_key: c for c in reversed(items)}  # a repeat in the batch: the first one stands
        self._note_entries([(c.on_insert["year"], key, c.fact if key in counted else None) for key, c in first.items()])

    def uncount_revoked_household(self, year: int, township: str, household_no: str, order_no: str,
                                  persons: int, households: int = 1, *, at: datetime | None = None) -> bool:
        """A reversed payment takes its persons back out, once, and only if they were counted: from
        `at` on (its day, its instant), out of the village its payment was counted in."""
        paid = self.db[f"{PROGRESS}_facts"].find_one({"_id": f"paid:{year}:{household_no}:{order_no}"})
        if not paid:
            return False
        key = f"revoked:{year}:{household_no}:{order_no}"
        village = paid.get("village")  # None: counted before villages were kept, in no village's figure
        fact = {"township": township, "persons": -persons, "households": -households, "village": village,
                "at": iso(at)}
        counted = count_once(self.db, PROGRESS, f"{year}:{township}", key,
                             counted_increments(at and shanghai_day(at), village, -persons, -households), fact)
        self._note_entry(year, key, fact if counted else None)
        return counted

    def _note_entry(self, year: int, key: str, fact: dict | None) -> None:
        """The fact's entry in its day's document, written whether or not count_once counted just now
        (a crash between the two writes heals on redelivery; `$addToSet` makes the second write none).
        `fact` None: read the one recorded (the first delivery's figures and time stand)."""
        self._note_entries([(year, key, fact)])

    def _note_entries(self, noted: list[tuple[int, str, dict | None]]) -> None:
        """_note_entry for many facts: one upsert per day document, all in one bulk write."""
        by_doc: dict[str, tuple[int, str, str, list]] = {}
        for year, key, fact in noted:
            if fact is None:
                fact = self.db[f"{PROGRESS}_facts"].find_one({"_id": key}) or {}
            if not fact.get("at"):  # counted without a time: in the cumulative figures only
                continue
            day = shanghai_day(datetime.fromisoformat(fact["at"]))
            entry = {"fact": key, "at": fact["at"], "persons": fact["persons"], "households": fact["households"],
                     "village": fact.get("village")}
            by_doc.setdefault(f"{year}:{fact['township']}:{day}", (year, fact["township"], day, []))[3].append(entry)
        if by_doc:
            self.db[DAYS].bulk_write([UpdateOne({"_id": _id}, {"$addToSet": {"entries": {"$each": entries}},
                                                               "$setOnInsert": {"year": year, "township": town, "day": day}},
                                                upsert=True) for _id, (year, town, day, entries) in by_doc.items()],
                                     ordered=False)

    def progress_as_of(self, year: int, townships: list[str], at: datetime | None, *, villages: bool = False,
                       counters: dict[str, dict] | None = None) -> dict[str, Standing]:
        """Each township's persons and households (and, with `villages`, each village's) as of instant
        `at`, inclusive (000 二: 在截止时间内); `at` None: everything counted so far. The counters
        (one query, or `counters` already read) and the day documents an instant needs, by `_id`:
        at's day for a township, every day from at's on for its villages; none for `at` None."""
        counters = self.counters(year, townships) if counters is None else counters
        wanted: dict[str, list[str]] = {}
        for t in townships:
            days = [] if at is None else days_from(counters.get(t), at)
            if not villages:
                days = [d for d in days if d == shanghai_day(at)]
            wanted[t] = [f"{year}:{t}:{d}" for d in days]
        found = {d["_id"]: d for d in find_by_ids(self.db[DAYS], [i for ids in wanted.values() for i in ids])}
        return {t: standing_as_of(counters.get(t), [e for i in wanted[t] for e in (found.get(i) or {}).get("entries") or []],
                                  at, villages=villages) for t in townships}

    def store_accuracy(self, year: int, as_of: str, rows: list[dict]) -> None:
        """Keep the latest published figure per township (an older report arriving late loses)."""
        for r in rows:
            key = f"{year}:{r['township']}"
            doc = self.db["accuracy"].find_one({"_id": key})
            if doc is None or doc["as_of"] < as_of:
                self.db["accuracy"].replace_one({"_id": key}, {"_id": key, "as_of": as_of, **r}, upsert=True)

    def store_coverage(self, p: dict) -> None:
        """Hardship coverage per township and category (subsidy's figures): the newest wins, by the
        version of subsidy's counter they were read at (domain.progress.coverage_order), in one
        atomic write (shared.store.keep_newest)."""
        key = f"{p['year']}:{p['township']}:{p['category']}"
        keep_newest(self.db["coverage"], key, p, coverage_order(p))

    def coverage(self, year: int, townships: list[str], category: str) -> dict[str, dict]:
        """Per township, one `_id $in` query (a request read each township's by itself before)."""
        by_id = {f"{year}:{t}:{category}": t for t in townships}
        return {by_id[d["_id"]]: d for d in find_by_ids(self.db["coverage"], by_id)}

    def accuracy(self, year: int, townships: list[str]) -> dict[str, dict]:
        by_id = {f"{year}:{t}": t for t in townships}
        return {by_id[d["_id"]]: d for d in find_by_ids(self.db["accuracy"], by_id)}

    def counters(self, year: int, townships: list[str]) -> dict[str, dict]:
        """A year's township counters in one query: `_id $in` on a collection of townships × years
        (bounded by the county's size in townships, not in persons)."""
        keys = [f"{year}:{t}" for t in townships]
        return {doc["township"]: doc for doc in self.db[PROGRESS].find({"_id": {"$in": keys}}) if doc.get("township")}
