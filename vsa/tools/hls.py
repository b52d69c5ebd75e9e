"""Live HLS for tests, benchmarks and demos: ffmpeg writes a live playlist in real time
(``-re``, one keyframe per segment, the last 6 segments kept), served on 127.0.0.1.

HLS delivers a segment's worth of video at once: the bursty live source of issue 24.

    python -m vsa.tools.hls out/hls --size 640x360 --fps 15 --segment-s 1   # serves until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """``folder`` served over HTTP on 127.0.0.1 (a free port); yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=folder))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def stop(process: subprocess.Popen) -> None:
    """Terminate, then kill after 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def live_hls(
    folder: Path,
    size: str = "640x360",
    fps: float = 15.0,
    segment_s: float = 1.0,
    log: IO[bytes] | None = None,
    ffmpeg: str | None = None,
    ready_s: float = 30.0,
) -> Iterator[str]:
    """ffmpeg writing live HLS into ``folder`` (created), served on 127.0.0.1; yields the
    playlist's URL once it lists two segments. ``log``: where ffmpeg's output goes (default:
    its errors to stderr). Both are stopped on exit."""
    ffmpeg = ffmpeg or shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("live HLS needs the ffmpeg CLI (apt install ffmpeg)")
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size.split("x")
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re"]
    args += ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps:g}"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    args += ["-g", str(round(fps * segment_s)), "-f", "hls", "-hls_time", f"{segment_s:g}"]
    args += ["-hls_list_size", "6", "-hls_flags", "delete_segments", "live.m3u8"]
    out = subprocess.DEVNULL if log is None else log
    writer = subprocess.Popen(args, cwd=folder, stdout=out, stderr=log)
    try:
        with serve_folder(folder) as base:
            playlist, deadline = folder / "live.m3u8", time.monotonic() + ready_s
            while not (playlist.exists() and playlist.read_text().count(".ts") >= 2):
                if time.monotonic() > deadline or writer.poll() is not None:
                    raise RuntimeError(f"ffmpeg wrote no live HLS playlist within {ready_s:g} s")
                time.sleep(0.2)
            yield f"{base}/live.m3u8"
    finally:
        stop(writer)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--size", default="640x360")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--segment-s", type=float, default=1.0)
    args = p.parse_args()
    with live_hls(args.folder, args.size, args.fps, args.segment_s) as url:
        print(f"READY {url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
