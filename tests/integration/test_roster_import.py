"""Roster import on the real store — issue 3 and 001_93f5b63ac6b4a653.txt 五/七(一): a household with any
invalid member is not half-imported; importing the same file twice changes nothing; each bad row
gets its own code; the same person in two households (多地重复参保) is caught with both places."""
from __future__ import annotations

import csv
import io
import json
import secrets
from datetime import date, datetime

import pytest
from openpyxl import Workbook, load_workbook

from services.registry import bootstrap as boot
from services.registry.adapters.roster_files import RosterReader
from services.registry.entrypoints.flask_app import create_app
from services.registry.service_layer.importer import ProblemSink, run_import, run_job
from shared.auth import Principal, token_hash
from shared.clock import SHANGHAI, FixedClock
from tools.ids import make_id

NOW = datetime(2019, 10, 8, 9, 0, tzinfo=SHANGHAI)
HEAD = ["户编号", "乡镇", "村（社区）", "姓名", "身份证号码", "性别", "出生日期", "与户主关系", "人员类别", "联系电话"]
COUNTY, BAIYA = secrets.token_hex(8), secrets.token_hex(8)


_TAG = {"day": 1}


def person(seq, rel="户主", sex="M", birth=date(1970, 1, 1)):
    birth = birth.replace(day=_TAG["day"])  # every roster of this module gets people of its own
    return make_id(birth, seq, sex), sex, birth, rel


def roster_rows(tag: str):
    """Good households G1-G3, and one bad household per problem the issue names."""
    _TAG["day"] = int(tag[1:]) + 1
    bad_check = make_id(date(1981, 1, _TAG["day"]), 31, "M")
    bad_check = bad_check[:-1] + ("1" if bad_check[-1] != "1" else "2")
    specs = [
        (f"{tag}G1", "花桥镇", "花桥村", [person(1), person(2, "配偶", "F"), person(3, "子女")]),
        (f"{tag}BADCHECK", "花桥镇", "花桥村", [person(11), (bad_check, "M", date(1981, 1, _TAG["day"]), "子女")]),
        (f"{tag}BIRTH", "花桥镇", "花桥一村", [person(21), (make_id(date(1990, 2, _TAG["day"]), 22, "F"), "F", date(1990, 2, _TAG["day"] + 1), "配偶")]),
        (f"{tag}NOHEAD", "花桥镇", "花桥一村", [person(41, "配偶"), person(42, "子女", "F")]),
        (f"{tag}VILLAGE", "花桥镇", "无此村", [person(51)]),
        (f"{tag}G2", "白牙市镇", "五一村", [person(61), person(62, "父母", "F", date(1940, 3, 3))]),
        (f"{tag}G3", "舜管局", "舜皇山社区", [person(71)]),
    ]
    out = []
    for hh, town, village, members in specs:
        for i, (pid, sex, birth, rel) in enumerate(members):
            out.append([hh, town, village, f"人{i}", pid, "男" if sex == "M" else "女", birth.isoformat(), rel,
                        "农村居民", "13900001111" if i == 0 else ""])
    return out


def csv_bytes(rows):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEAD)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


@pytest.fixture(scope="module")
def c(namespace):
    return boot.bootstrap(FixedClock(NOW))


def do_import(c, data: bytes, kind="csv", principal=None):
    problems = []
    report = run_import(boot.repository(c), c.policy, 2020, RosterReader(io.BytesIO(data), kind, len(data)),
                        principal=principal, sink=ProblemSink(lambda _p, page: problems.extend(page)), batch_size=3,
                        duplicates=boot.duplicates(c), at=NOW)
    return report, problems


def test_bad_rows_get_their_own_codes_and_their_households_are_not_half_written(c):
    tag = "R1"
    rows = roster_rows(tag)
    report, problems = do_import(c, csv_bytes(rows))
    assert (report.households_created, report.households_rejected, report.persons_created) == (3, 4, 6)
    codes = {p["household_no"]: p["code"] for p in problems}
    assert codes == {f"{tag}BADCHECK": "ID_CHECKSUM", f"{tag}BIRTH": "ID_BIRTH_MISMATCH",
                     f"{tag}NOHEAD": "HEAD_REQUIRED", f"{tag}VILLAGE": "UNKNOWN_VILLAGE"}
    bad = next(p for p in problems if p["code"] == "ID_CHECKSUM")
    assert bad["row"] == 6 and bad["field"] == "id_number"  # the member's own row in the file
    # nothing of a refused household is in the store: no household, no member claims
    for no in ("BADCHECK", "BIRTH", "NOHEAD", "VILLAGE"):
        assert c.db.households.find_one({"_id": f"2020:{tag}{no}"}) is None
    head_of_badcheck = rows[3][4]
    assert c.db.persons.find_one({"_id": f"2020:{head_of_badcheck}"}) is None
    # and each created household's registered event waits in the outbox (its batch's pointer
    # carries it), none for a refused one
    carried = [e for p in c.db.outbox_carried.find({}) for e in p["events"] if e["agg"].startswith(f"2020:{tag}")]
    assert sorted((e["agg"], e["type"]) for e in carried) == [
        (f"2020:{tag}G{i}", "registry.household.registered") for i in (1, 2, 3)]


