from __future__ import annotations

import copy
import json
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.alerting.config import parse_config
from stream_app.alerting.policy import Alert, AlertPolicy, PolicyEngine, mask_email, mask_phone
from stream_app.alerting.rules import DEFAULT_RULES_PATH, Candidate, severity_rank
from stream_app.alerting.windows import iso

from .helpers import T0

ENV = {"BADBUZZ_ALERT_EMAILS": "comms@example.com,jane@example.com", "BADBUZZ_ALERT_PHONES": "+33612345678"}
DOC = tomllib.loads(DEFAULT_RULES_PATH.read_text())


def config(**quiet):
    doc = copy.deepcopy(DOC)
    doc["policy"]["cooldown_minutes"] = 30  # the engine owns incident lifecycles; this is the policy's safety net
    if quiet:
        doc["quiet_hours"] = quiet
    return parse_config(doc, "test.toml", ENV)


def cand(severity="warning", minute=0, rule="negative_spike", brand="acme", subject="negative") -> Candidate:
    start = T0 + 60 * minute
    return Candidate(rule, severity, brand, subject, iso(start), iso(start + 300), 40.0, 10.0, 30.0,
                     ({"id": "1", "text": "awful", "author": "bob", "link": "https://x/1", "score": 2.0},))


def alert(**kw) -> Alert:
    return Alert.from_candidate(cand(**kw), dashboard_url="http://127.0.0.1:6066/dashboard", created_at="now")


def test_alert_roundtrip_and_schema_fields():
    a = alert()
    d = a.to_dict()
    assert set(d) == {"id", "rule", "severity", "brand", "subject", "window_start", "window_end", "observed",
                      "baseline", "threshold", "samples", "dashboard_url", "created_at", "status", "reason",
                      "incident_start", "note", "lang", "team"}
    assert set(d["samples"][0]) == {"id", "text", "author", "link"}
    assert Alert.from_dict(json.loads(json.dumps(d))) == a
    assert a.dashboard_url == f"http://127.0.0.1:6066/dashboard?brand=acme&alert={a.id}"
    # deterministic ids: same key + severity -> same id, whatever the creation time
    assert Alert.from_candidate(cand(), created_at="later").id == a.id
    assert alert(severity="critical").id != a.id


def test_new_then_dedup_then_cooldown_then_repeat():
    eng = PolicyEngine(config().policy)
    a = alert()
    d = eng.process(a, T0)
    assert d.deliver and d.reason == "new"
    assert d.channels == {"email": ["comms@example.com", "jane@example.com"]} and d.deferred == {}
    assert eng.process(a, T0 + 10).reason == "duplicate"
    # next window, same group, within the 30 min cooldown
    d = eng.process(alert(minute=1), T0 + 60)
    assert not d.deliver and d.reason == "cooldown"
    # after the cooldown the group fires again
    d = eng.process(alert(minute=31), T0 + 31 * 60)
    assert d.deliver and d.reason == "repeat"
    # the replayed first alert is still a duplicate (restart replay)
    assert eng.process(a, T0 + 32 * 60).reason == "duplicate"


def test_escalation_passes_once_during_cooldown():
    eng = PolicyEngine(config().policy)
    assert eng.process(alert(), T0).deliver
    d = eng.process(alert(severity="critical", minute=2), T0 + 120)
    assert d.deliver and d.reason == "escalation"
    assert d.channels == {"email": ["comms@example.com", "jane@example.com"], "sms": ["+33612345678"]}
    assert eng.process(alert(severity="critical", minute=3), T0 + 180).reason == "cooldown"
    assert eng.process(alert(severity="warning", minute=4), T0 + 240).reason == "cooldown"


def test_groups_are_independent():
    eng = PolicyEngine(config().policy)
    assert eng.process(alert(), T0).deliver
    assert eng.process(alert(brand="globex"), T0).deliver
    assert eng.process(alert(rule="incident_spike", subject="baggage"), T0).deliver
    assert not eng.process(alert(minute=1), T0 + 60).deliver


def test_quiet_hours_fold_sms_into_digest():
    # 10:00Z = 12:00 Paris; quiet 11:00-13:00 Paris for sms
    cfg = config(sms={"start": "11:00", "end": "13:00", "timezone": "Europe/Paris"})
    eng = PolicyEngine(cfg.policy)
    d = eng.process(alert(severity="critical"), T0)
    assert d.deliver and d.channels == {"email": ["comms@example.com", "jane@example.com"]}
    assert d.deferred == {"sms": ["+33612345678"]}
    assert len(eng.state["digest"]) == 1
    assert eng.pop_due_digest(T0 + 1800) == ([], [])  # still quiet
    due, rcpts = eng.pop_due_digest(T0 + 3600)  # 13:00 Paris
    assert [a.id for a in due] == [d.alert.id] and rcpts == ["comms@example.com", "jane@example.com"]
    assert eng.state["digest"] == []
    json.dumps(eng.state)  # plain serializable state


