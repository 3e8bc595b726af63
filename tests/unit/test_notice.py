"""Receipt notice to the household head — 001_93f5b63ac6b4a653.txt 五: 注明户主、家庭成员姓名、缴费金额、缴费时间."""
from services.notices.domain.notice import receipt_notice

PAYLOAD = {"order_no": "P1", "receipt_no": "R1", "household_no": "H1", "year": 2020, "county": "东安县",
           "township": "花桥镇", "village": "花桥村", "head_name": "刘春生", "head_phone": "13900001111",
           "amount_fen": 75000, "channel": "mobile_app", "gateway": "g", "transaction_id": "t",
           "paid_at": "2019-11-15T02:00:00+00:00",
           "members": [{"person_id": "x", "name": n, "standard_fen": 25000, "subsidy_fen": 0, "payable_fen": 25000}
                       for n in ("刘春生", "王小红", "刘洋")]}


def test_receipt_names_head_members_amount_and_shanghai_time():
    n = receipt_notice(PAYLOAD)
    assert n.notice_id == "receipt:P1" and n.channel == "sms" and n.status == "queued"
    for part in ("刘春生户主", "王小红", "刘洋", "3人", "750.00元", "2019年11月15日 10:00", "R1"):
        assert part in n.text


def test_without_a_phone_the_notice_is_kept_as_no_contact():
    assert receipt_notice(dict(PAYLOAD, head_phone=None)).status == "no_contact"
