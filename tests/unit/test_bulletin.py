"""Bulletins (通报) from a ranking payload: what the document says.

Rules: 002_9137bd928f251374.txt 七(四) — 每周四通报各镇工作进展情况，表扬先进，鞭策后进;
001_93f5b63ac6b4a653.txt 七(五) — 一月一通报.
"""
from services.notices.domain.bulletin import SUMMARY_MAX, bulletin_content, praise_and_urge, stamp_of, summary_text
from services.notices.service_layer.bulletins import bulletin_link, bulletin_sms_text

TOWNS = ["城厢镇", "太平镇", "双桥镇", "府城镇", "宁武镇", "锣圩镇", "仙湖镇", "邓广镇", "陆斡镇", "两江镇", "罗波镇", "灵马镇", "甘圩镇"]


def row(township, rank, rate_bp, band="behind", rank_change=None):
    return {"township": township, "rank": rank, "rate_bp": rate_bp, "band": band, "rank_change": rank_change}


def payload(rows, **over):
    return {"year": 2018, "county": "450110", "county_name": "武鸣区", "as_of": "2017-11-30T09:00:00+08:00",
            "rule": "每周四通报各镇工作进展情况", "target_share_percent": 60, "total_rate_bp": 5591,
            "townships": len(rows), "rows": rows, **over}


def test_the_title_table_total_and_target_of_a_thursday_bulletin():
    rows = [row("城厢镇", 1, 7000, "reached", 1), row("太平镇", 2, 5000, "behind", -1), row("双桥镇", 3, None, "no_data")]
    b = bulletin_content(payload(rows))
    assert b.title == "武鸣区2018年度城乡居民医保参保进度通报（截至2017年11月30日9时00分）"
    assert b.stamp == "201711300900" and b.total_text == "55.91%" and b.target_text == "阶段目标60%"
    assert [(r.rank, r.township, r.rate_text, r.band_name, r.change_text) for r in b.rows] == [
        (1, "城厢镇", "70.00%", "已达目标", "↑1"), (2, "太平镇", "50.00%", "进度滞后", "↓1"),
        (3, "双桥镇", "无数据", "无数据", "—")]
    assert b.previous_stamp is None and all(r.rate_change_text == "—" for r in b.rows)  # the first bulletin


def test_the_stamp_is_the_shanghai_minute_whatever_offset_the_instant_carries():
    assert stamp_of("2017-11-30T01:00:00+00:00") == stamp_of("2017-11-30T09:00:00+08:00") == "201711300900"


def test_changes_since_the_last_bulletin_places_from_scoring_points_from_the_stored_one():
    rows = [row("城厢镇", 1, 6120, rank_change=2), row("太平镇", 2, 5000, rank_change=0), row("双桥镇", 3, 4000, rank_change=-2)]
    previous = {"stamp": "201711230900", "rows": [{"township": "城厢镇", "rate_bp": 5800},
                                                  {"township": "太平镇", "rate_bp": 5000},
                                                  {"township": "双桥镇", "rate_bp": 4015}]}
    b = bulletin_content(payload(rows), previous)
    assert [(r.change_text, r.rate_change_bp, r.rate_change_text) for r in b.rows] == [
        ("↑2", 320, "+3.20"), ("持平", 0, "0.00"), ("↓2", -15, "-0.15")]
    assert b.previous_stamp == "201711230900"


def test_praise_the_first_three_and_urge_the_last_three_ties_at_the_edge_included():
    """表扬先进，鞭策后进: a tie at the third place praises everyone sharing it; a tie at the third
    from last urges everyone sharing it; without ties, three each."""
    def table(ranks):
        return [row(t, k, 10000 - k * 500) for t, k in zip(TOWNS, ranks)]
    assert praise_and_urge(table(range(1, 14))) == (TOWNS[:3], TOWNS[-3:])
    praised, urged = praise_and_urge(table([1, 2, 3, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13]))
    assert praised == ["城厢镇", "太平镇", "双桥镇", "府城镇"] and urged == TOWNS[-3:]
    praised, urged = praise_and_urge(table([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 12, 13]))
    assert praised == TOWNS[:3] and urged == ["两江镇", "罗波镇", "灵马镇", "甘圩镇"]
    praised, urged = praise_and_urge(table([1, 1, 1, 1, 5, 6, 7, 8, 9, 10, 11, 11, 11]))
    assert praised == TOWNS[:4] and urged == TOWNS[-3:]


def test_scoring_dense_ranks_are_read_by_position_too():
    rows = [row("甲镇", 1, 9000), row("乙镇", 2, 8000), row("丙镇", 2, 8000), row("丁镇", 3, 7000), row("戊镇", 4, 100),
            row("己镇", 5, 50), row("庚镇", 6, 10)]
    assert praise_and_urge(rows) == (["甲镇", "乙镇", "丙镇"], ["戊镇", "己镇", "庚镇"])


