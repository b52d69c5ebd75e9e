"""The live page's server and the stream's preview without Ray: routes, the token off the
loopback, and pictures made only while someone watches."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from vsa.core.detections import Detection
from vsa.core.frames import Frame, FrameResult
from vsa.stream.preview import WATCH_S, Preview, PreviewSink
from vsa.ui import UiServer


def get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@pytest.fixture
def page():
    pictures = {("run-1", "cam"): b"\xff\xd8jpeg"}
    status = {"runs": [{"id": "run-1", "name": "r", "state": "UP", "sources": []}]}
    server = UiServer(lambda: status, lambda r, s: pictures.get((r, s)), port=0)
    server.start()
    yield server
    server.close()


def test_the_page_the_status_and_pictures(page):
    base = page.url
    code, body, headers = get(base)
    assert code == 200 and b"vsa: runs and streams" in body
    assert headers["Content-Type"].startswith("text/html")
    code, body, _ = get(base + "api/runs")
    assert code == 200 and json.loads(body)["runs"][0]["id"] == "run-1"
    assert get(base + "frame/run-1/cam.jpg")[:2] == (200, b"\xff\xd8jpeg")
    assert get(base + "frame/run-1/other.jpg")[0] == 204  # no picture yet
    assert get(base + "frame/run-1/../etc.jpg")[0] == 404
    assert get(base + "nothing")[0] == 404


def test_off_the_loopback_a_token_is_needed_and_then_a_cookie_will_do():
    server = UiServer(lambda: {"runs": []}, lambda r, s: None, host="0.0.0.0", port=0)
    server.start()
    try:
        assert server.token and f"?token={server.token}" in server.url
        base = f"http://127.0.0.1:{server.port}/"
        assert get(base)[0] == 401 and get(base + "api/runs")[0] == 401
        assert get(base + "?token=wrong")[0] == 401
        code, _, headers = get(f"{base}?token={server.token}")
        assert code == 200 and "HttpOnly" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";")[0]
        assert get(base + "api/runs", {"Cookie": cookie})[0] == 200
        bearer = {"Authorization": f"Bearer {server.token}"}
        assert get(base + "api/runs", bearer)[0] == 200
    finally:
        server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pictures_are_made_only_while_watched_and_at_most_fps():
    clock = Clock()
    preview = Preview(fps=5, clock=clock)
    sink = PreviewSink(preview)
    image = np.full((720, 1280, 3), 90, np.uint8)

    def frames(n: int) -> None:
        for k in range(n):
            sink.write(Frame(k, k / 30, 0.0, image=image), FrameResult(k, [], 1.0, 1))
            clock.now += 1 / 30

    frames(60)  # nobody watches: nothing made
    assert preview.made == 0 and preview.watch() is None
    frames(60)  # watched (just now) for WATCH_S: 2 s of 30 fps, at most 5 pictures a second
    assert 8 <= preview.made <= 10
    picture = preview.watch()
    assert picture is not None and picture.jpeg[:2] == b"\xff\xd8"
    import cv2

    decoded = cv2.imdecode(np.frombuffer(picture.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (360, 640, 3)  # scaled to 640 wide
    clock.now += WATCH_S + 1  # the viewer left
    made = preview.made
    frames(90)
    assert preview.made == made


def test_a_picture_shows_the_overlays():
    preview = Preview(fps=1000)
    preview.watch()
    image = np.full((120, 160, 3), 90, np.uint8)
    result = FrameResult(0, [Detection("circle", 0, 0.9, (40, 30, 80, 70))], 1.0, 1)
    PreviewSink(preview).write(Frame(0, 0.0, 0.0, image=image), result)
    import cv2

    picture = cv2.imdecode(np.frombuffer(preview.watch().jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(picture.astype(int) - 90).max() > 100
    assert (image == 90).all()  # drawn on a copy: the sinks after it see the frame as decoded
