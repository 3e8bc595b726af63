"""Roster rows (花名册) — 001_93f5b63ac6b4a653.txt 七(一): villages check the roster household by household;
五: a household enrols as a whole, so its rows stand together and share one place."""
import pytest

from services.registry.domain.roster import group_households, map_headers, parse_row
from shared.errors import DomainError

COLS = ["户编号", "乡镇", "村（社区）", "姓名", "身份证号码", "性别", "出生日期", "与户主关系", "人员类别", "联系电话"]


def rows(*specs):
    for i, (hh, town, village, rel) in enumerate(specs, start=2):
        yield i, {"household_no": hh, "township": town, "village": village, "name": "某", "id_number": "x",
                  "relation": rel}


def test_headers_townships_use_are_understood_and_missing_ones_named():
    cols = map_headers(COLS)
    assert set(cols.values()) >= {"household_no", "id_number", "relation"}
    assert set(map_headers(["户号", "乡镇", "村", "姓名", "公民身份号码", "与户主关系"]).values()) >= {"household_no", "id_number"}
    with pytest.raises(DomainError) as e:
        map_headers(["户编号", "姓名"])
    assert e.value.code == "ROSTER_HEADERS" and "身份证号码" in e.value.message


def test_households_are_grouped_from_consecutive_rows():
    got = list(group_households(rows(("A", "花桥镇", "花桥村", "户主"), ("A", "花桥镇", "花桥村", "子女"),
                                     ("B", "花桥镇", "花桥村", "户主"))))
    assert [(h.household_no, h.rows) for h in got] == [("A", [2, 3]), ("B", [4])]
    assert all(not h.problems for h in got)


def test_a_household_split_across_the_file_is_reported():
    got = list(group_households(rows(("A", "花桥镇", "花桥村", "户主"), ("B", "花桥镇", "花桥村", "户主"),
                                     ("A", "花桥镇", "花桥村", "子女"))))
    assert [p.code for p in got[2].problems] == ["HOUSEHOLD_NOT_CONTIGUOUS"]


def test_a_household_in_two_villages_is_reported():
    got = list(group_households(rows(("A", "花桥镇", "花桥村", "户主"), ("A", "花桥镇", "花桥一村", "子女"))))
    assert [p.code for p in got[0].problems] == ["HOUSEHOLD_SPLIT_PLACES"]


@pytest.mark.parametrize("values, code, field", [
    ({"relation": "表亲"}, "UNKNOWN_RELATION", "relation"),
    ({"sex": "未知"}, "BAD_SEX", "sex"),
    ({"birth_date": "1980年5月6日"}, "BAD_DATE", "birth_date"),
    ({"category": "公务员"}, "UNKNOWN_CATEGORY", "category"),
    ({"name": ""}, "FIELD_REQUIRED", "name"),
])
def test_each_bad_field_gets_its_own_code(values, code, field):
    base = {"household_no": "A", "township": "t", "village": "v", "name": "某", "id_number": "x", "relation": "户主"}
    member, problems = parse_row(7, {**base, **values})
    assert member is None
    assert [(p.row, p.field, p.code) for p in problems] == [(7, field, code)]
    assert problems[0].message


def test_seen_households_confirm_a_maybe_exactly_so_a_false_positive_never_refuses_a_household():
    from services.registry.service_layer.importer import SeenHouseholds
    created_in_this_run = {"A"}
    seen = SeenHouseholds(lambda no: no in created_in_this_run, bits=8, hashes=1)  # a tiny filter: all maybes
    seen.add("A")
    seen.batch_written(); seen.batch_written(); seen.batch_written()  # "A" left the recent batches
    assert "A" in seen  # the store confirms it
    seen.add("B")
    assert "B" in seen  # still recent
    assert "Z" not in seen  # a maybe the store denies: a household never seen
    seen.rejected.add("R")
    assert "R" in seen


def test_split_households_are_caught_with_the_fixed_memory_structure():
    from services.registry.service_layer.importer import SeenHouseholds
    seen = SeenHouseholds(lambda no: False)
    got = list(group_households(rows(("A", "花桥镇", "花桥村", "户主"), ("B", "花桥镇", "花桥村", "户主"),
                                     ("A", "花桥镇", "花桥村", "子女")), seen))
    assert [p.code for p in got[2].problems] == ["HOUSEHOLD_NOT_CONTIGUOUS"]
