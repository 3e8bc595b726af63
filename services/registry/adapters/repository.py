"""Households in MongoDB: one document per household and year (`_id` = "<year>:<household_no>"),
members inside it, and a person index (`_id` = "<year>:<id_number>") that makes a person belong to
one household per year.

Every write of a stored household names the `version` it read and bumps it (compare-and-set,
OutboxWriter.save_versioned): a payment event from the worker and a staff change from a web thread
to the same household cannot overwrite each other; the loser gets StaleVersion and its use case
reads again and decides again (shared.aggregate.retry_stale).
"""
from __future__ import annotations

from datetime import date
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from shared.aggregate import StaleVersion
from shared.errors import Conflict
from shared.masking import mask_id
from shared.store import (OUTBOX_CARRIED, IndexSpec, KeyIndex, OutboxWriter, find_by_ids, insert_many_once, insert_once,
                          shard_key)

from ..domain.model import Household, Member

HOUSEHOLDS = "households"
PERSONS = "persons"
VILLAGES = "village_households"  # KeyIndex: the household numbers of a village, "<year>:<township>:<village>"
PERSON_COUNTS = "registered_persons"  # members per household of a township, 64 shards: "<year>:<township>#<k>"
PERSON_TOTALS = "registered_person_totals"  # a township's shard totals: "<year>:<township>"
COUNT_SHARDS = 64
FLAGGED = "flagged_households"  # KeyIndex: households a township must act on, "<year>:<township>:<flag>"
OUTBOX_COLLECTIONS = (HOUSEHOLDS,)
INDEXES = ()


def household_key(year: int, household_no: str) -> str:
    return f"{year}:{household_no}"


def village_key(year: int, township: str, village: str) -> str:
    return f"{year}:{township}:{village}"


_PLACING_EVENTS = ("registry.household.registered", "registry.household.changed")
# a paid household's enrolment flags (Household.enrolment) and the staff list each feeds
FLAGS = {"unpaid": lambda e: bool(e.get("unpaid")), "review": lambda e: bool(e.get("review"))}


def flag_key(year: int, township: str, flag: str) -> str:
    return f"{year}:{township}:{flag}"


def _member_doc(m: Member) -> dict[str, Any]:
    return {**m.to_doc(), "status": m.status}


def _member(m: dict[str, Any]) -> Member:
    return Member(m["person_id"], m["name"], m["relation"], m["category"], date.fromisoformat(m["birth_date"]),
                  m["sex"], m.get("status", "registered"))


def to_doc(hh: Household) -> dict[str, Any]:
    """The whole document (an insert writes `version` 1)."""
    return {"_id": household_key(hh.year, hh.household_no), "household_no": hh.household_no, "year": hh.year,
            "county": hh.county, "township": hh.township, "village": hh.village, "head_phone": hh.head_phone,
            "members": [_member_doc(m) for m in hh.members], "enrolment": hh.enrolment,
            "version": hh.version or 1, **_ending(hh)}


def _ending(hh: Household) -> dict[str, Any]:
    if not hh.merged_into:
        return {}
    return {"merged_into": hh.merged_into, "merged_members": [_member_doc(m) for m in hh.merged_members]}


def _written(hh: Household) -> dict[str, Any]:
    """The fields a change of a stored household writes."""
    doc = to_doc(hh)
    fields = {k: doc[k] for k in ("members", "village", "head_phone", "enrolment")}
    fields.update(_ending(hh))
    if hh.corrections_applied:
        fields["corrections_applied"] = hh.corrections_applied
    return fields


def from_doc(doc: dict[str, Any]) -> Household:
    return Household(doc["household_no"], doc["year"], doc["county"], doc["township"], doc["village"],
                     doc.get("head_phone"), [_member(m) for m in doc["members"]], doc.get("enrolment") or {},
                     merged_into=doc.get("merged_into"),
                     merged_members=[_member(m) for m in doc.get("merged_members") or []],
                     corrections_applied=list(doc.get("corrections_applied") or []),
                     version=doc.get("version", 0))