def test_quiet_hours_wrap_midnight_and_severity_filter():
    cfg = config(sms={"start": "22:00", "end": "07:00", "timezone": "UTC", "severities": ["warning"]})
    q = cfg.policy.quiet_hours["sms"]
    night, morning, noon = T0 + 13 * 3600, T0 + 20 * 3600, T0  # 23:00, 06:00, 10:00 UTC
    assert q.active(night) and q.active(morning) and not q.active(noon)
    assert not q.active(night, "critical")


def test_state_survives_serialization_restart():
    pol = config().policy
    eng = PolicyEngine(pol)
    a = alert()
    assert eng.process(a, T0).deliver
    restarted = PolicyEngine(pol, json.loads(json.dumps(eng.state)))
    assert restarted.process(a, T0 + 5).reason == "duplicate"
    assert not restarted.process(alert(minute=1), T0 + 60).deliver


def test_pure_decide_does_not_mutate_input():
    pol = AlertPolicy(config().policy)
    st0 = {"severity": "warning", "until": T0 + 100, "sent": {"x": T0}}
    snapshot = copy.deepcopy(st0)
    pol.decide(st0, alert(severity="critical"), T0)
    assert st0 == snapshot


def test_masking():
    assert mask_phone("+33612345678") == "+33******78"
    assert mask_email("jane@example.com") == "j***@example.com"


events = st.lists(
    st.tuples(st.integers(min_value=0, max_value=240),  # minute offset of the window start
              st.sampled_from(["warning", "critical"]),
              st.sampled_from(["acme", "globex"]),
              st.integers(min_value=0, max_value=30)),  # processing delay (s)
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(events)
def test_property_no_double_delivery_within_cooldown_unless_severity_rises(evs):
    pol = config().policy
    cooldown = pol.cooldown_seconds("negative_spike")
    eng = PolicyEngine(pol)
    delivered: dict[str, list[tuple[float, str]]] = {}
    ids: set[str] = set()
    now = float(T0)
    for minute, sev, brand, delay in sorted(evs):
        now = max(now, T0 + 60 * minute + delay)  # time moves forward
        a = alert(severity=sev, minute=minute, brand=brand)
        d = eng.process(a, now)
        if d.deliver:
            assert a.id not in ids  # an alert id is delivered at most once, ever
            ids.add(a.id)
            delivered.setdefault(a.group_key, []).append((now, sev))
        json.dumps(eng.state)  # state stays plain JSON at every step
    for past in delivered.values():
        for (t1, s1), (t2, s2) in zip(past, past[1:], strict=False):
            # within the cooldown of the previous delivery only a higher severity gets through
            assert t2 >= t1 + cooldown or severity_rank(s2) > severity_rank(s1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["warning", "critical"]), min_size=1, max_size=20))
def test_property_at_most_one_escalation_per_cooldown(sevs):
    eng = PolicyEngine(config().policy)
    sent = [eng.process(alert(severity=s, minute=i), T0 + 60 * i).deliver for i, s in enumerate(sevs)]
    assert sum(sent) <= 2 and sent[0]


def test_each_team_gets_its_alerts_and_a_team_without_recipients_falls_back():
    env = ENV | {"BADBUZZ_DATASCIENCE_EMAILS": "ds@example.com", "BADBUZZ_DATASCIENCE_PHONES": "+33700000001"}
    doc = copy.deepcopy(DOC)
    doc["brands"]["freebox"]["teams"] = {"comms": {"critical": {"email": ["fr-comms@example.com"]}}}
    routing = parse_config(doc, "test.toml", env).policy.routing
    model = Alert.from_candidate(Candidate("misclassification", "critical", "acme", "model", iso(T0), iso(T0 + 300),
                                           3.0, None, 3.0, team="data_science"))
    assert routing.for_alert(model) == {"email": ["ds@example.com"], "sms": ["+33700000001"]}
    storm = alert(severity="critical")
    assert routing.for_alert(storm) == {"email": ["comms@example.com", "jane@example.com"], "sms": ["+33612345678"]}
    assert routing.for_alert(alert(severity="critical", brand="freebox")) == {"email": ["fr-comms@example.com"]}
    ops = Alert.from_candidate(Candidate("error_rate", "critical", "*", "errors", iso(T0), iso(T0 + 300), 0.1,
                                         None, 0.05, team="devops"))
    assert routing.for_alert(ops) == routing.for_alert(storm), "no DevOps recipients: the default ones, not nobody"
    assert AlertPolicy(parse_config(doc, "test.toml", env).policy).decide(None, model, T0).channels == \
        {"email": ["ds@example.com"], "sms": ["+33700000001"]}
