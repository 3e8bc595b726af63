"""Reading and writing roster files (CSV, XLSX) as streams: one row in memory at a time."""
from __future__ import annotations

import csv
import io
from typing import IO, Any, Iterable, Iterator

from shared.errors import DomainError

from ..domain.roster import EXPORT_HEADERS, _text, map_headers


class RosterReader:
    """Yields (row number, {field: text}) from a CSV or XLSX stream; `fraction` tracks progress."""

    def __init__(self, stream: IO[bytes], kind: str, size: int | None = None):
        self.stream = stream
        self.kind = kind
        self.size = size
        self.fraction = 0.0
        self.rows_read = 0

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        if self.kind == "csv":
            yield from self._csv()
        elif self.kind == "xlsx":
            yield from self._xlsx()
        else:
            raise DomainError("ROSTER_FORMAT", "花名册文件格式应为 CSV 或 XLSX", {"kind": self.kind}, status=400)
        self.fraction = 1.0

    def _csv(self):
        head = self.stream.read(4096)
        encoding = "utf-8-sig"
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.start < len(head) - 4:  # not just a character cut at the buffer's end
                encoding = "gb18030"  # spreadsheets saved on Chinese Windows
        raw = _Prefixed(head, self.stream)
        text = io.TextIOWrapper(raw, encoding=encoding, newline="")
        reader = csv.reader(text)
        try:
            cols = map_headers(next(reader))
        except StopIteration:
            raise DomainError("ROSTER_EMPTY", "花名册为空", status=400)
        for row_no, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            self.rows_read += 1
            if self.size:
                self.fraction = min(raw.consumed / self.size, 0.999)
            yield row_no, {f: _text(row[i]) if i < len(row) else "" for i, f in cols.items()}

    def _xlsx(self):
        from openpyxl import load_workbook
        try:
            wb = load_workbook(self.stream, read_only=True, data_only=True)
        except Exception as e:  # noqa: BLE001 — any unreadable workbook is the caller's file
            raise DomainError("ROSTER_FORMAT", "无法读取 XLSX 文件", {"error": type(e).__name__}, status=400)
        ws = wb.worksheets[0]
        total = ws.max_row or 0
        rows = ws.iter_rows(values_only=True)
        try:
            cols = map_headers(next(rows))
        except StopIteration:
            raise DomainError("ROSTER_EMPTY", "花名册为空", status=400)
        for row_no, row in enumerate(rows, start=2):
            if not any(_text(c) for c in row):
                continue
            self.rows_read += 1
            if total:
                self.fraction = min(row_no / total, 0.999)
            yield row_no, {f: _text(row[i]) if i < len(row) else "" for i, f in cols.items()}
        wb.close()


class _Prefixed(io.RawIOBase):
    """A stream with some bytes already read put back in front; counts what was consumed."""

    def __init__(self, head: bytes, rest: IO[bytes]):
        self.head = head
        self.rest = rest
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
        else:
            data = self.rest.read(len(b))
            n = len(data)
            b[:n] = data
        self.consumed += n
        return n


def write_csv(rows: Iterable[Iterable[Any]], out: IO[str]) -> None:
    w = csv.writer(out)
    w.writerow(EXPORT_HEADERS)
    for r in rows:
        w.writerow(r)


def write_xlsx(rows: Iterable[Iterable[Any]], out: IO[bytes], title: str) -> None:
    from openpyxl import Workbook
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title[:31])
    ws.append(list(EXPORT_HEADERS))
    for r in rows:
        ws.append(list(r))
    wb.save(out)
