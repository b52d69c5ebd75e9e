"""User models through the real engine, and bad model files refused at submit."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest

from tests.integration.conftest import read_jsonl, run_cli, write_run
from vsa.config import ModelSpec, parse_run, resolve_paths
from vsa.models import load_model, run_model
from vsa.testing.toy import export_toy

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def test_yolo_segment_torchscript_runs_through_the_engine(client, clips, tmp_path):
    model_path = export_toy(tmp_path / "toy-seg.torchscript", nc=3, nm=32)
    model = {"name": "torchscript", "path": str(model_path), "task": "segment", "device": "cpu",
             "score_threshold": 0.5, "max_detections": 20}  # fmt: skip
    run = {"name": "yolo", "output_dir": str(tmp_path / "out"), "model": model,
           "sources": [{"id": "clip", "uri": str(clips["small"])}]}  # fmt: skip
    spec = resolve_paths(parse_run(run), tmp_path)
    run_id = client.submit(spec)["run_id"]
    status = client.wait(run_id, timeout_s=240).to_dict()
    assert status["state"] == "FINISHED", status
    assert status["model"]["model"] == "torchscript:toy-seg.torchscript"

    lines = read_jsonl(tmp_path / "out" / "clip.jsonl")
    direct = load_model(ModelSpec.model_validate(model))
    with av.open(str(clips["small"])) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(lines) == len(frames)
    with_masks = 0
    for line, frame in zip(lines, frames, strict=True):
        alone = run_model(direct, [np.ascontiguousarray(frame)])[0]
        assert [d["label"] for d in line["detections"]] == [d.label for d in alone]
        for got, want in zip(line["detections"], alone, strict=True):
            assert all(
                math.isclose(a, b, abs_tol=1.0) for a, b in zip(got["box"], want.box, strict=True)
            )
            assert got["mask"]["size"] == [frame.shape[0], frame.shape[1]]
            with_masks += 1
    assert with_masks > 0


def test_bad_model_is_refused_at_submit_and_the_engine_stays_up(ray_cluster, client, tmp_path):
    corrupt = tmp_path / "corrupt.torchscript"
    corrupt.write_bytes(b"not a model" * 50)
    bad = write_run(tmp_path / "bad.yaml", {
        "name": "badmodel", "output_dir": str(tmp_path / "out"),
        "model": {"name": "torchscript", "path": str(corrupt), "classes": ["a"]},
        "sources": [{"id": "s", "uri": "synthetic://shapes?frames=5&width=128&height=96"}],
    })  # fmt: skip
    done = run_cli("-m", "vsa.submit", str(bad), "--address", ray_cluster["gcs_address"])
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("vsa: error:")]
    assert len(errors) == 1, done.stderr  # Ray itself may print a warning line; ours is one line
    assert errors[0].startswith(f"vsa: error: {corrupt}: not a loadable TorchScript model ("), (
        done.stderr
    )

    missing = write_run(tmp_path / "missing.yaml", {
        "name": "nomodel", "output_dir": str(tmp_path / "out"),
        "model": {"name": "torchscript", "path": "nowhere.torchscript", "classes": ["a"]},
        "sources": [{"id": "s", "uri": "synthetic://shapes?frames=5&width=128&height=96"}],
    })  # fmt: skip
    done = run_cli("-m", "vsa.submit", str(missing), "--address", ray_cluster["gcs_address"])
    assert done.returncode == 2 and "model.path: file not found:" in done.stderr

    # the engine is still up and serves the next run
    good = parse_run({"name": "aftermath", "output_dir": str(tmp_path / "good"),
                      "sources": [{"id": "s", "uri": "synthetic://shapes?frames=5&width=128&height=96"}]})  # fmt: skip
    assert client.wait(client.submit(good)["run_id"], timeout_s=120).state == "FINISHED"