def test_imported_households_are_published_with_their_members(c, infra, namespace):
    from tests.helpers import Probe
    probe = Probe(infra.amqp_url, namespace, ["registry.household.registered"])
    c.relay().run_once()  # drain what earlier tests wrote
    probe.take(100, timeout=1)
    do_import(c, csv_bytes(roster_rows("R9")))
    assert c.relay().run_once() == 3
    got = {m["payload"]["household_no"]: m["payload"] for m in probe.take(3)}
    assert sorted(got) == ["R9G1", "R9G2", "R9G3"]
    assert [x["relation"] for x in got["R9G1"]["members"]] == ["户主", "配偶", "子女"]
    assert got["R9G2"]["head_name"] == "人0" and got["R9G2"]["village"] == "五一村"
    probe.close()


def test_importing_the_same_file_twice_changes_nothing(c):
    data = csv_bytes(roster_rows("R2"))
    first, _ = do_import(c, data)
    before = c.db.households.find_one({"_id": "2020:R2G1"})
    second, problems = do_import(c, data)
    assert (second.households_created, second.households_unchanged, second.persons_created) == (0, 3, 0)
    assert second.households_rejected == first.households_rejected == 4  # the same bad rows, reported again
    assert c.db.households.find_one({"_id": "2020:R2G1"}) == before


def test_the_same_person_in_two_townships_is_imported_in_both_flagged_with_both_places(c):
    """多地重复参保 (003 三.3): both households are registered (failed before: the second was refused whole,
    its other members registered nowhere) and the county decides (001 七(一))."""
    pid = make_id(date(1966, 6, 6), 90, "M")
    kin = make_id(date(1990, 3, 3), 91, "F")
    rows = [["R3A", "花桥镇", "花桥村", "甲", pid, "男", "", "户主", "", ""],
            ["R3B", "白牙市镇", "五一村", "乙", make_id(date(1960, 1, 1), 92, "M"), "男", "", "户主", "", ""],
            ["R3B", "白牙市镇", "五一村", "甲", pid, "男", "", "其他", "", ""],
            ["R3B", "白牙市镇", "五一村", "丙", kin, "女", "", "子女", "", ""]]
    report, problems = do_import(c, csv_bytes(rows))
    assert (report.households_created, report.households_rejected, report.persons_duplicate) == (2, 0, 1)
    assert [(p["code"], p["household_no"]) for p in problems] == [("DUPLICATE_PERSON", "R3B")]
    assert "R3A" in problems[0]["message"] and "本户已登记" in problems[0]["message"]
    r3b = c.db.households.find_one({"_id": "2020:R3B"})
    assert len(r3b["members"]) == 3 and c.db.persons.find_one({"_id": f"2020:{kin}"})["household"] == "2020:R3B"
    assert c.db.persons.find_one({"_id": f"2020:{pid}"})["household"] == "2020:R3A"
    # the same file again changes nothing and re-opens nothing
    again, _ = do_import(c, csv_bytes(rows))
    assert (again.households_created, again.households_unchanged) == (0, 2)
    # a later file with the same person in a third household is imported and flagged too
    report, problems = do_import(c, csv_bytes([["R3C", "川岩乡", "川岩一村", "甲", pid, "男", "", "户主", "", ""]]))
    assert report.households_created == 1 and problems[0]["code"] == "DUPLICATE_PERSON"
    # county staff find one case for the person, with the household that has them and both others
    case = boot.duplicates(c).get(2020, pid)
    assert case["status"] == "open" and case["kept"]["household_no"] == "R3A" and case["kept"]["township"] == "花桥镇"
    assert {r["household_no"] for r in case["others"]} == {"R3B", "R3C"}


