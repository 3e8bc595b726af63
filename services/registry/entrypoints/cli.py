"""Command-line roster import for county staff: `python -m services.registry.entrypoints.cli import FILE`.

Shows a progress bar, prints the summary and writes the problem rows next to the file
(<file>.problems.csv) for the township to fix.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from tqdm import tqdm

from .. import bootstrap as boot
from ..adapters.roster_files import RosterReader
from ..service_layer.importer import ProblemSink, run_import


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="registry-cli", description="花名册导入（CSV/XLSX）")
    sub = ap.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="导入花名册")
    imp.add_argument("file", type=Path)
    imp.add_argument("--year", type=int, default=None, help="政策年度（默认取政策文件）")
    imp.add_argument("--batch", type=int, default=500)
    args = ap.parse_args(argv)

    c = boot.bootstrap()
    kind = "xlsx" if args.file.suffix.lower() in (".xlsx", ".xlsm") else "csv"
    size = os.path.getsize(args.file)
    problems_path = args.file.with_name(args.file.name + ".problems.csv")
    with open(args.file, "rb") as f, open(problems_path, "w", encoding="utf-8-sig", newline="") as pf:
        writer = csv.writer(pf)
        writer.writerow(["行号", "户编号", "字段", "错误代码", "说明"])
        sink = ProblemSink(lambda _page, problems: writer.writerows(
            [p["row"], p["household_no"], p["field"], p["code"], p["message"]] for p in problems))
        reader = RosterReader(f, kind, size)
        bar = tqdm(total=100, unit="%", desc="导入", file=sys.stderr, bar_format="{l_bar}{bar}| {postfix}")
        last = [0]

        def tick(report):
            pct = int(reader.fraction * 100)
            bar.update(pct - last[0])
            last[0] = pct
            bar.set_postfix_str(f"{report.rows} 行，新增 {report.households_created} 户，未变 "
                                f"{report.households_unchanged} 户，退回 {report.households_rejected} 户")

        report = run_import(boot.repository(c), c.policy_for(args.year or c.policy.year), args.year or c.policy.year, reader, principal=None,
                            sink=sink, batch_size=args.batch, on_batch=tick, duplicates=boot.duplicates(c),
                            at=c.clock.now())
        bar.update(100 - last[0])
        bar.close()
    r = report.counts()
    print(f"共 {r['rows']} 行：新增 {r['households_created']} 户 {r['persons_created']} 人，"
          f"未变 {r['households_unchanged']} 户，退回 {r['households_rejected']} 户（问题 {r['problems']} 条，见 {problems_path}）")
    return 0 if r["households_rejected"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