class HouseholdRepository:
    def __init__(self, db, outbox: OutboxWriter):
        self.db = db
        self.outbox = outbox
        self.villages = KeyIndex(db[VILLAGES])
        self.flagged = KeyIndex(db[FLAGGED])

    def flag(self, households: list[Household]) -> None:
        """Before a write of enrolments: a household whose enrolment carries a flag (members left
        unpaid, a payment to review) is on its township's list of that flag."""
        by_key: dict[str, list[str]] = {}
        for hh in households:
            for flag, on in FLAGS.items():
                if on(hh.enrolment):
                    by_key.setdefault(flag_key(hh.year, hh.township, flag), []).append(hh.household_no)
        self.flagged.add_many(by_key)

    def _flagged(self, year: int, township: str | None, flag: str, policy_townships: list[str]) -> list[Household]:
        """The households of a flag's lists (a township's, or every township's) that still carry it,
        by household number; the others are dropped from the lists."""
        docs = self.flagged.documents(
            [flag_key(year, t, flag) for t in ([township] if township else policy_townships)], self.db[HOUSEHOLDS],
            lambda key, d: d["township"] == key.split(":", 2)[1] and FLAGS[flag](d.get("enrolment") or {}),
            to_id=lambda no: household_key(year, no), projection={"_outbox": 0})
        return sorted(map(from_doc, docs), key=lambda hh: hh.household_no)

    def place(self, households: list[Household]) -> None:
        """Before a write that puts households in their village (a registration, a split, a correction
        of the village): the village's list names them (shared.store.KeyIndex)."""
        by_key: dict[str, list[str]] = {}
        for hh in households:
            by_key.setdefault(village_key(hh.year, hh.township, hh.village), []).append(hh.household_no)
        self.villages.add_many(by_key)

    def get(self, year: int, household_no: str) -> Household | None:
        doc = self.db[HOUSEHOLDS].find_one({"_id": household_key(year, household_no)}, {"_outbox": 0})
        return from_doc(doc) if doc else None

    def get_many(self, keys: list[tuple[int, str]]) -> dict[tuple[int, str], Household]:
        """Households by (year, household number), one `_id $in` read for the lot; absent ones left out."""
        found = find_by_ids(self.db[HOUSEHOLDS], [household_key(y, no) for y, no in keys], {"_outbox": 0})
        return {(d["year"], d["household_no"]): from_doc(d) for d in found}

    def in_village(self, year: int, township: str, village: str) -> list[Household]:
        """Households of a village in household-number order: the village's list, then its households
        by `_id` (two reads whatever the county's size); a household listed that is no longer there
        (moved by a correction, or whose registration failed) is dropped from the list."""
        docs = self.villages.documents([village_key(year, township, village)], self.db[HOUSEHOLDS],
                                       lambda _k, d: (d["township"], d["village"]) == (township, village),
                                       to_id=lambda no: household_key(year, no), projection={"_outbox": 0})
        return sorted(map(from_doc, docs), key=lambda hh: hh.household_no)

    def registered_persons(self, year: int, townships: list[str]) -> dict[str, int]:
        """Members per township for a year, from the counts registry's worker keeps from its own
        household events (`count_members`): the townships' small totals documents, one `_id $in` read."""
        out: dict[str, int] = {}
        for d in find_by_ids(self.db[PERSON_TOTALS], [f"{year}:{t}" for t in townships]):
            out[d["_id"].split(":", 1)[1]] = sum((d.get("t") or {}).values())
        return out

    def count_members(self, rows: list[tuple[int, str, str, int, str]], attempts: int = 5) -> None:
        """(year, township, household number, members, event seq) from registry's own household
        events. Each household's count is set in its township's shard from the newest snapshot seen
        (`s.<no>`: the event's seq), so events in any order, twice or concurrently, leave the count of
        the last write; the shard keeps its total in the same compare-and-set write (`version`).
        Then each touched shard's total goes to its township's totals document (`t.<k>`, newest
        shard version winning), also when nothing changed (a redelivery after a crash in between).
        Store commands per batch: one read and three bulk writes (plus one for new shards)."""
        newest: dict[tuple[int, str, str], tuple[int, str]] = {}
        for year, township, no, n, seq in rows:
            if (year, township, no) not in newest or seq > newest[(year, township, no)][1]:
                newest[(year, township, no)] = (n, seq)
        if not newest:
            return
        shard = {k: shard_key(f"{k[0]}:{k[1]}", k[2], COUNT_SHARDS) for k in newest}
        keys = sorted(set(shard.values()))
        for _ in range(attempts):
            docs = {d["_id"]: d for d in find_by_ids(self.db[PERSON_COUNTS], keys)}
            missing = [k for k in keys if k not in docs]
            if missing:
                self.db[PERSON_COUNTS].bulk_write([UpdateOne({"_id": k}, {"$setOnInsert": {
                    "n": {}, "s": {}, "total": 0, "version": 0}}, upsert=True) for k in missing], ordered=False)
                continue
            changes: dict[str, dict[str, Any]] = {}
            for k, (n, seq) in newest.items():
                d, no = docs[shard[k]], k[2]
                if (d.get("s") or {}).get(no, "") >= seq:
                    continue  # this snapshot, or a newer one, is counted already
                ch = changes.setdefault(shard[k], {"set": {}, "delta": 0})
                ch["set"].update({f"n.{no}": n, f"s.{no}": seq})
                ch["delta"] += n - (d.get("n") or {}).get(no, 0)
            if changes:
                res = self.db[PERSON_COUNTS].bulk_write([UpdateOne(
                    {"_id": key, "version": docs[key]["version"]},
                    {"$set": {**ch["set"], "total": docs[key]["total"] + ch["delta"]}, "$inc": {"version": 1}})
                    for key, ch in changes.items()], ordered=False)
                if res.matched_count != len(changes):
                    continue  # another worker wrote a shard meanwhile: read again
                for key, ch in changes.items():
                    docs[key] = {**docs[key], "total": docs[key]["total"] + ch["delta"], "version": docs[key]["version"] + 1}
            self._post_totals(docs)
            return
        raise StaleVersion(f"registered-person shards kept changing ({len(keys)} shards)")

    def _post_totals(self, shards: dict[str, dict[str, Any]]) -> None:
        """Each shard's total into its township's totals document, a newer shard version winning."""
        towns = sorted({key.rsplit("#", 1)[0] for key in shards})
        self.db[PERSON_TOTALS].bulk_write([UpdateOne({"_id": t}, {"$setOnInsert": {"t": {}, "v": {}}}, upsert=True)
                                           for t in towns], ordered=False)
        ops = []
        for key, d in shards.items():
            town, k = key.rsplit("#", 1)
            ops.append(UpdateOne({"_id": town, f"v.{k}": {"$not": {"$gte": d["version"]}}},
                                 {"$set": {f"t.{k}": d["total"], f"v.{k}": d["version"]}}))
        self.db[PERSON_TOTALS].bulk_write(ops, ordered=False)

    def created_in_run(self, year: int, household_no: str, run: str) -> bool:
        doc = self.db[HOUSEHOLDS].find_one({"_id": household_key(year, household_no)}, {"import_run": 1})
        return bool(doc) and doc.get("import_run") == run

    def household_of(self, year: int, person_id: str) -> str | None:
        doc = self.db[PERSONS].find_one({"_id": f"{year}:{person_id}"})
        return doc["household"] if doc else None

    def place_of(self, year: int, person_id: str) -> dict[str, Any] | None:
        """The household holding the person's claim, with its place, if it exists (two `_id` reads)."""
        claim = self.db[PERSONS].find_one({"_id": f"{year}:{person_id}"})
        if claim is None:
            return None
        owner = self.db[HOUSEHOLDS].find_one({"_id": claim["household"]}, {"township": 1, "village": 1})
        if owner is None:
            return None
        return {"household_no": claim["household"].split(":", 1)[1], "township": owner["township"],
                "village": owner["village"]}

    def add(self, hh: Household, correlation_id: str | None = None, open_cases=None) -> list[tuple[str, dict]]:
        """Claim every member for this household, then write the household with its events.

        A claim left by a write that failed half-way is taken over (its household does not exist).
        A member another household holds (多地重复参保) stays a member without the claim: with
        `open_cases`, it is called with [(person_id, holder's place)] before the household is
        written (so payments holds both quotes from the moment both exist, and a crash between the
        two leaves a case a retry completes); without it, the registration is refused
        (DUPLICATE_PERSON). Returns those members and places.
        """
        key = household_key(hh.year, hh.household_no)
        claimed, clashes = [], []
        try:
            for m in hh.members:
                pid = f"{hh.year}:{m.person_id}"
                claim = {"_id": pid, "household": key, "township": hh.township, "village": hh.village}
                if insert_once(self.db[PERSONS], claim):
                    claimed.append(pid)
                    continue
                other = self.db[PERSONS].find_one({"_id": pid})
                if other and other["household"] != key:
                    owner = self.db[HOUSEHOLDS].find_one({"_id": other["household"]}, {"township": 1, "village": 1})
                    if owner is not None:  # 多地重复参保: the same person in another household
                        place = {"household_no": other["household"].split(":", 1)[1],
                                 "township": owner["township"], "village": owner["village"]}
                        if open_cases is None:
                            raise Conflict("DUPLICATE_PERSON", "该人员已在其他户登记参保", {"person_id": m.person_id, **place})
                        clashes.append((m.person_id, place))
                        continue
                    self.db[PERSONS].replace_one({"_id": pid}, claim)
            if clashes:  # a registration repeated after it succeeded must not re-open a decided case
                if self.db[HOUSEHOLDS].find_one({"_id": key}, {"_id": 1}) is not None:
                    raise Conflict("HOUSEHOLD_EXISTS", "该户本年度已登记", {"household_no": hh.household_no})
                open_cases(clashes)
            self.place([hh])
            try:
                self.outbox.insert(HOUSEHOLDS, to_doc(hh), hh.events, correlation_id=correlation_id)
            except DuplicateKeyError:
                raise Conflict("HOUSEHOLD_EXISTS", "该户本年度已登记", {"household_no": hh.household_no})
        except Exception:
            for pid in claimed:
                self.db[PERSONS].delete_one({"_id": pid})
            raise
        hh.version = 1
        hh.events.clear()
        return clashes

    def move_claim(self, year: int, person_id: str, household_no: str) -> None:
        """The person belongs to `household_no` now (a resolved duplicate case); idempotent."""
        hh = self.db[HOUSEHOLDS].find_one({"_id": household_key(year, household_no)}, {"township": 1, "village": 1})
        pid = f"{year}:{person_id}"
        self.db[PERSONS].replace_one({"_id": pid}, {"_id": pid, "household": household_key(year, household_no),
                                                    "township": hh["township"], "village": hh["village"]}, upsert=True)

    def save(self, hh: Household, *, correlation_id: str | None = None, causation_id: str | None = None) -> None:
        """Write a stored household as it now stands, with its events, if nobody wrote it since it was
        read (raises StaleVersion otherwise: nothing is written)."""
        if any(e.type in _PLACING_EVENTS for e in hh.events):  # staff changes only, never a payment's
            self.place([hh])
        self.flag([hh])
        self.outbox.save_versioned(HOUSEHOLDS, household_key(hh.year, hh.household_no), hh.version,
                                   {"$set": _written(hh)}, hh.events, correlation_id=correlation_id,
                                   causation_id=causation_id)
        hh.version += 1
        hh.events.clear()

    def save_enrolments(self, changed: list[tuple[Household, list[tuple[list, str, str | None]]]]) -> None:
        """`save` for a batch (service_layer.handlers.apply_many): each household as it now stands
        with the events of each change (events, causing event id, correlation id), in one bulk
        compare-and-set and one insert of pointers. StaleVersion if any lost a race (the others are
        written)."""
        items = []
        for hh, changes in changed:
            envs = [e for events, causation, correlation in changes
                    for e in self.outbox.envelopes(events, correlation, causation)]
            items.append((household_key(hh.year, hh.household_no), hh.version, {"$set": _written(hh)}, envs))
        self.flag([hh for hh, _ in changed])
        self.outbox.save_versioned_many(HOUSEHOLDS, items)
        for hh, _ in changed:
            hh.version += 1

    def save_change(self, hh: Household, added: list[Member] = (), removed: list[Member] = (),
                    moved: tuple[str, str] | None = None, correlation_id: str | None = None,
                    open_cases=None) -> list[tuple[str, dict]]:
        """Members in and out (claims follow them), then the household with its changed event
        (version-checked: StaleVersion undoes this call's new claims).

        `moved`: (old, new) ID number of a corrected person, whose claim moves to the new number.
        An added member (a birth, a move-in) another household holds (多地重复参保) joins without the
        claim, as in `add`: with `open_cases` it is called with [(person_id, holder's place)] before
        the household is written (a crash or a lost race in between is completed by deciding
        again: the case only gains a place it names already); without it, DUPLICATE_PERSON.
        Returns those members and places.
        """
        key = household_key(hh.year, hh.household_no)
        claimed, clashes = [], []
        try:
            for pid in [m.person_id for m in added] + ([moved[1]] if moved else []):
                claim = {"_id": f"{hh.year}:{pid}", "household": key, "township": hh.township, "village": hh.village}
                if not insert_once(self.db[PERSONS], claim):
                    other = self.db[PERSONS].find_one({"_id": claim["_id"]})
                    if other["household"] != key:
                        owner = self.db[HOUSEHOLDS].find_one({"_id": other["household"]}, {"township": 1, "village": 1})
                        if owner is not None:
                            place = {"household_no": other["household"].split(":", 1)[1],
                                     "township": owner["township"], "village": owner["village"]}
                            if open_cases is None or (moved and pid == moved[1]):
                                raise Conflict("DUPLICATE_PERSON", "该人员已在其他户登记参保", {
                                    "person_id": pid, "township": owner["township"], "village": owner["village"]})
                            clashes.append((pid, place))
                            continue
                        self.db[PERSONS].replace_one({"_id": claim["_id"]}, claim)
                claimed.append(claim["_id"])
            if clashes:  # the case first: payments holds both households from the moment both have the person
                open_cases(clashes)
            self.save(hh, correlation_id=correlation_id)
        except Exception:  # StaleVersion included: the use case decides again, claims and all
            for pid in claimed:
                self.db[PERSONS].delete_one({"_id": pid})
            raise
        for pid in [m.person_id for m in removed] + ([moved[0]] if moved else []):
            # only this household's claim: a member of a duplicate case may be held by another household
            self.db[PERSONS].delete_one({"_id": f"{hh.year}:{pid}", "household": key})
        hh.events.clear()
        return clashes

    def take_claim(self, year: int, person_id: str, from_no: str, to: Household) -> bool:
        """The person's claim moves to `to` if `from_no` (the household they leave) held it, or nobody
        does (a claim left by a failed write); a claim another household holds (an open duplicate
        case) stays where it is. True when `to` holds it now (repeating it is harmless)."""
        pid, to_key = f"{year}:{person_id}", household_key(year, to.household_no)
        claim = {"_id": pid, "household": to_key, "township": to.township, "village": to.village}
        for _ in range(5):
            cur = self.db[PERSONS].find_one({"_id": pid})
            if cur is None:
                if insert_once(self.db[PERSONS], claim):
                    return True
                continue
            if cur["household"] == to_key:
                return True
            if cur["household"] != household_key(year, from_no) and \
                    self.db[HOUSEHOLDS].find_one({"_id": cur["household"]}, {"_id": 1}) is not None:
                return False
            if self.db[PERSONS].replace_one({"_id": pid, "household": cur["household"]}, claim).matched_count:
                return True
        raise Conflict("PERSON_BUSY", "该人员的登记正在变化，请稍后再试", {"person_id": person_id})

    def _bring_members(self, members: list[Member], from_no: str, to: Household, cases, correlation_id) -> None:
        """Claims of the members joining `to` from `from_no`, then their open cases name `to`."""
        for m in members:
            holder = self.take_claim(to.year, m.person_id, from_no, to)
            if cases is not None:
                cases.add_place(to.year, m.person_id, {"household_no": to.household_no, "township": to.township,
                                                       "village": to.village}, holder, correlation_id)

    def save_split(self, source: Household, new: Household, correlation_id: str | None = None, cases=None) -> None:
        """New household first (a retry of the same split finds it and goes on), then the moved
        members' claims (only those the source held: a claim in an open duplicate case stays with
        its holder) and their open cases naming the new household, then the source household with
        its changed event (version-checked), then the cases stop naming the source."""
        new_key = household_key(new.year, new.household_no)
        doc = to_doc(new)
        self.place([new])
        try:
            self.outbox.insert(HOUSEHOLDS, doc, new.events, correlation_id=correlation_id)
        except DuplicateKeyError:
            existing = self.db[HOUSEHOLDS].find_one({"_id": new_key}, {"_outbox": 0})
            if not _same_registration(existing, new):
                raise Conflict("HOUSEHOLD_EXISTS", "新户编号本年度已登记", {"household_no": new.household_no})
        self._bring_members(new.members, source.household_no, new, cases, correlation_id)
        new.events.clear()
        self.save_change(source, correlation_id=correlation_id)
        if cases is not None:
            for m in new.members:
                cases.drop_place(new.year, m.person_id, source.household_no, correlation_id)

    def end_merged(self, other: Household, correlation_id: str | None = None) -> None:
        """First half of a merge: the ended household (members emptied, kept in `merged_members`,
        with registry.household.dissolved), version-checked; from then on no other change reaches it."""
        self.save(other, correlation_id=correlation_id)

    def save_absorbed(self, target: Household, moved: list[Member], correlation_id: str | None = None,
                      from_no: str | None = None, cases=None, changed: bool = True) -> None:
        """Second half of a merge: the moved members' claims (only those the ended household held),
        their open cases naming the target, then the target with them (version-checked, when it
        `changed`; a repeated merge completes the rest), then the cases stop naming the ended one."""
        ours = {m.person_id for m in target.members}
        moved = [m for m in moved if m.person_id in ours]  # a merge repeated long after: left since, left alone
        self._bring_members(moved, from_no, target, cases, correlation_id)
        if changed:
            self.save(target, correlation_id=correlation_id)
        if cases is not None:
            for m in moved:
                cases.drop_place(target.year, m.person_id, from_no, correlation_id)

    def save_enrolment(self, hh: Household, causation_id: str, correlation_id: str) -> None:
        self.save(hh, causation_id=causation_id, correlation_id=correlation_id)

    def awaiting_mid_year(self, year: int, township: str | None, townships: list[str]) -> list[Household]:
        """Paid households with members their payment did not cover (joined after its order): the
        township handles each through mid-year enrolment. From the townships' lists (`flag`), by `_id`."""
        return [hh for hh in self._flagged(year, township, "unpaid", townships) if hh.unpaid_members]

    def needing_review(self, year: int, township: str | None, townships: list[str]) -> list[Household]:
        """Payments recorded for persons no longer in the household (a death, a move out, a merge
        after the order): county staff decide (a refund is a reversal through payments)."""
        return self._flagged(year, township, "review", townships)


