"""End to end through the real engine: outputs, attribution, stop, names."""

from __future__ import annotations

import math
import os
import shutil
import subprocess

import av
import numpy as np
import pytest
import ray

from tests.integration.conftest import count_video_frames, read_jsonl, wait_for
from vsa.config import parse_run, resolve_paths
from vsa.models import load_model
from vsa.models.base import run_model

pytestmark = pytest.mark.integration


def _spec(tmp_path, name, sources, **extra):
    run = {"name": name, "output_dir": str(tmp_path / "out"), "sources": sources, **extra}
    return resolve_paths(parse_run(run), tmp_path)


def _ffprobe_frames(path) -> int | None:
    if shutil.which("ffprobe") is None:
        if os.environ.get("VSA_REQUIRE_FFPROBE") == "1":
            pytest.fail("ffprobe is required (VSA_REQUIRE_FFPROBE=1) but not installed")
        return None
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,codec_name",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    codec, frames = out.split(",")
    assert codec == "h264"
    return int(frames)


def test_mixed_run_finishes_with_playable_video_and_complete_jsonl(client, clips, tmp_path):
    spec = _spec(
        tmp_path,
        "mixed",
        [
            {"id": "syn", "uri": "synthetic://shapes?seed=5&fps=30&width=320&height=180&frames=45"},
            {"id": "clip", "uri": str(clips["wide"])},
        ],
    )
    run_id = client.submit(spec)["run_id"]
    run = client.wait(run_id, timeout_s=180).to_dict()
    assert run["state"] == "FINISHED", run
    expected = {"syn": 45, "clip": 36}
    for source in run["sources"]:
        n = expected[source["id"]]
        assert source["state"] == "FINISHED"
        assert (
            source["frames_decoded"] == source["frames_inferred"] == source["frames_emitted"] == n
        )
        assert source["frames_dropped"] == 0
        # one host: the frames went through the source's shared-memory ring and the socket
        assert source["transport"] == "channel"
        lines = read_jsonl(tmp_path / "out" / f"{source['id']}.jsonl")
        assert [r["frame"] for r in lines] == list(range(n))
        assert {r["source"] for r in lines} == {source["id"]} and {r["run"] for r in lines} == {
            run_id
        }
        video = tmp_path / "out" / f"{source['id']}.mp4"
        assert count_video_frames(video) == n
        probed = _ffprobe_frames(video)
        assert probed is None or probed == n
    # the synthetic source carries ground truth: the detector finds its objects
    assert sum(len(r["detections"]) for r in read_jsonl(tmp_path / "out" / "syn.jsonl")) >= 45


def test_results_are_attributed_to_the_right_stream_and_frame(client, clips, tmp_path):
    """Several file sources batched together: JSONL frame k == the model run alone on decoded frame k.

    Each source has at most 2 frames in flight and a batch takes up to 8 (or what waited
    300 ms), so a batch of more than 2 frames holds several streams. With 8 in flight each, one
    stream's two chunks of 4 fill a batch alone, and the streams can settle into taking turns
    with single-stream batches (seen in CI), which would not test attribution at all."""
    spec = _spec(
        tmp_path,
        "attribution",
        [{"id": name, "uri": str(path), "max_in_flight": 2} for name, path in clips.items()],
        batching={"max_batch_size": 8, "max_wait_ms": 300},
    )
    run_id = client.submit(spec)["run_id"]
    run = client.wait(run_id, timeout_s=240).to_dict()
    assert run["state"] == "FINISHED", run

    model = load_model(spec.model.model_copy(update={"device": "cpu"}))  # what the engine loaded
    streams_per_batch: dict[int, set[str]] = {}
    compared = 0
    for name, path in clips.items():
        lines = read_jsonl(tmp_path / "out" / f"{name}.jsonl")
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
        assert len(lines) == len(frames)
        for k, (line, frame) in enumerate(zip(lines, frames, strict=True)):
            assert line["frame"] == k and line["source"] == name
            assert (line["height"], line["width"]) == frame.shape[:2]
            streams_per_batch.setdefault(line["batch"], set()).add(name)
            alone = run_model(model, [np.ascontiguousarray(frame)])[0]
            got = line["detections"]
            assert [d["label"] for d in got] == [d.label for d in alone], f"{name} frame {k}"
            for g, a in zip(got, alone, strict=True):
                assert all(
                    math.isclose(x, y, abs_tol=1.0) for x, y in zip(g["box"], a.box, strict=True)
                )
                assert abs(g["score"] - a.score) < 2e-3
            compared += 1
    assert compared == sum(len(read_jsonl(tmp_path / "out" / f"{n}.jsonl")) for n in clips)
    # the engine really mixed streams in one batch
    assert any(len(s) >= 2 for s in streams_per_batch.values()), streams_per_batch


def test_stop_an_endless_run_closes_complete_files(client, ray_cluster, tmp_path):
    spec = _spec(
        tmp_path,
        "endless",
        [
            {"id": "a", "uri": "synthetic://shapes?seed=1&fps=20&width=320&height=180"},
            {"id": "b", "uri": "synthetic://shapes?seed=2&fps=10&width=256&height=144"},
        ],
    )
    run_id = client.submit(spec)["run_id"]

    def streaming():
        run = client.run(run_id).to_dict()
        return run["state"] == "UP" and all(s["frames_emitted"] >= 10 for s in run["sources"])

    wait_for(streaming, 120, "both endless sources to emit 10 frames")
    # actors carry readable names (they show in the Ray dashboard)
    for sid in ("a", "b"):
        assert ray.get_actor(f"source:{run_id}/{sid}", namespace="vsa") is not None
    assert ray.get_actor("inference", namespace="vsa") is not None

    # the same file for a running name: the same run, nothing to change
    same = client.submit(spec)
    assert same["run_id"] == run_id and same["plan"]["noop"] and not same["applied"]

    run = client.stop(run_id).to_dict()
    assert run["state"] == "STOPPED"
    for source in run["sources"]:
        assert source["state"] == "STOPPED"
        drops = sum(source["drops"].values())
        assert source["frames_decoded"] == source["frames_emitted"] + drops
        lines = read_jsonl(tmp_path / "out" / f"{source['id']}.jsonl")
        assert len(lines) == source["frames_emitted"]
        assert (
            count_video_frames(tmp_path / "out" / f"{source['id']}.mp4") == source["frames_emitted"]
        )
    # the source actors are gone, the name is free again
    wait_for(lambda: _actor_gone(f"source:{run_id}/a"), 60, "source actor to be removed")
    again = client.submit(spec, overwrite=True)["run_id"]  # its own files: replaced on request
    assert again != run_id
    assert client.stop(again).to_dict()["state"] == "STOPPED"


def _actor_gone(name: str) -> bool:
    try:
        ray.get_actor(name, namespace="vsa")
    except ValueError:
        return True
    return False
