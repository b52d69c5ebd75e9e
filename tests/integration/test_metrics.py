"""Metrics through Ray's export port, scraped by a real Prometheus server (Debian's
``prometheus``, started here on 127.0.0.1 with Ray's service-discovery file), and the
end-of-run report."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import free_port, require, wait_for
from vsa.config import parse_run, resolve_paths

pytestmark = pytest.mark.integration

FRAMES = 40


@pytest.fixture(scope="module")
def prometheus(ray_cluster, tmp_path_factory):
    binary = shutil.which("prometheus")
    require(
        "prometheus",
        "VSA_REQUIRE_PROMETHEUS",
        None if binary else "prometheus is not installed (apt install prometheus)",
    )
    root = tmp_path_factory.mktemp("prometheus")
    sd = Path(ray_cluster["session_dir"]) / "prom_metrics_service_discovery.json"
    wait_for(sd.exists, 60, "Ray's Prometheus service-discovery file")
    config = root / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: ray\n    file_sd_configs:\n"
        f"      - files: ['{sd}']\n        refresh_interval: 1s\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "prometheus.log", "w"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 60, "Prometheus to be ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def query(url: str, promql: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def value(url: str, promql: str) -> float | None:
    result = query(url, promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_per_stream_metrics_and_the_latency_count_is_frames_emitted(
    client, prometheus, tmp_path
):
    sources = [
        {
            "id": f"cam{k}",
            "uri": f"synthetic://shapes?seed={k}&fps=20&width=160&height=120&frames={FRAMES}",
        }
        for k in range(2)
    ]
    spec = resolve_paths(
        parse_run({"name": "metrics", "output_dir": str(tmp_path / "out"), "sources": sources}),
        tmp_path,
    )
    run_id = client.submit(spec)["run_id"]
    run = client.wait(run_id, timeout_s=180).to_dict()
    assert run["state"] == "FINISHED"
    for s in run["sources"]:
        assert s["frames_emitted"] == FRAMES
        sel = f'run="{run_id}",source="{s["id"]}"'
        wait_for(
            lambda sel=sel: value(prometheus, f"ray_vsa_latency_seconds_count{{{sel}}}") == FRAMES,
            90,
            f"the latency histogram of {s['id']} to count {FRAMES} frames in Prometheus",
        )
        wait_for(
            lambda sel=sel: value(prometheus, f"ray_vsa_frames_emitted_total{{{sel}}}") == FRAMES,
            60,
            "frames emitted in Prometheus",
        )
        assert value(prometheus, f"ray_vsa_frames_decoded_total{{{sel}}}") == FRAMES
        assert value(prometheus, f"ray_vsa_decode_seconds_count{{{sel}}}") == FRAMES
    names = {r["metric"]["__name__"] for r in query(prometheus, f'{{run="{run_id}"}}')}
    assert {
        "ray_vsa_source_fps",
        "ray_vsa_source_queue_depth",
        "ray_vsa_source_state",
        "ray_vsa_source_burst_frames",
    } <= names
    # inference metrics, tagged by model
    assert value(prometheus, 'sum(ray_vsa_batch_size_count{model="builtin-shapes-v1"})') > 0
    # Ray's own resource metrics sit beside them in the same Prometheus
    assert query(prometheus, "ray_node_cpu_utilization")

    # the end-of-run report
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["run"] == run_id and report["state"] == "FINISHED"
    assert report["totals"]["frames_emitted"] == 2 * FRAMES
    assert report["latency_ms"]["p50"] is not None
    assert {s["id"] for s in report["streams"]} == {"cam0", "cam1"}
    assert [t["state"] for t in report["transitions"]][-1] == "FINISHED"
    assert (tmp_path / "out" / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert str(tmp_path / "out" / "report.json") in run["report"]