def _same_registration(doc: dict[str, Any], hh: Household) -> bool:
    keys = ("person_id", "name", "relation", "category", "birth_date", "sex")
    mine = [{k: m[k] for k in keys} for m in to_doc(hh)["members"]]
    theirs = [{k: m.get(k) for k in keys} for m in doc.get("members", [])]
    return (doc.get("township"), doc.get("village"), mine) == (hh.township, hh.village, theirs)


class BatchOutcome(dict):
    """household_no → ("created" | "unchanged" | "rejected", DomainError | None); a household created
    with a member another household holds (多地重复参保, its case opened) comes with the
    DUPLICATE_PERSON notice naming the other place."""


def add_batch(repo: "HouseholdRepository", batch: list[Household], correlation_id: str | None = None,
              trusted_events: bool = False, open_cases=None) -> BatchOutcome:
    """Register many households with a few bulk writes; each household stays all-or-nothing.

    1. claims of every member (insert_many, unordered); 2. households with their events
    (insert_many); 3. outbox pointers. A claim that exists already is resolved one by one: ours
    from an earlier import of the same file (unchanged), an orphan left by a failed write (taken
    over), or another household's (多地重复参保: with `open_cases` the household is registered all
    the same, the person's case opened before it is written, as in HouseholdRepository.add;
    without it the household is refused and its new claims removed). A person twice in one batch:
    the later household is written in a second round, once the first is stored.
    """
    db = repo.db
    out = BatchOutcome()
    owner_in_batch: dict[str, Household] = {}
    todo: list[Household] = []
    later: list[Household] = []
    for hh in batch:  # the same person twice in one batch
        clash = next((owner_in_batch[m.person_id] for m in hh.members if m.person_id in owner_in_batch), None)
        if clash is not None:
            if open_cases is not None:
                later.append(hh)
                continue
            pid = next(m.person_id for m in hh.members if owner_in_batch.get(m.person_id) is clash)
            out[hh.household_no] = ("rejected", Conflict("DUPLICATE_PERSON", "该人员已在其他户登记参保",
                                                          {"person_id": pid, "township": clash.township,
                                                           "village": clash.village, "household_no": clash.household_no}))
            continue
        owner_in_batch.update({m.person_id: hh for m in hh.members})
        todo.append(hh)

    claims = [{"_id": f"{hh.year}:{m.person_id}", "household": household_key(hh.year, hh.household_no)}
              for hh in todo for m in hh.members]
    failed = insert_many_once(db[PERSONS], claims)
    inserted_claims = {c["_id"]: c["household"] for c in claims if c["_id"] not in failed}
    ready: list[Household] = []
    flagged: dict[str, list[tuple[str, dict]]] = {}
    for hh in todo:
        key = household_key(hh.year, hh.household_no)
        mine = [f"{hh.year}:{m.person_id}" for m in hh.members]
        clashing = [pid for pid in mine if pid in failed]
        if not clashing:
            ready.append(hh)
            continue
        existing = db[HOUSEHOLDS].find_one({"_id": key}, {"_outbox": 0})
        if existing is not None:  # likely the same file again: one lookup settles it
            out[hh.household_no] = ("unchanged", None) if _same_registration(existing, hh) else (
                "rejected", Conflict("HOUSEHOLD_EXISTS", "该户本年度已登记，且与文件内容不一致（请走变更或更正流程）",
                                     {"household_no": hh.household_no}))
            continue
        refusal, held = None, []
        for pid in clashing:
            claim = db[PERSONS].find_one({"_id": pid})
            if claim is None or claim["household"] == key:
                continue
            owner = db[HOUSEHOLDS].find_one({"_id": claim["household"]}, {"township": 1, "village": 1})
            if owner is None:  # orphan from a write that failed half-way
                db[PERSONS].replace_one({"_id": pid}, {"_id": pid, "household": key})
                continue
            place = {"household_no": claim["household"].split(":", 1)[1], "township": owner["township"],
                     "village": owner["village"]}
            if open_cases is None:
                refusal = Conflict("DUPLICATE_PERSON", "该人员已在其他户登记参保", {"person_id": pid.split(":", 1)[1], **place})
                break
            held.append((pid.split(":", 1)[1], place))
        if refusal:
            out[hh.household_no] = ("rejected", refusal)
        else:
            ready.append(hh)
            if held:
                flagged[hh.household_no] = held
    for hh in ready:  # the cases first: payments holds both households from the moment both exist
        if hh.household_no in flagged:
            open_cases(hh, flagged[hh.household_no])

    docs, envs_by_key = [], {}
    for hh in ready:
        envs = repo.outbox.envelopes(hh.events, correlation_id, None, validate=not trusted_events)
        doc = to_doc(hh)
        doc["import_run"] = correlation_id
        docs.append(doc)
        envs_by_key[doc["_id"]] = (hh, envs)
    repo.place(ready)
    pointer = None
    batch_events = [e for _hh, envs in envs_by_key.values() for e in envs]
    if batch_events:  # one pointer for the whole batch, in write order, before the write (shared/outbox.py)
        # its own `_id`, never an event's: the relay deletes the pointer named by each event it publishes.
        # It carries the events itself: the households are written without them, so publishing them
        # rewrites no household (a rewrite each cost the relay more than publishing did).
        pointer = {"_id": f"batch:{batch_events[0].id}", "coll": HOUSEHOLDS, "aggs": [d["_id"] for d in docs],
                   "snapshots": True, "events": [e.id for e in batch_events], "seq": batch_events[0].seq,
                   "carried": True, "created_at": _utcnow()}
        db[OUTBOX_CARRIED].insert_one({"_id": pointer["_id"], "events": [
            {**repo.outbox.stored(e), "agg": key} for key, (_hh, envs) in envs_by_key.items() for e in envs]})
        db["outbox"].insert_one(pointer)
    dup_households = insert_many_once(db[HOUSEHOLDS], docs)
    created = []
    for key, (hh, envs) in envs_by_key.items():
        if key in dup_households:
            existing = db[HOUSEHOLDS].find_one({"_id": key}, {"_outbox": 0})
            same = existing is not None and _same_registration(existing, hh)
            out[hh.household_no] = ("unchanged", None) if same else ("rejected", Conflict(
                "HOUSEHOLD_EXISTS", "该户本年度已登记，且与文件内容不一致（请走变更或更正流程）", {"household_no": hh.household_no}))
            continue
        held = flagged.get(hh.household_no)
        out[hh.household_no] = ("created", Conflict("DUPLICATE_PERSON", "；".join(
            "{} 已在{}{}（户编号{}）登记参保".format(mask_id(pid), p["township"], p["village"], p["household_no"])
            for pid, p in held) + "：本户已登记，该人员标记为多地重复参保，待县医保局处理",
            {"person_id": held[0][0], **held[0][1], "persons": len(held)}) if held else None)
        hh.events.clear()
        created.append((key, envs))
    if pointer is not None and len(created) < len(docs):  # it waits only for what this batch wrote
        if created:
            db["outbox"].update_one({"_id": pointer["_id"]}, {"$set": {
                "aggs": [k for k, _ in created], "events": [e.id for _k, envs in created for e in envs]}})
        else:
            db["outbox"].delete_one({"_id": pointer["_id"]})
            db[OUTBOX_CARRIED].delete_one({"_id": pointer["_id"]})

    # a refused household keeps nothing: remove the claims this batch made for it (and only those)
    for hh in batch:
        status, _err = out.get(hh.household_no, ("created", None))
        if status == "rejected":
            key = household_key(hh.year, hh.household_no)
            for m in hh.members:
                pid = f"{hh.year}:{m.person_id}"
                if inserted_claims.get(pid) == key:
                    db[PERSONS].delete_one({"_id": pid})
    if later:
        out.update(add_batch(repo, later, correlation_id, trusted_events, open_cases))
    return out


def registered_payload(doc: dict[str, Any]) -> dict[str, Any]:
    """registry.household.registered built from the household document (see OutboxRelay snapshots).

    Total over the states the registry writes: a household that merged into another before its
    registration went out has no members any more, so it is published with the members it had
    when it ended (`merged_members`, head included); its registry.household.dissolved follows it.
    A head missing (never written: registration and corrections keep exactly one) falls back to
    the first member rather than stopping the relay."""
    members = doc.get("members") or doc.get("merged_members") or []
    if not members:  # only a document merged before `merged_members` was kept
        raise ValueError(f"household {doc['_id']} has no members to publish (merged into {doc.get('merged_into')})")
    head = next((m for m in members if m["relation"] == "户主"), members[0])
    return {"household_no": doc["household_no"], "year": doc["year"], "county": doc["county"],
            "township": doc["township"], "village": doc["village"], "head_name": head["name"],
            "head_phone": doc.get("head_phone"),
            "members": [{"person_id": m["person_id"], "name": m["name"], "relation": m["relation"],
                         "category": m["category"]} for m in members]}


SNAPSHOTS = {"registry.household.registered": registered_payload}


def _utcnow():
    from datetime import datetime, timezone
    return datetime.now(timezone.utc)
