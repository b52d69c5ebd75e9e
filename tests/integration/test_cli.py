"""The command line against the session's real cluster, as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import pytest
import ray

from actors import CONTROLLER_NAME, NAMESPACE
from tests.integration.conftest import REPO, cli_env, read_jsonl, run_cli, wait_for, write_run
from vsa.client import _wait_name_free

pytestmark = pytest.mark.integration


def _finite_run(tmp_path, name, frames=30):
    return write_run(
        tmp_path / f"{name}.yaml",
        {
            "name": name,
            "output_dir": str(tmp_path / "out"),
            "sources": [
                {
                    "id": "s1",
                    "uri": f"synthetic://shapes?seed=3&fps=30&width=320&height=180&frames={frames}",
                },
                {
                    "id": "s2",
                    "uri": f"synthetic://shapes?seed=4&fps=30&width=256&height=144&frames={frames}",
                },
            ],
        },
    )


def test_submit_returns_and_the_detached_controller_finishes_the_run(ray_cluster, client, tmp_path):
    """The submitting process exits at once; the run goes on in the cluster without it."""
    run_file = _finite_run(tmp_path, "detached")
    done = run_cli("-m", "vsa.submit", str(run_file), "--address", ray_cluster["gcs_address"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("submitted run detached-"), done.stdout
    assert "Traceback" not in done.stderr
    run_id = done.stdout.split()[2].rstrip(":")
    run = client.wait(run_id, timeout_s=180).to_dict()
    assert run["state"] == "FINISHED"
    assert len(read_jsonl(tmp_path / "out" / "s1.jsonl")) == 30

    status = run_cli("-m", "vsa.status", run_id, "--json", "--address", ray_cluster["gcs_address"])
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    (run,) = doc["runs"]
    assert run["id"] == run_id and run["state"] == "FINISHED"
    for source in run["sources"]:
        assert {"id", "state", "frames_decoded", "frames_inferred", "frames_dropped", "fps"} <= set(
            source
        )
        assert source["frames_decoded"] == source["frames_inferred"] == 30

    listed = run_cli("-m", "vsa", "list", "--address", ray_cluster["gcs_address"])
    assert listed.returncode == 0 and run_id in listed.stdout


def test_submit_follow_prints_progress_until_the_end(ray_cluster, tmp_path):
    run_file = _finite_run(tmp_path, "follow", frames=60)
    vsa = shutil.which("vsa", path=str(REPO / ".venv" / "bin")) or shutil.which("vsa")
    assert vsa, "the vsa console script is installed"
    done = subprocess.run(
        [vsa, "submit", str(run_file), "--follow", "--address", ray_cluster["gcs_address"]],
        capture_output=True,
        text=True,
        timeout=240,
        env=cli_env(),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("[") and "s1" in line for line in lines), (
        done.stdout
    )  # progress lines
    assert "FINISHED" in lines[-4] or any("FINISHED" in line for line in lines[-4:])
    final = [line for line in lines if line.strip().startswith(("s1 ", "s2 "))]
    assert len(final) == 2 and all(" 60 " in line for line in final), done.stdout


def test_stop_from_the_cli(ray_cluster, client, tmp_path):
    run_file = write_run(
        tmp_path / "forever.yaml",
        {
            "name": "forever",
            "output_dir": str(tmp_path / "out"),
            "sources": [
                {"id": "cam", "uri": "synthetic://shapes?seed=9&fps=15&width=320&height=180"}
            ],
        },
    )
    done = run_cli(
        "-m", "vsa.submit", str(run_file), "--json", "--address", ray_cluster["gcs_address"]
    )
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    wait_for(
        lambda: client.run(run_id).to_dict()["sources"][0]["frames_emitted"] >= 5, 120, "frames"
    )
    stopped = run_cli(
        "-m", "vsa.stop", "forever", "--json", "--address", ray_cluster["gcs_address"]
    )
    assert stopped.returncode == 0, stopped.stderr
    run = json.loads(stopped.stdout)
    assert run["id"] == run_id and run["state"] == "STOPPED"
    assert len(read_jsonl(tmp_path / "out" / "cam.jsonl")) == run["sources"][0]["frames_emitted"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "name: x\noutput_dir: o\nsources:\n  - id: a\n    uri: rtps://cam/x\n",
            "sources[0].uri: unsupported scheme 'rtps' (use one of: synthetic, file, rtsp, rtsps, rtmp, http, https)",
        ),
        ("name: x\noutput_dir: o\nsources: []\nextra: 1\n", "extra: unknown key"),
        (
            "name: x\noutput_dir: o\nsources:\n  - id: a\n    uri: /nope/missing.mp4\n",
            "sources[0].uri: file not found: /nope/missing.mp4",
        ),
    ],
)
def test_bad_run_file_gives_one_clear_error_and_exit_2(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    done = run_cli("-m", "vsa.submit", str(path), timeout=60)
    assert done.returncode == 2
    assert f"{path}: {expected}" in done.stderr or expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_no_cluster_is_one_line_and_nonzero(tmp_path):
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_file = _finite_run(tmp_path, "nocluster")
    started = time.monotonic()
    done = run_cli("-m", "vsa.submit", str(run_file), "--address", f"127.0.0.1:{port}", timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "ray start --head" in done.stderr
    assert time.monotonic() - started < 60


def test_ray_job_submit_runs_the_same_command(ray_cluster, client, tmp_path):
    """`ray job submit -- python -m vsa.submit run.yaml` against the token-protected cluster.

    The job's driver creates the controller (the old one is removed first); the controller
    outlives the job.
    """
    try:  # a controller made by an earlier test: the job's driver must make its own
        ray.kill(ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE), no_restart=True)
    except ValueError:
        pass  # none yet (this test run alone)
    _wait_name_free(CONTROLLER_NAME, NAMESPACE)
    workdir = tmp_path / "job"
    workdir.mkdir()
    _finite_run(workdir, "viajob", frames=20).rename(workdir / "run.yaml")
    ray_bin = shutil.which("ray", path=str(REPO / ".venv" / "bin")) or shutil.which("ray")
    address = "http://" + ray_cluster["dashboard_url"].removeprefix("http://")
    command = [ray_bin, "job", "submit", "--address", address, "--working-dir", str(workdir), "--",
               sys.executable, "-m", "vsa.submit", "run.yaml", "--follow"]  # fmt: skip

    def submitted():  # the dashboard's job agent may still be starting with the cluster
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=300, env=cli_env(RAY_AUTH_MODE="token")
        )
        return None if "No available agent to submit job" in done.stderr else done

    done = wait_for(submitted, 120, "the job agent to accept a job", interval=2)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "FINISHED" in done.stdout
    controller = ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)  # outlived its job
    runs = [r for r in ray.get(controller.status.remote())["runs"] if r["name"] == "viajob"]
    assert len(runs) == 1 and runs[0]["state"] == "FINISHED"
    assert len(read_jsonl(workdir / "out" / "s1.jsonl")) == 20
