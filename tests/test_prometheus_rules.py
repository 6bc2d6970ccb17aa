"""deploy/prometheus/alert-rules.yml names the same thresholds and windows as the TOML health rules, every
expression parses as PromQL (promql-parser; promtool is not installed here), and the compose and Kubernetes
deployments load the same file."""

from __future__ import annotations

import re
from pathlib import Path

import promql_parser
import yaml

from stream_app.alerting import load_config
from stream_app.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = ROOT / "deploy" / "prometheus" / "alert-rules.yml"
SECONDS = {"latency", "predict_latency"}  # the TOML says ms, the histograms seconds


def prom_rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"]]


def test_every_health_tier_has_its_prometheus_rule_with_the_same_threshold():
    health = load_config().health
    rules = {(r["labels"]["badbuzz_rule"], r["labels"]["severity"]): r for r in prom_rules()}
    tiers = {(name, sev): (rule, tier) for name, rule in health.items() for sev, tier in rule.tiers.items()}
    assert set(rules) == set(tiers)
    for key, (rule, tier) in tiers.items():
        prom = rules[key]
        assert prom["labels"]["team"] == rule.team, key
        assert float(prom["annotations"]["threshold"]) == tier.threshold, key
        assert int(prom["annotations"]["window_minutes"]) == tier.minutes, key
        expr = prom["expr"]
        if key[0] in SECONDS:  # held for the window: each minute's P95
            assert prom["for"] == f"{tier.minutes}m" and "[1m]" in expr, key
        else:
            assert f"[{tier.minutes}m" in expr, key
        limit = tier.threshold / 1000 if key[0] in SECONDS else tier.threshold
        assert re.search(rf">= {limit:g}\b", expr), (key, expr)
        if rule.min_volume:
            assert f">= {rule.min_volume}" in expr or key[0] in SECONDS, (key, "the minimum volume")


def test_expressions_parse_and_name_exported_metrics():
    exported = {m.name for m in REGISTRY.collect()}
    for r in prom_rules():
        promql_parser.parse(r["expr"])
        for name in re.findall(r"\b(badbuzz_[a-z_]+)", r["expr"]):
            base = re.sub(r"_(bucket|total)$", "", name)
            assert base in exported or name in exported, (r["alert"], name)


def test_compose_and_kubernetes_load_the_same_rules():
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alert-rules.yml"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "./deploy/prometheus/alert-rules.yml:/etc/prometheus/alert-rules.yml:ro" in \
        compose["services"]["prometheus"]["volumes"]
    operator = yaml.safe_load((ROOT / "deploy/k8s/monitoring/prometheus-rule.yaml").read_text())
    assert operator["kind"] == "PrometheusRule"
    assert operator["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]