def test_a_person_twice_in_one_file_is_imported_in_both_households(c):
    pid = make_id(date(1970, 7, 7), 93, "F")
    rows = [["R4A", "花桥镇", "花桥村", "甲", make_id(date(1968, 1, 2), 94, "M"), "男", "", "户主", "", ""],
            ["R4A", "花桥镇", "花桥村", "丁", pid, "女", "", "配偶", "", ""],
            ["R4B", "花桥镇", "花桥村", "戊", make_id(date(1945, 2, 3), 95, "M"), "男", "", "户主", "", ""],
            ["R4B", "花桥镇", "花桥村", "丁", pid, "女", "", "子女", "", ""]]
    report, problems = do_import(c, csv_bytes(rows))
    assert (report.households_created, report.persons_duplicate) == (2, 1)
    assert [p["household_no"] for p in problems] == ["R4B"]
    case = boot.duplicates(c).get(2020, pid)
    assert case["kept"]["household_no"] == "R4A" and [o["household_no"] for o in case["others"]] == ["R4B"]


def test_an_employee_insured_member_is_left_out_and_the_rest_of_the_household_imported(c):
    rows = roster_rows("R8")
    boot.duplicates(c).exclude(2020, [rows[1][4]], "职工医保名单", NOW)  # G1's spouse
    report, problems = do_import(c, csv_bytes(rows))
    assert report.households_created == 3 and report.persons_excluded == 1
    assert [p["code"] for p in problems if p["household_no"] == "R8G1"] == ["EMPLOYEE_INSURED"]
    assert len(c.db.households.find_one({"_id": "2020:R8G1"})["members"]) == 2


def test_township_staff_import_only_their_own_township(c):
    rows = roster_rows("R4")
    report, problems = do_import(c, csv_bytes(rows), principal=Principal("baiya", "township", "431122", "白牙市镇"))
    assert report.households_created == 1  # only G2 is in 白牙市镇
    # every household outside 白牙市镇 is refused for scope before anything else is looked at
    assert sum(p["code"] == "SCOPE_TOWNSHIP" for p in problems) == 6 == report.households_rejected


def test_xlsx_rosters_import_like_csv(c):
    wb = Workbook()
    ws = wb.active
    ws.append(HEAD)
    for r in roster_rows("R5"):
        r = list(r)
        r[6] = datetime.fromisoformat(r[6])  # Excel stores dates as dates
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    report, problems = do_import(c, buf.getvalue(), kind="xlsx")
    assert (report.households_created, report.households_rejected) == (3, 4)


def test_upload_over_http_runs_in_the_worker_and_reports_progress_and_problems(c, namespace, tmp_path, monkeypatch):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [
        {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "431122"},
        {"sha256": token_hash(BAIYA), "subject": "baiya", "role": "township", "county": "431122", "township": "白牙市镇"}]}))
    monkeypatch.setenv("AUTH_TOKENS_FILE", str(tokens))
    client = create_app(FixedClock(NOW)).test_client()
    auth = {"Authorization": f"Bearer {COUNTY}"}
    r = client.post("/v1/counties/431122/imports?year=2020", data={"file": (io.BytesIO(csv_bytes(roster_rows("R6"))), "花桥镇.csv")},
                    headers=auth, content_type="multipart/form-data")
    assert r.status_code == 202 and r.json["status"] == "queued"
    iid = r.json["import_id"]
    imports = boot.imports(c)
    job = imports.claim_next(NOW)
    assert job["_id"] == iid and imports.claim_next(NOW) is None  # one worker runs it
    run_job(boot.repository(c), imports, c.policy, c.clock, job)
    status = client.get(f"/v1/counties/431122/imports/{iid}", headers=auth).json
    assert status["status"] == "done" and status["fraction"] == 1.0
    assert status["counts"]["households_created"] == 3 and status["counts"]["problems"] == 4
    page = client.get(f"/v1/counties/431122/imports/{iid}/problems?page=0", headers=auth).json["problems"]
    assert {p["code"] for p in page} == {"ID_CHECKSUM", "ID_BIRTH_MISMATCH", "HEAD_REQUIRED", "UNKNOWN_VILLAGE"}
    # another township's staff cannot read this import
    r = client.get(f"/v1/counties/431122/imports/{iid}", headers={"Authorization": f"Bearer {BAIYA}"})
    assert r.status_code == 404
    # bad uploads are refused with a code
    r = client.post("/v1/counties/431122/imports?kind=pdf", data=b"%PDF", headers=auth)
    assert (r.status_code, r.json["code"]) == (400, "ROSTER_FORMAT")


