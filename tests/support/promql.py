"""Reading metric names out of PromQL and out of a /metrics exposition, for the tests that
keep docs/grafana-dashboard.json true to what sealroom exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

DOCS = Path(__file__).resolve().parents[2] / "docs"
DASHBOARD = DOCS / "grafana-dashboard.json"

# PromQL's functions, aggregations and keywords: identifiers that are not metric names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "rate", "irate", "increase", "delta", "idelta",
    "histogram_quantile", "clamp_min", "clamp_max", "abs", "time", "vector", "scalar",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "label_replace",
    "changes", "resets", "deriv", "predict_linear", "absent", "e", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors ($__rate_interval, 5m)
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        is_call = text[match.end() :].lstrip().startswith("(")
        if word.lower() not in PROMQL_WORDS and not is_call:
            names.add(word)
    return names


def exported_names(exposition: str) -> set[str]:
    """Every series name the exposition declares (with or without samples yet)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    names = set()
    for family in text_string_to_metric_families(exposition):
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def dashboard_exprs() -> list[str]:
    """Every query of every panel of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_exprs() -> list[str]:
    """Every `expr:` of the Prometheus rules shown in docs/monitoring.md."""
    page = (DOCS / "monitoring.md").read_text("utf-8")
    exprs = []
    for block in re.findall(r"```yaml\n(.*?)```", page, flags=re.DOTALL):
        parsed = yaml.safe_load(block)
        for group in parsed.get("groups", []) if isinstance(parsed, dict) else []:
            exprs += [str(rule["expr"]) for rule in group["rules"]]
    return exprs
