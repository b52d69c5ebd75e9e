"""The live page in a real browser (Debian's headless Chromium): two streams of a run are
listed with their states, and their live pictures change. The screenshots are kept as test
artifacts (``$VSA_ARTIFACTS`` or the test's temporary directory)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import require, wait_for
from vsa.config import parse_run, resolve_paths
from vsa.ui import UiServer, client_picture

pytestmark = pytest.mark.integration


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        require(
            "Chromium", "VSA_REQUIRE_CHROMIUM", "chromium is not installed (apt install chromium)"
        )
    assert found is not None
    return found


_RUNS = iter(range(1_000_000))


def browse(url: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """One headless Chromium, a profile of its own (never handed to another instance)."""
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"vsa-chromium-{os.getpid()}-{next(_RUNS)}"
    try:
        return subprocess.run(
            [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--window-size=1280,1000", "--virtual-time-budget=5000",
             f"--user-data-dir={profile}", *args, url],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(url: str, path: Path) -> np.ndarray:
    """The page as Chromium shows it, with both live pictures in it."""
    import cv2

    done = browse(url, f"--screenshot={path}")
    assert path.exists(), done.stderr[-2000:]
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100
    # the pictures (below the table; the page's background is #111): the shapes' textured
    # background covers most of two 480x270 pictures
    bright = (image[150:500].max(axis=2) > 60).sum()
    assert bright > 100_000, f"{path}: the live pictures are not shown ({bright} bright pixels)"
    return image


def test_two_streams_are_listed_and_their_live_pictures_change(client, tmp_path):
    chromium()
    uri = "synthetic://shapes?seed={}&fps=15&width=640&height=360"
    run = {
        "name": "live-page",
        "output_dir": str(tmp_path / "out"),
        "sources": [
            {"id": "north", "uri": uri.format(1), "mode": "realtime"},
            {"id": "south", "uri": uri.format(2), "mode": "realtime"},
        ],
        "sinks": [{"type": "jsonl"}],
    }
    # a run that ended before: listed after the running one (the pictures come first)
    done = {**run, "name": "live-page-done", "output_dir": str(tmp_path / "done"),
            "sources": [{"id": "east", "uri": "synthetic://shapes?frames=3"}]}  # fmt: skip
    done_id = client.submit(resolve_paths(parse_run(done), tmp_path))["run_id"]
    client.wait(done_id, timeout_s=120)
    run_id = client.submit(resolve_paths(parse_run(run), tmp_path))["run_id"]
    server = UiServer(client.status_dicts, client_picture(client), port=0)
    url = server.start()
    artifacts = Path(os.environ.get("VSA_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    try:
        wait_for(lambda: all(s.fps > 0 for s in client.run(run_id).sources), 120, "both streams")

        def picture(sid: str) -> bytes | None:
            with urllib.request.urlopen(f"{url}frame/{run_id}/{sid}.jpg", timeout=10) as r:
                return r.read() if r.status == 200 else None

        # a viewer besides the browser keeps both streams watched all along
        watching = threading.Event()

        def viewer() -> None:
            while not watching.wait(0.5):
                for sid in ("north", "south"):
                    picture(sid)

        threading.Thread(target=viewer, daemon=True).start()
        for sid in ("north", "south"):
            wait_for(lambda sid=sid: picture(sid), 60, f"a picture of {sid}")
        dom = browse(url, "--dump-dom").stdout
        for text in ("north", "south", "STREAMING", run_id, done_id):
            assert text in dom, dom[-3000:]
        assert dom.index(run_id) < dom.index(done_id)  # the running run first
        first = screenshot(url, artifacts / "live-page-1.png")
        shown = {sid: picture(sid) for sid in ("north", "south")}  # as new as the first's or newer
        for sid in ("north", "south"):  # the shapes move: wait for a newer picture of each
            wait_for(lambda sid=sid: picture(sid) != shown[sid], 120, f"a new picture of {sid}")
        second = screenshot(url, artifacts / "live-page-2.png")
        watching.set()
        assert first.shape == second.shape
        changed = np.abs(first.astype(int) - second.astype(int)).max(axis=2) > 40
        assert changed.sum() > 2000, changed.sum()  # the live views moved, not one digit
    finally:
        server.close()
        client.stop(run_id)
