"""Network sources with a known duration through the real engine (issue 24 item 3): an HLS VOD
playlist (``#EXT-X-ENDLIST``) and an MP4 over HTTP, both in the default ``mode: auto``, are
read lossless: every frame is emitted (in realtime a VOD playlist lost all but a few frames of
each burst as ``queue_full``)."""

from __future__ import annotations

import pytest

from tests import media
from tests.integration.conftest import read_jsonl
from vsa.config import parse_run, resolve_paths
from vsa.tools.hls import serve_folder

pytestmark = pytest.mark.integration

HLS_FRAMES = 30  # 3 s at 10 fps, 1 s segments
MP4_FRAMES = 20


def test_hls_vod_and_mp4_over_http_default_to_lossless(client, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    media.good_clip(www, frames=MP4_FRAMES, size=(160, 120), name="clip.mp4")
    media.vod_hls(www / "vod.m3u8", HLS_FRAMES // 10)
    limits = {"open_timeout_s": 5, "read_timeout_s": 5, "stall_timeout_s": 5}
    with serve_folder(www) as base:
        run = {
            "name": "http-vod",
            "output_dir": str(tmp_path / "out"),
            "sources": [
                {"id": "vod", "uri": f"{base}/vod.m3u8", **limits},  # mode: auto
                {"id": "web", "uri": f"{base}/clip.mp4", **limits},
            ],
            "batching": {"max_batch_size": 4, "max_wait_ms": 20},
        }
        run_id = client.submit(resolve_paths(parse_run(run), tmp_path))["run_id"]
        final = client.wait(run_id, timeout_s=180).to_dict()
    assert final["state"] == "FINISHED", final
    by_id = {s["id"]: s for s in final["sources"]}
    for sid, frames in (("vod", HLS_FRAMES), ("web", MP4_FRAMES)):
        s = by_id[sid]
        assert (s["state"], s["mode"]) == ("FINISHED", "lossless"), s
        assert s["frames_decoded"] == s["frames_emitted"] == frames and s["drops"] == {}, s
        records = read_jsonl(tmp_path / "out" / f"{sid}.jsonl")
        assert [r["frame"] for r in records] == list(range(frames))
