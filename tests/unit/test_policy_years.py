"""A suite loads every year of its own county from the catalogue (POLICY_DIR) and answers an unknown
year with YEAR_UNKNOWN naming the loaded ones (docs/policies.md)."""
from __future__ import annotations

import json
from datetime import datetime

import pytest

from shared.clock import SHANGHAI, FixedClock
from shared.config import ROOT, Settings
from shared.container import Container
from shared.errors import NotFound
from tests.integration.test_year_rollover import shifted_year


def container(policy_file, policy_dir) -> Container:
    s = Settings("payments", "mongodb://unused", "unused", "amqp://unused", "t", policy_file, None, None,
                 policy_dir=policy_dir)
    return Container.build("payments", settings=s, clock=FixedClock(datetime(2020, 10, 1, tzinfo=SHANGHAI)))


def test_the_shipped_catalogue_gives_dongan_its_own_years_only():
    c = container(ROOT / "policies" / "dongan-2020.json", ROOT / "policies")
    assert list(c.policies) == [2020]  # Wuming 2018 and Nayong 2017 are other counties, each its own container
    assert {code: list(cc.policies) for code, cc in c.counties().items()} == {
        "431122": [2020], "450110": [2018], "520525": [2017]}
    assert c.county("450110").policy.county == "武鸣区" and c.county("450110").counties() == c.counties()
    with pytest.raises(NotFound) as unknown:
        c.county("431100")
    assert unknown.value.code == "COUNTY_UNKNOWN"
    assert c.policy_for(2020) is c.policy
    with pytest.raises(NotFound) as e:
        c.policy_for(2018)
    assert (e.value.code, e.value.details["years"], e.value.details["county"]) == ("YEAR_UNKNOWN", [2020], "431122")
    assert "2020" in e.value.message


def test_a_second_year_in_the_directory_is_loaded_and_the_current_file_wins_its_own_year(tmp_path):
    raw = json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8"))
    raw["places_file"] = str(ROOT / "policies" / raw["places_file"])
    (tmp_path / "dongan-2021-test.json").write_text(json.dumps(shifted_year(raw), ensure_ascii=False), encoding="utf-8")
    current = dict(raw, standard_fen=26000)  # POLICY_FILE outside the directory, its own figure
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "current.json").write_text(json.dumps(current, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "dongan-2020.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    c = container(tmp_path / "elsewhere" / "current.json", tmp_path)
    assert list(c.policies) == [2020, 2021]
    assert c.policy_for(2020).standard_fen == 26000
    assert (c.policy_for(2021).window_opens.isoformat(), c.policy_for(2021).window_closes.isoformat()) == (
        "2020-09-01", "2020-12-31")
    for bad in ("2021", None, True, 2022):
        with pytest.raises(NotFound):
            c.policy_for(bad)
