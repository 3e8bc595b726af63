"""Counters of the subsidy feed and claims (Prometheus), beside the suite's shared ones."""
from prometheus_client import Counter

IDENTITY_UPDATES = Counter("subsidy_identity_updates_total", "Identity updates received, by source and outcome",
                           ["source", "outcome"])
CLAIMS = Counter("subsidy_claims_total", "先缴后补 reimbursement claims, by department and step", ["department", "step"])
