"""Roster import (花名册导入): stream rows, validate households, write them in batches.

Memory stays flat in the file size: one batch of households (default 500) is held at a time and
problems are written out page by page. Importing the same file twice changes nothing (every
household comes back "unchanged").
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, Callable, Iterable

from shared.auth import Principal
from shared.errors import DomainError
from shared.policy import PolicyYear

from ..adapters.repository import add_batch
from ..domain.model import Household
from ..domain.roster import HouseholdRows, RowProblem, domain_problem, group_households

log = logging.getLogger(__name__)
PAGE = 500


class SeenHouseholds:
    """Household numbers already closed in this run, in fixed memory.

    A Bloom filter (2 MiB) answers "maybe seen"; a maybe is confirmed exactly: against the recent
    batches still being written (an exact set bounded by two batches), the refused households (an
    exact set: refusals are few), or the store (a household created by this run carries its run id).
    """

    def __init__(self, was_created_in_run: Callable[[str], bool], bits: int = 1 << 24, hashes: int = 4):
        self.bits = bytearray(bits // 8)
        self.nbits = bits
        self.k = hashes
        self.recent: list[set[str]] = [set()]
        self.rejected: set[str] = set()
        self.was_created_in_run = was_created_in_run

    def _positions(self, no: str):
        import hashlib
        h = hashlib.blake2b(no.encode(), digest_size=16).digest()
        for i in range(self.k):
            yield int.from_bytes(h[i * 4:(i + 1) * 4], "little") % self.nbits

    def add(self, no: str) -> None:
        for p in self._positions(no):
            self.bits[p >> 3] |= 1 << (p & 7)
        self.recent[-1].add(no)

    def __contains__(self, no: str) -> bool:
        if any(no in r for r in self.recent) or no in self.rejected:
            return True
        if not all(self.bits[p >> 3] & (1 << (p & 7)) for p in self._positions(no)):
            return False
        return self.was_created_in_run(no)

    def batch_written(self) -> None:
        """The oldest recent batch is in the store now: forget it (the Bloom filter and store remember)."""
        self.recent.append(set())
        if len(self.recent) > 3:
            self.recent.pop(0)


@dataclass
class ImportReport:
    rows: int = 0
    households_created: int = 0
    households_unchanged: int = 0
    households_rejected: int = 0
    persons_created: int = 0
    persons_excluded: int = 0
    persons_duplicate: int = 0  # members registered in another household too (多地重复参保): imported, flagged
    problems: int = 0
    pages: int = 0
    _page: list[dict] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class ProblemSink:
    """Where problem rows go; the store keeps them in pages keyed by `_id` ("<import>:<page>")."""

    def __init__(self, write_page: Callable[[int, list[dict]], None] | None):
        self.write_page = write_page

    def flush(self, report: ImportReport, final: bool = False) -> None:
        while report._page and (final or len(report._page) >= PAGE):
            page, report._page = report._page[:PAGE], report._page[PAGE:]
            if self.write_page:
                self.write_page(report.pages, page)
            report.pages += 1


def run_import(repo, policy: PolicyYear, year: int, rows: Iterable[tuple[int, dict[str, str]]], *,
               principal: Principal | None, sink: ProblemSink, batch_size: int = 500,
               on_batch: Callable[[ImportReport], None] | None = None,
               correlation_id: str | None = None, duplicates=None, at=None) -> ImportReport:
    """Validation of batch N+1 overlaps the store writes of batch N (one batch in flight, in order,
    so duplicate checks across batches still see every earlier write)."""
    from concurrent.futures import ThreadPoolExecutor

    report = ImportReport()
    insured = duplicates.excluded_set(year) if duplicates is not None else set()
    run = correlation_id or uuid.uuid4().hex
    seen = SeenHouseholds(lambda no: repo.created_in_run(year, no, run))
    households = group_households(_count(rows, report), seen)
    in_flight = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-writer") as writer:
        while True:
            batch = list(islice(households, batch_size))
            valid = _validate(batch, policy, year, principal, report, insured) if batch else []
            if in_flight is not None:
                _record(report, *in_flight[0], in_flight[1].result(), duplicates, at, seen)
                seen.batch_written()
                sink.flush(report)
                if on_batch:
                    on_batch(report)
                in_flight = None
            if not batch:
                break
            accepted = {h.household_no for _, h in valid}
            seen.rejected.update(hr.household_no for hr in batch if hr.household_no not in accepted)
            opener = None
            if duplicates is not None:
                def opener(hh, clashes, at=at, run=run):
                    from .handlers import open_duplicates
                    open_duplicates(duplicates, hh, clashes, at, source="import", correlation_id=run)
            future = writer.submit(add_batch, repo, [hh for _, hh in valid], run, True, opener) if valid else None
            in_flight = ((valid,), future) if future else None
            if future is None:
                sink.flush(report)
                if on_batch:
                    on_batch(report)
    sink.flush(report, final=True)
    return report


def _validate(batch: list[HouseholdRows], policy: PolicyYear, year: int, principal: Principal | None,
              report: ImportReport, insured: set[str]) -> list[tuple[HouseholdRows, Household]]:
    valid = []
    for hr in batch:
        problems = list(hr.problems)
        if not problems and principal is not None and principal.role == "township" and hr.township != principal.township:
            problems.append(RowProblem(hr.first_row, "township", "SCOPE_TOWNSHIP", "无权导入其他乡镇的人员", hr.household_no))
        if not problems:
            try:
                hh = Household.register(policy, hr.as_registration(year), insured)
                valid.append((hr, hh))
                continue
            except DomainError as e:
                problems.append(domain_problem(hr, e))
        _reject(report, problems)
    return valid


def _record(report: ImportReport, valid: list[tuple[HouseholdRows, Household]], outcome, duplicates, at,
            seen: SeenHouseholds) -> None:
    for hr, hh in valid:
        status, err = outcome[hh.household_no]
        if status == "created":
            report.households_created += 1
            report.persons_created += len(hh.members)
            if err is not None:  # imported with a member another household holds: their case is open
                report.persons_duplicate += err.details.get("persons", 1)
                report.problems += 1
                report._page.append(domain_problem(hr, err).to_doc())
            for x in hh.excluded:  # imported without them, and told
                report.persons_excluded += 1
                report.problems += 1
                report._page.append(domain_problem(hr, DomainError(
                    "EMPLOYEE_INSURED", "已参加城镇职工医保，不纳入城乡居民医保（该户其他成员已导入）",
                    {"field": x["field"]})).to_doc())
        elif status == "unchanged":
            report.households_unchanged += 1
        else:
            seen.rejected.add(hh.household_no)
            _reject(report, [domain_problem(hr, err)])


def _reject(report: ImportReport, problems: list[RowProblem]) -> None:
    report.households_rejected += 1
    report.problems += len(problems)
    report._page.extend(p.to_doc() for p in problems)


def _count(rows, report: ImportReport):
    for r in rows:
        report.rows += 1
        yield r


def run_job(repo, imports, policy: PolicyYear, clock, job: dict[str, Any], duplicates=None) -> ImportReport:
    """Run one stored import job to the end, recording progress (the worker's import loop)."""
    import tempfile

    from ..adapters.roster_files import RosterReader
    stream = imports.open(job)
    if job["kind"] == "xlsx":  # a zip needs seeking: spool to disk past 16 MiB
        spooled = tempfile.SpooledTemporaryFile(max_size=16 << 20)
        while chunk := stream.read(1 << 20):
            spooled.write(chunk)
        spooled.seek(0)
        stream = spooled
    reader = RosterReader(stream, job["kind"], job["size"])
    p = job.get("principal")
    principal = Principal(p["subject"], p["role"], p.get("county"), p.get("township")) if p else None
    sink = ProblemSink(lambda page, problems: imports.write_problems(job["_id"], page, problems))
    try:
        report = run_import(repo, policy, job["year"], reader, principal=principal, sink=sink,
                            on_batch=lambda r: imports.progress(job["_id"], reader.fraction, r.counts(), clock.now()),
                            correlation_id=job["_id"], duplicates=duplicates, at=clock.now())
    except DomainError as e:
        imports.finish(job["_id"], "failed", {}, clock.now(), e.to_json())
        raise
    imports.finish(job["_id"], "done", report.counts(), clock.now())
    log.info("import %s done: %s", job["_id"], report.counts())
    return report
