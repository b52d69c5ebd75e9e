"""Network sources served from 127.0.0.1 (issue 24): an MP4 over HTTP and an HLS VOD playlist
have a known duration, an HLS playlist without ``#EXT-X-ENDLIST`` is live. What the opened
source says (``finite``, ``endless``) and the mode a stream in ``mode: auto`` takes with it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from tests import media
from vsa.config import JsonlSinkSpec, SourceSpec
from vsa.core.frames import Frame, FrameResult
from vsa.sinks import open_sinks
from vsa.sources import SourceOptions, open_source
from vsa.stream import StreamSettings, StreamWorker
from vsa.tools.hls import serve_folder

TIMEOUT = 60.0
FRAMES = {"clip.mp4": 20, "vod.m3u8": 40}  # the HLS playlist: 4 s at 10 fps
LIMITS = {"open_timeout_s": 5.0, "read_timeout_s": 5.0, "stall_timeout_s": 5.0}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a folder with ``clip.mp4``, ``vod.m3u8`` and ``live.m3u8`` (its segments)."""
    www = tmp_path_factory.mktemp("www")
    media.good_clip(www, frames=FRAMES["clip.mp4"], size=(160, 120), name="clip.mp4")
    vod = media.vod_hls(www / "vod.m3u8", 4).read_text()
    assert "#EXT-X-ENDLIST" in vod
    (www / "live.m3u8").write_text(vod.replace("#EXT-X-ENDLIST\n", ""))
    with serve_folder(www) as base:
        yield base


@pytest.mark.parametrize(
    "name, on_end, finite, endless",
    [
        ("clip.mp4", "auto", True, False),
        ("vod.m3u8", "auto", True, False),
        ("live.m3u8", "auto", False, True),
        ("live.m3u8", "finish", False, False),  # on_end set: the duration still says live
        ("vod.m3u8", "reconnect", True, True),
    ],
)
def test_an_opened_http_source_says_whether_it_has_a_known_end(base, name, on_end, finite, endless):
    source = open_source(f"{base}/{name}", SourceOptions(on_end=on_end, **LIMITS))
    try:
        assert (source.finite, source.endless, source.live) == (finite, endless, True)
    finally:
        source.close()


def instant(chunk: list[Frame], *terms: object) -> Future:
    fut: Future = Future()
    fut.set_result([FrameResult(f.index, [], 0.0, len(chunk)) for f in chunk])
    return fut


def worker(uri: str, out: Path, submit=instant) -> StreamWorker:
    spec = SourceSpec(id="web", uri=uri, **LIMITS)  # mode: auto
    return StreamWorker(
        "run-1",
        "web",
        uri,
        lambda fps: open_sinks([JsonlSinkSpec(type="jsonl")], out, "run-1", "web", fps),
        submit,
        StreamSettings.from_spec(spec, 30.0),
    )


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_a_file_over_http_in_mode_auto_is_read_lossless_to_its_last_frame(base, tmp_path, name):
    w = worker(f"{base}/{name}", tmp_path)
    assert w.status()["mode"] == "auto"  # decided when it opens
    w.start()
    assert w.join(TIMEOUT), "the worker did not end"
    status = w.status()
    assert (status["state"], status["mode"]) == ("FINISHED", "lossless")
    assert status["frames_emitted"] == FRAMES[name] and status["drops"] == {}
    lines = (tmp_path / "web.jsonl").read_text().splitlines()
    assert [json.loads(x)["frame"] for x in lines] == list(range(FRAMES[name]))


def test_a_live_hls_playlist_in_mode_auto_is_realtime(base, tmp_path):
    terms: list[tuple[object, object]] = []

    def submit(chunk: list[Frame], deadlines: object, credit: object, behind: object) -> Future:
        terms.append((deadlines, credit))
        return instant(chunk)

    w = worker(f"{base}/live.m3u8", tmp_path, submit)
    w.start()
    deadline = time.monotonic() + TIMEOUT
    while not terms:
        assert time.monotonic() < deadline, "no frame was submitted"
        time.sleep(0.02)
    w.stop(10.0)
    status = w.status()
    assert status["mode"] == "realtime" and status["state"] == "STOPPED"
    assert all(credit == 1 and len(d) == 1 for d, credit in terms)  # one frame at a time
    assert status["frames_decoded"] == status["frames_emitted"] + status["frames_dropped"]