def test_nobody_is_both_praised_and_urged_nor_praised_without_progress_nor_urged_at_the_target():
    few = [row("甲镇", 1, 9000), row("乙镇", 2, 8000), row("丙镇", 3, 7000), row("丁镇", 4, 6000)]
    assert praise_and_urge(few) == (["甲镇"], ["丁镇"])  # 乙, 丙 are in both the top and the bottom three
    start = [row(t, 1, 0) for t in TOWNS]  # the season's first day: everyone tied at 0
    assert praise_and_urge(start) == ([], [])
    done = [row(t, i + 1, 10000 - i * 10, "reached") for i, t in enumerate(TOWNS)]
    praised, urged = praise_and_urge(done)
    assert praised == TOWNS[:3] and urged == []
    unranked = [row("戊镇", None, None, "no_data"), *few]  # no data: not ranked, neither praised nor urged
    assert praise_and_urge(unranked) == (["甲镇"], ["丁镇"])


def test_the_sms_summary_fits_70_characters_however_long_the_names():
    long_names = [f"某某某某{t}街道办事处" for t in TOWNS]
    for names in (TOWNS, long_names):
        rows = [row(t, i + 1, 9000 - i * 600) for i, t in enumerate(names)]
        b = bulletin_content(payload(rows))
        assert len(b.summary) <= SUMMARY_MAX, b.summary
        assert "全区55.91%" in b.summary and "阶段目标60%" in b.summary
    short = bulletin_content(payload([row(t, i + 1, 9000 - i * 600) for i, t in enumerate(TOWNS)]))
    assert short.summary == "武鸣区参保进度通报（截至11月30日9时）：全区55.91%，阶段目标60%；表扬城厢镇、太平镇、双桥镇；鞭策罗波镇、灵马镇、甘圩镇。"
    assert len(summary_text("某" * 80, "2017-11-30T09:30:00+08:00", None, None, [], [])) == SUMMARY_MAX
    assert "截至11月30日9时30分" in summary_text("武鸣区", "2017-11-30T09:30:00+08:00", None, None, [], [])


def test_the_sms_text_ends_with_the_bulletins_link(monkeypatch):
    b = bulletin_content(payload([row("城厢镇", 1, 7000)]))
    monkeypatch.delenv("NOTICE_PUBLIC_BASE_URL", raising=False)
    assert bulletin_link("450110", 2018, "201711300900", "http://127.0.0.1:8105") == \
        "http://127.0.0.1:8105/v1/counties/450110/bulletins/2018/201711300900"
    monkeypatch.setenv("NOTICE_PUBLIC_BASE_URL", "https://yb.example.gov.cn/")
    link = "https://yb.example.gov.cn/v1/counties/450110/bulletins/2018/201711300900"
    assert bulletin_sms_text(b) == f"{b.summary}详见：{link}"
    assert bulletin_sms_text(b.to_doc()) == bulletin_sms_text(b)


def test_the_summary_sms_goes_once_to_each_leaders_number_from_the_template_handed_over(tmp_path):
    """003_0724b4a19d5e14e1.txt: 以短信的方式发给各乡镇主要领导. The template (`bulletin.sms`) is the one
    proposed for the manifest; rendered here from a book of its own until it is added."""
    import json
    from services.notices.adapters.templates import TemplateBook
    from services.notices.domain.bulletin import bulletin_sms_notices
    (tmp_path / "manifest.json").write_text(json.dumps({"bulletin.sms": {
        "version": 1, "code": "SMS_ENROL_BULLETIN_1", "urgent": False, "params": ["summary", "link"]}}))
    (tmp_path / "bulletin.sms.j2").write_text("{{ summary }}详见：{{ link }}\n", encoding="utf-8")
    book = TemplateBook(tmp_path, sign_name="武鸣区医保")
    b = bulletin_content(payload([row(t, i + 1, 9000 - i * 600) for i, t in enumerate(TOWNS)])).to_doc()
    link = bulletin_link("450110", 2018, b["stamp"], "http://127.0.0.1:8105")
    leaders = {"城厢镇": [{"name": "韦镇长", "phone": "13977001001"}, {"name": "黄副镇长", "phone": "13977001002"}],
               "太平镇": [{"name": "韦镇长", "phone": "13977001001"}], "双桥镇": []}
    notices = [book.fill(n) for n in bulletin_sms_notices(b, link, leaders)]
    assert [(n.recipient_name, n.township) for n in notices] == [("韦镇长", "城厢镇"), ("黄副镇长", "城厢镇")]
    assert len({n.notice_id for n in notices}) == 2 and all("13977" not in n.notice_id for n in notices)
    assert notices[0].text == f"【武鸣区医保】{b['summary']}详见：{link}" == f"【武鸣区医保】{bulletin_sms_text(b, 'http://127.0.0.1:8105')}"
    # signature 8 + summary 67 + 详见： 3 + a 60-character link: billed as three parts of 67
    assert notices[0].template["code"] == "SMS_ENROL_BULLETIN_1" and notices[0].sms_segments == 3