def test_village_roster_export_for_printing(c, tmp_path, monkeypatch):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [
        {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "431122"}]}))
    monkeypatch.setenv("AUTH_TOKENS_FILE", str(tokens))
    do_import(c, csv_bytes(roster_rows("R7")))
    client = create_app(FixedClock(NOW)).test_client()
    auth = {"Authorization": f"Bearer {COUNTY}"}
    r = client.get("/v1/counties/431122/exports/2020/白牙市镇/五一村?format=csv", headers=auth)
    assert r.status_code == 200
    lines = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"))))
    assert lines[0] == HEAD + ["缴费状态"]  # 参保缴费名册: the template's columns and who has paid
    r7 = [l for l in lines[1:] if l[0] == "R7G2"]
    assert [l[7] for l in r7] == ["户主", "父母"] and r7[1][6] == "1940-03-08"
    assert {l[10] for l in r7} == {"未缴费"}  # imported, not paid yet
    from services.registry.domain.roster import map_headers
    assert sorted(map_headers(lines[0])) == list(range(10))  # an upload of the printed roster reads its ten columns
    x = client.get("/v1/counties/431122/exports/2020/白牙市镇/五一村?format=xlsx", headers=auth)
    ws = load_workbook(io.BytesIO(x.data), read_only=True).worksheets[0]
    assert [c.value for c in next(ws.iter_rows(max_row=1))] == HEAD + ["缴费状态"]


def test_the_command_line_import_shows_progress_and_writes_the_problem_rows(c, namespace, tmp_path):
    import os
    import subprocess
    import sys
    from shared.config import ROOT
    f = tmp_path / "花桥镇花名册.csv"
    f.write_bytes(csv_bytes(roster_rows("R10")))
    env = {**os.environ, "BUS_NAMESPACE": namespace, "MONGO_DB": c.settings.mongo_db, "CLOCK_NOW": NOW.isoformat()}
    p = subprocess.run([sys.executable, "-m", "services.registry.entrypoints.cli", "import", str(f)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert p.returncode == 1  # some households were refused
    assert "新增 3 户 6 人" in p.stdout and "退回 4 户" in p.stdout
    assert "100%" in p.stderr  # the progress bar ran to the end
    problems = list(csv.reader(io.StringIO((tmp_path / "花桥镇花名册.csv.problems.csv").read_text(encoding="utf-8-sig"))))
    assert problems[0] == ["行号", "户编号", "字段", "错误代码", "说明"]
    assert {r[3] for r in problems[1:]} == {"ID_CHECKSUM", "ID_BIRTH_MISMATCH", "HEAD_REQUIRED", "UNKNOWN_VILLAGE"}


def test_an_imported_batch_is_pointed_at_before_it_is_written_and_published_once_written(c, infra, namespace, monkeypatch):
    """The batch's pointer is written before its households (a crash in between leaves a pointer to
    nothing, never households nobody points at): a relay round in that window publishes nothing and
    keeps the pointer; the next one publishes every household with its members."""
    from tests.helpers import Probe
    from services.registry.adapters import repository as repo_mod
    probe = Probe(infra.amqp_url, namespace, ["registry.household.registered"])
    c.relay().run_once()
    probe.take(100, timeout=1)
    relay = c.relay()
    real = repo_mod.insert_many_once
    rounds = []

    pointers = []

    def relay_first(coll, docs):
        if coll.name == "households":
            pointers.extend(c.db.outbox.find({"aggs": {"$exists": True}}))
            rounds.append((relay.run_once(), c.db.outbox.count_documents({})))
        return real(coll, docs)
    monkeypatch.setattr(repo_mod, "insert_many_once", relay_first)
    do_import(c, csv_bytes(roster_rows("R11")))
    monkeypatch.setattr(repo_mod, "insert_many_once", real)
    # each batch's round saw its pointer (and published only the batches written before it)
    assert rounds[0] == (0, 1) and all(pointers == 1 for _sent, pointers in rounds)
    # a batch's pointer is never `_id`-ed by one of its events: the relay deletes the pointer named by
    # each event it publishes, which would drop the batch's pointer with its first household
    assert pointers and all(p["_id"] not in p["events"] for p in pointers)
    last = relay.run_once()
    assert last >= 1 and sum(sent for sent, _ in rounds) + last == 3
    got = {m["payload"]["household_no"]: m["payload"] for m in probe.take(3)}
    assert len(got["R11G1"]["members"]) == 3
    assert c.db.outbox.count_documents({}) == 0
    probe.close()

