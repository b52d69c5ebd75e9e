"""One table of metric names (docs/metrics.md) that matches the code and the Grafana dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def defined() -> dict[str, str]:
    """Exported name -> type, from actors/metrics.py (Ray adds ray_, counters get _total)."""
    code = (ROOT / "actors" / "metrics.py").read_text()
    out = {}
    for kind, name in re.findall(r"(Counter|Gauge|Histogram)\(\s*\"(vsa_\w+)\"", code):
        exported = f"ray_{name}" + ("_total" if kind == "Counter" else "")
        out[exported] = kind.lower()
    return out


def test_every_metric_is_in_the_docs_table_with_its_type():
    table = dict(
        re.findall(r"^\| `(ray_vsa_\w+)` \| (\w+) \|", (ROOT / "docs/metrics.md").read_text(), re.M)
    )
    assert defined() == table
    assert len(table) >= 15


def test_the_grafana_dashboard_uses_only_defined_metrics():
    dash = json.loads((ROOT / "configs/grafana/vsa.json").read_text())
    names = defined()
    histograms = {n for n, k in names.items() if k == "histogram"}
    used = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"ray_vsa_\w+", target["expr"]))
    for name in used:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in names or base in histograms, name
    assert len(used) >= 8
