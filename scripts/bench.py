"""Benchmark: the vsa engine against the model alone, a no-op pipeline and a naive loop.

One command, one Ray session, everything compared measured in the same run, back to back:

- **T(B)**: the model alone, warmed, in the inference actor's conditions (torch intra-op
  threads = ``VSA_TORCH_THREADS``, as ``actors/inference.py`` sets them), B = 1, 2, 4, ...
  up to the max batch size: ``run_model`` (letterbox + forward + decode) on 640x360 frames.
- **pass-through**: the whole engine with a no-op TorchScript model (``[B, 84, 8400]``
  zeros, the YOLO layout, so no detection): decode + transport + letterbox + sinks.
- **engine**: N streams (synthetic, H.264 files, optionally live RTSP cameras), lossless and
  realtime, with the built-in model and a YOLOv8n-size TorchScript network with random
  weights (built here: 3.15 M parameters, 8.7 GFLOPs at 640x640, like YOLOv8n).
- **naive**: what a user writes instead, in one process: read the N streams round-robin
  (PyAV, or the synthetic renderer), one frame per stream per batch, the same model
  (``load_model`` + ``run_model``), the same sinks (``open_sinks``: video + JSONL), with the
  engine's torch thread count (``--naive-threads`` to change it).
- **capacity**: the largest N at which every stream of a 15 fps realtime synthetic run
  (640x360, built-in model) keeps >= 14 fps with p99 latency < 500 ms (N = 1, 2, 3, ...,
  stopping at the first failure).

Throughput and latency of the engine and of the naive loop come from the same place, the
JSONL files (``capture_time``, ``latency_ms``), read the same way (docs/performance.md).

    python scripts/bench.py --quick          # ~3-5 min on a 2-core CPU host: synthetic + file
                                             # sources, 640x360, N = 1, 2, 4
    python scripts/bench.py                  # full: N = 1, 2, 4, 8, 16, 640x360 and 1280x720,
                                             # + live RTSP cameras; about 1 h on 2 cores
    python scripts/bench.py --quick --rtsp   # quick + RTSP cameras (flaky_rtsp server)

Writes ``out/bench/bench.json`` and ``out/bench/bench.png`` (``--out``), prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python scripts/bench.py` from anywhere: vsa and actors import
    sys.path.insert(0, str(REPO))

NC = 80  # classes of the TorchScript models (YOLO's COCO layout: 4 + 80 rows)
SIZES = {"640x360": (640, 360), "1280x720": (1280, 720)}
CAPACITY_FPS = 15.0
CAPACITY_MIN_FPS = 14.0
CAPACITY_MAX_P99_MS = 500.0
MIN_KEPT = 10  # frames per stream past warm-up below which the warm-up is not cut


# --- models built here ----------------------------------------------------------------------


def _yolo_modules() -> Any:
    """A YOLOv8n-shaped network (backbone, PAN neck, decoupled DFL head), random weights.

    Same widths and depths as Ultralytics' yolov8n.yaml, with BatchNorm already folded into
    the convolutions (as an export is); the class biases start at -10 like Ultralytics' init,
    so random weights give (almost) no detection. Output ``[B, 4 + nc, 8400]`` at 640x640.
    """
    import torch
    from torch import nn

    class Conv(nn.Sequential):
        def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1) -> None:
            super().__init__(nn.Conv2d(c1, c2, k, s, k // 2), nn.SiLU())

    class Bottleneck(nn.Module):
        def __init__(self, c: int, shortcut: bool) -> None:
            super().__init__()
            self.cv1, self.cv2, self.add = Conv(c, c, 3), Conv(c, c, 3), shortcut

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.cv2(self.cv1(x))
            return x + y if self.add else y

    class C2f(nn.Module):
        def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False) -> None:
            super().__init__()
            self.c = c2 // 2
            self.cv1, self.cv2 = Conv(c1, 2 * self.c), Conv((2 + n) * self.c, c2)
            self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = list(self.cv1(x).chunk(2, 1))
            for m in self.m:
                y.append(m(y[-1]))
            return self.cv2(torch.cat(y, 1))

    class SPPF(nn.Module):
        def __init__(self, c1: int, c2: int, k: int = 5) -> None:
            super().__init__()
            c = c1 // 2
            self.cv1, self.cv2, self.m = Conv(c1, c), Conv(c * 4, c2), nn.MaxPool2d(k, 1, k // 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = [self.cv1(x)]
            for _ in range(3):
                y.append(self.m(y[-1]))
            return self.cv2(torch.cat(y, 1))

    class YoloV8nLike(nn.Module):
        def __init__(self, nc: int = NC) -> None:
            super().__init__()
            a, b, c, d, e = 16, 32, 64, 128, 256
            self.b1 = nn.Sequential(
                Conv(3, a, 3, 2), Conv(a, b, 3, 2), C2f(b, b, 1, True), Conv(b, c, 3, 2)
            )
            self.b1.append(C2f(c, c, 2, True))
            self.b2 = nn.Sequential(Conv(c, d, 3, 2), C2f(d, d, 2, True))
            self.b3 = nn.Sequential(Conv(d, e, 3, 2), C2f(e, e, 1, True), SPPF(e, e))
            self.up = nn.Upsample(scale_factor=2.0)
            self.h12, self.h15 = C2f(e + d, d), C2f(d + c, c)
            self.d16, self.h18 = Conv(c, c, 3, 2), C2f(c + d, d)
            self.d19, self.h21 = Conv(d, d, 3, 2), C2f(d + e, e)
            c2, c3 = max(16, c // 4, 64), max(c, min(nc, 100))
            self.box = nn.ModuleList(
                nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 64, 1))
                for x in (c, d, e)
            )
            self.cls = nn.ModuleList(
                nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1))
                for x in (c, d, e)
            )
            for head in self.cls:
                nn.init.constant_(head[-1].bias, -10.0)
            self.register_buffer("proj", torch.arange(16, dtype=torch.float32))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p3 = self.b1(x)
            p4 = self.b2(p3)
            p5 = self.b3(p4)
            h12 = self.h12(torch.cat([self.up(p5), p4], 1))
            o3 = self.h15(torch.cat([self.up(h12), p3], 1))
            o4 = self.h18(torch.cat([self.d16(o3), h12], 1))
            o5 = self.h21(torch.cat([self.d19(o4), p5], 1))
            boxes, scores, anchors, strides = [], [], [], []
            for i, (f, stride) in enumerate(zip((o3, o4, o5), (8, 16, 32), strict=True)):
                h, w = f.shape[2], f.shape[3]
                boxes.append(self.box[i](f).flatten(2))
                scores.append(self.cls[i](f).flatten(2))
                ys, xs = torch.meshgrid(
                    torch.arange(h, dtype=f.dtype) + 0.5,
                    torch.arange(w, dtype=f.dtype) + 0.5,
                    indexing="ij",
                )
                anchors.append(torch.stack((xs.flatten(), ys.flatten()), 0))
                strides.append(torch.full((1, h * w), float(stride)))
            box, score = torch.cat(boxes, 2), torch.cat(scores, 2)
            anchor, stride_t = torch.cat(anchors, 1), torch.cat(strides, 1)
            n = box.shape[2]
            dist = (box.view(-1, 4, 16, n).softmax(2) * self.proj.view(1, 1, 16, 1)).sum(2)
            lt, rb = dist[:, :2], dist[:, 2:]
            xy = (anchor + (rb - lt) / 2) * stride_t
            wh = (lt + rb) * stride_t
            return torch.cat([xy, wh, score.sigmoid()], 1)

    class PassThrough(nn.Module):
        """No network: ``[B, 4 + nc, 8400]`` zeros (no candidate passes any threshold)."""

        def __init__(self, nc: int = NC) -> None:
            super().__init__()
            self.rows = 4 + nc

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros((x.shape[0], self.rows, 8400), dtype=x.dtype, device=x.device)

    return YoloV8nLike, PassThrough


def build_models(folder: Path) -> dict[str, Any]:
    """Write ``yolov8n_like.torchscript`` and ``passthrough.torchscript`` (names embedded as
    Ultralytics does); parameters and GFLOPs (2 x multiply-adds) of the YOLO-size one."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    folder.mkdir(parents=True, exist_ok=True)
    yolo_cls, pass_cls = _yolo_modules()
    names = json.dumps({"names": {i: f"class{i}" for i in range(NC)}})
    torch.manual_seed(0)
    yolo = yolo_cls().eval()
    x = torch.zeros(1, 3, 640, 640)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        yolo(x)
    with torch.no_grad():
        traced = torch.jit.trace(yolo, x, check_trace=False)
    yolo_path = folder / "yolov8n_like.torchscript"
    torch.jit.save(traced, str(yolo_path), _extra_files={"config.txt": names})
    pass_path = folder / "passthrough.torchscript"
    torch.jit.save(
        torch.jit.script(pass_cls().eval()), str(pass_path), _extra_files={"config.txt": names}
    )
    return {
        "yolo": {
            "path": str(yolo_path),
            "params": sum(p.numel() for p in yolo.parameters()),
            "gflops_640": round(counter.get_total_flops() / 1e9, 2),
        },
        "passthrough": {"path": str(pass_path), "params": 0, "gflops_640": 0.0},
    }


def model_spec(model: str, paths: dict[str, Any]) -> dict[str, Any]:
    """The run file's ``model:`` block of a model key (builtin | yolo | passthrough)."""
    if model == "builtin":
        return {"name": "builtin", "device": "auto"}
    return {"name": "torchscript", "path": paths[model]["path"], "device": "auto"}


# --- configurations ---------------------------------------------------------------------------


@dataclass
class Config:
    """One measured configuration (engine, and the naive loop unless ``naive`` is False)."""

    kind: str  # synthetic | file | rtsp
    n: int
    size: str  # 640x360 | 1280x720
    mode: str  # lossless | realtime
    model: str  # builtin | yolo | passthrough
    frames: int = 0  # per stream (lossless); realtime: fps x duration
    duration_s: float = 0.0  # realtime
    fps: float = CAPACITY_FPS  # realtime pacing
    naive: bool = True
    group: str = "main"  # main | passthrough | capacity

    @property
    def label(self) -> str:
        return f"{self.model}/{self.kind}/{self.mode}/{self.size}/N{self.n}"


def lossless_frames(total: int, n: int, floor: int) -> int:
    return max(floor, math.ceil(total / n))


def plan(args: argparse.Namespace) -> list[Config]:
    """The configurations of this mode, in the order they run."""
    q = args.quick
    ns = args.n or ([1, 2, 4, 8] if q else [1, 2, 4, 8, 16])
    sizes = ["640x360"] if q else ["640x360", "1280x720"]
    total, floor = (120, 30) if q else (600, 60)
    dur = 8.0 if q else 20.0
    out: list[Config] = []
    for n in ns:  # the ceiling first, then the engine vs the loop, same N back to back
        for size in sizes:
            f = lossless_frames(total, n, floor)
            # the no-op model runs ~4x faster: 3x the frames for a comparable duration
            out.append(Config("synthetic", n, size, "lossless", "passthrough", 3 * f))
            out.append(Config("synthetic", n, size, "lossless", "builtin", f))
            if not q or n == 4:
                out.append(Config("file", n, size, "lossless", "builtin", f))
        if not q or 1 < n < 8:  # quick: N = 1 realtime is the capacity search's first probe
            out.append(Config("synthetic", n, "640x360", "realtime", "builtin", duration_s=dur))
        if args.rtsp or not q:
            out.append(Config("rtsp", n, "640x360", "realtime", "builtin", duration_s=dur))
    yolo_ns = [2] if q else [n for n in ns if n <= 8]
    for n in yolo_ns:  # the YOLO-size network: ~150-200 ms/frame on one core
        f = lossless_frames(24 if q else 96, n, 12)
        out.append(Config("synthetic", n, "640x360", "lossless", "yolo", f))
    if args.rtsp or not q:  # the issue's model-bound live case: 4 cameras, the YOLO-size model
        out.append(Config("rtsp", 4, "640x360", "realtime", "yolo", duration_s=3 * dur))
    if args.only:
        out = [c for c in out if any(o in c.label for o in args.only)]
    for c in out:
        if c.mode == "realtime":
            c.frames = int(c.fps * c.duration_s)
    return out


# --- reading JSONL results (engine and naive alike) -------------------------------------------


def read_results(folder: Path, ids: list[str]) -> dict[str, list[tuple[float, float, int]]]:
    """Per stream: (capture_time, result_time, batch_size) of every frame written."""
    out: dict[str, list[tuple[float, float, int]]] = {}
    for sid in ids:
        rows = []
        path = folder / f"{sid}.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                cap = float(r["capture_time"])
                rows.append((cap, cap + float(r["latency_ms"]) / 1000, int(r["batch_size"])))
        out[sid] = rows
    return out


STAGES = ("decode_ms", "to_engine_ms", "queue_ms", "infer_ms")


def read_stages(folder: Path, ids: list[str]) -> dict[str, float | None]:
    """Medians over every frame of the engine's own per-frame stage times (JSONL): decode,
    decoder to engine, waiting for the batch, the batch; and the rest of the latency (the way
    back and the sinks written before the line)."""
    values: dict[str, list[float]] = {k: [] for k in (*STAGES, "back_sinks_ms")}
    for sid in ids:
        path = folder / f"{sid}.jsonl"
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if any(r.get(k) is None for k in STAGES):
                continue
            for k in STAGES:
                values[k].append(float(r[k]))
            known = float(r["to_engine_ms"]) + float(r["queue_ms"]) + float(r["infer_ms"])
            values["back_sinks_ms"].append(float(r["latency_ms"]) - known)
    return {f"stage_{k}": _r(statistics.median(v)) if v else None for k, v in values.items()}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(results: dict[str, list[tuple[float, float, int]]], warmup_s: float) -> dict:
    """fps (total, per stream) and latency percentiles, past each stream's warm-up.

    Per stream, frames captured in the first ``warmup_s`` after its first frame are left out
    (unless fewer than ``MIN_KEPT`` frames would remain: then all count). Per-stream fps:
    frames / (last result - first capture) of the frames kept. Total fps: results of
    every stream in the window where all streams are past warm-up and still producing, over
    the window's length (fallback when that window is under 1 s: all frames over first
    capture to last result).
    """
    kept: dict[str, list[tuple[float, float, int]]] = {}
    for sid, rows in results.items():
        if not rows:
            kept[sid] = []
            continue
        t0 = min(r[0] for r in rows) + warmup_s
        k = [r for r in rows if r[0] >= t0]
        kept[sid] = k if len(k) >= MIN_KEPT else rows  # too short a run: every frame
    per_stream = []
    for rows in kept.values():
        span = max(r[1] for r in rows) - min(r[0] for r in rows) if rows else 0.0
        per_stream.append(len(rows) / span if span > 0 else 0.0)
    live = [rows for rows in kept.values() if rows]
    total_fps = 0.0
    window = None
    if live:
        start = max(min(r[1] for r in rows) for rows in live)
        end = min(max(r[1] for r in rows) for rows in live)
        if end - start >= 1.0:
            n = sum(1 for rows in live for r in rows if start < r[1] <= end)
            total_fps, window = n / (end - start), end - start
        else:
            every = [r for rows in results.values() for r in rows]
            span = max(r[1] for r in every) - min(r[0] for r in every)
            total_fps = len(every) / span if span > 0 else 0.0
    lat = [(r[1] - r[0]) * 1000 for rows in kept.values() for r in rows]
    frames = sum(len(rows) for rows in results.values())
    return {
        "frames": frames,
        "fps": round(total_fps, 2),
        "fps_window_s": None if window is None else round(window, 2),
        # the steady window (wall times) and its frames: CPU per frame is measured over it
        "window": None if window is None else [start, end],
        "window_frames": None if window is None else n,
        "fps_stream_min": round(min(per_stream), 2) if per_stream else 0.0,
        "fps_stream_mean": round(statistics.fmean(per_stream), 2) if per_stream else 0.0,
        "fps_stream_max": round(max(per_stream), 2) if per_stream else 0.0,
        "fps_stream": [round(f, 2) for f in per_stream],
        "p50_ms": _r(pct(lat, 50)),
        "p95_ms": _r(pct(lat, 95)),
        "p99_ms": _r(pct(lat, 99)),
        "p99_ms_stream": [
            _r(pct([(r[1] - r[0]) * 1000 for r in rows], 99)) for rows in kept.values()
        ],
    }


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


# --- the naive loop (a child process: its own CPU and memory) ----------------------------------


def naive_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """One process, N streams round-robin, one frame per stream per batch, the engine's model
    and sinks. Prints its timings as JSON."""
    import resource

    import torch

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    from vsa.config import JsonlSinkSpec, ModelSpec, VideoSinkSpec
    from vsa.core.frames import Frame, FrameResult
    from vsa.models import load_model, run_model
    from vsa.sinks import open_sinks

    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(ModelSpec.model_validate(cfg["model"]))
    readers = [_naive_reader(cfg, i) for i in range(cfg["n"])]
    specs = [VideoSinkSpec(type="video"), JsonlSinkSpec(type="jsonl")]
    sinks = [open_sinks(specs, out, cfg["run"], f"s{i}", r.fps) for i, r in enumerate(readers)]
    stage = {"decode": 0.0, "model": 0.0, "sinks": 0.0}
    cpu0, started = time.process_time(), time.perf_counter()
    steady: tuple[float, int] | None = None  # (process CPU, frames) once warmed up
    deadline = time.monotonic() + cfg["duration_s"] if cfg["duration_s"] else None
    batches = frames = 0
    active = list(range(len(readers)))
    while active:
        if deadline is not None and time.monotonic() >= deadline:
            break
        batch: list[tuple[int, Frame]] = []
        for i in list(active):
            t = time.perf_counter()
            frame = readers[i].next()
            stage["decode"] += time.perf_counter() - t
            if frame is None:
                active.remove(i)
            elif frame is not False:
                batch.append((i, frame))
        if not batch:
            waits = [readers[i].wait_s() for i in active]
            if waits:
                time.sleep(max(0.0, min(waits)))
            continue
        t = time.perf_counter()
        dets = run_model(model, [f.image for _, f in batch])
        ms = (time.perf_counter() - t) * 1000
        stage["model"] += ms / 1000
        t = time.perf_counter()
        for (i, frame), d in zip(batch, dets, strict=True):
            for sink in sinks[i]:
                sink.write(frame, FrameResult(frame.index, d, ms, len(batch), batches))
        stage["sinks"] += time.perf_counter() - t
        batches += 1
        frames += len(batch)
        if steady is None and time.perf_counter() - started >= cfg["warmup_s"]:
            steady = (time.process_time(), frames)
    loop_s = time.perf_counter() - started
    loop_cpu = time.process_time() - cpu0
    if steady is None or frames - steady[1] < MIN_KEPT:
        steady = (cpu0, 0)  # too short a loop: all of it
    steady_cpu = (time.process_time() - steady[0]) * 1000 / max(frames - steady[1], 1)
    for group in sinks:
        for sink in group:
            sink.close()
    for r in readers:
        r.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "frames": frames,
        "batches": batches,
        "mean_batch": round(frames / batches, 2) if batches else 0.0,
        "loop_s": round(loop_s, 3),
        "loop_cpu_s": round(loop_cpu, 2),
        # CPU per frame past the warm-up: decode + model + sinks, nothing else
        "steady_cpu_ms_per_frame": round(steady_cpu, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),  # the whole process, imports too
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "stage_ms": {k: round(v * 1000 / max(frames, 1), 2) for k, v in stage.items()},
        "skipped": sum(r.skipped for r in readers),
        "torch_threads": torch.get_num_threads(),
    }


class _NaiveReader:
    """``next()``: a Frame, None at the end, False when no frame is due yet (paced sources)."""

    fps: float = 25.0
    skipped = 0

    def next(self) -> Any:
        raise NotImplementedError

    def wait_s(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


class _SyntheticReader(_NaiveReader):
    """Renders frame k; paced (realtime) it renders the newest frame due by the clock and
    counts the ones it never got to as skipped (the naive loop's drops)."""

    def __init__(self, uri: str) -> None:
        from vsa.sources.synthetic import ShapesScene, SyntheticParams

        self.params = SyntheticParams.from_uri(uri)
        self.scene = ShapesScene(self.params)
        self.fps = self.params.fps
        self.k = -1
        self.start = time.monotonic()

    def next(self) -> Any:
        from vsa.core.frames import Frame

        p = self.params
        last = (p.frames or 10**12) - 1
        if self.k >= last:
            return None
        if p.pace:
            due = min(last, int((time.monotonic() - self.start) * p.fps))
            if due <= self.k:
                return False
            self.skipped += due - self.k - 1
            self.k = due
        else:
            self.k += 1
        t = time.perf_counter()
        image, _ = self.scene.render(self.k)
        return Frame(self.k, self.k / p.fps, time.time(), image, None, time.perf_counter() - t)

    def wait_s(self) -> float:
        return self.start + (self.k + 1) / self.params.fps - time.monotonic()


class _AvReader(_NaiveReader):
    """PyAV: a file, or an RTSP camera read in order (what a simple loop over a camera does)."""

    def __init__(self, uri: str) -> None:
        import av

        options = {"rtsp_transport": "tcp"} if uri.startswith("rtsp") else {}
        self.container = av.open(uri, options=options, timeout=(10.0, 10.0))
        stream = self.container.streams.video[0]
        self.fps = float(stream.average_rate or 25.0)
        self.frames = self.container.decode(stream)
        self.k = -1

    def next(self) -> Any:
        from vsa.core.frames import Frame

        t = time.perf_counter()
        try:
            frame = next(self.frames)
        except StopIteration:
            return None
        image = frame.to_ndarray(format="bgr24")
        self.k += 1
        return Frame(self.k, frame.time, time.time(), image, None, time.perf_counter() - t)

    def close(self) -> None:
        self.container.close()


def _naive_reader(cfg: dict[str, Any], i: int) -> _NaiveReader:
    uri = cfg["uris"][i]
    return _SyntheticReader(uri) if uri.startswith("synthetic://") else _AvReader(uri)


def run_child(kind: str, payload: dict[str, Any], what: str) -> dict[str, Any]:
    """Run ``--child kind`` in a fresh process and return the JSON it prints last. Its torch
    threads wait passively, as the inference actor's do (spinning ones would add CPU that does
    no work: the T(B) conditions would differ from the engine's, and the naive loop's CPU would
    hide the engine's overhead in the difference)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=REPO,
        env={**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_naive(cfg: Config, uris: list[str], out: Path, args: argparse.Namespace) -> dict:
    """The naive loop in a child process; its JSONL read like the engine's."""
    child = {
        "n": cfg.n,
        "uris": uris,
        "out": str(out),
        "run": f"naive-{cfg.label}",
        "model": args.model_specs[cfg.model],
        "threads": args.naive_threads,
        "duration_s": cfg.duration_s if cfg.kind == "rtsp" else 0.0,
        "warmup_s": args.warmup_s,
    }
    info = run_child("naive", child, "naive loop")
    info.update(summarize(read_results(out, [f"s{i}" for i in range(cfg.n)]), args.warmup_s))
    return info


# --- T(B): the model alone ----------------------------------------------------------------------


def tb_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Seconds per batch of B frames (best of warmed repeats; the median too), per model."""
    import torch

    torch.set_num_threads(int(cfg["threads"]))
    from vsa.config import ModelSpec
    from vsa.models import load_model, run_model
    from vsa.sources.synthetic import ShapesScene, SyntheticParams

    w, h = cfg["size"]
    scene = ShapesScene(SyntheticParams(seed=3, width=w, height=h, pace=False))
    frames = [scene.render(k)[0] for k in range(max(cfg["batches"]))]
    out: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    for name, spec in cfg["models"].items():
        model = load_model(ModelSpec.model_validate(spec))
        rows = {}
        for b in cfg["batches"]:
            run_model(model, frames[:b])  # warm this batch size
            times: list[float] = []
            spent = time.perf_counter()
            while len(times) < 3 or (
                time.perf_counter() - spent < cfg["min_s"] and len(times) < 20
            ):
                t = time.perf_counter()
                run_model(model, frames[:b])
                times.append(time.perf_counter() - t)
            best, med = min(times), statistics.median(times)
            rows[str(b)] = {  # the best repeat: the model alone, as little disturbed as it gets
                "batch_s": round(best, 5),
                "fps": round(b / best, 2),
                "ms_per_frame": round(best * 1000 / b, 2),
                "median_batch_s": round(med, 5),
                "repeats": len(times),
            }
        out[name] = rows
        del model
    return out


def measure_tb(args: argparse.Namespace) -> dict[str, Any]:
    batches = []
    b = 1
    while b <= args.max_batch:
        batches.append(b)
        b *= 2
    if batches[-1] != args.max_batch:
        batches.append(args.max_batch)
    child = {
        "threads": args.torch_threads,
        "size": SIZES["640x360"],
        "batches": batches,
        "min_s": 0.6 if args.quick else 2.0,
        "models": {m: args.model_specs[m] for m in ("builtin", "yolo", "passthrough")},
    }
    return run_child("tb", child, "T(B)")


def measure_t_after(args: argparse.Namespace, cfg: Config, mean_batch: float | None) -> dict | None:
    """T(B) of this configuration's model again, right after its runs (cameras closed), at the
    batch sizes around the mean batch the engine formed and at the run's frame size: the host's
    speed moves by up to 2x within a session, and eta_model divides by this T, measured as
    close to the engine's run as the run allows. None for the pass-through model."""
    if cfg.model == "passthrough" or not mean_batch:
        return None
    lo = max(1, math.floor(mean_batch))
    hi = min(args.max_batch, max(lo, math.ceil(mean_batch)))
    child = {
        "threads": args.torch_threads,
        "size": SIZES[cfg.size],
        "batches": sorted({lo, hi}),
        "min_s": 0.6 if args.quick else 2.0,
        "models": {cfg.model: args.model_specs[cfg.model]},
    }
    return run_child("tb", child, f"T(B) after {cfg.label}")


def t_of(tb: dict[str, Any], model: str, b: float) -> float | None:
    """T(b) in frames/s: per-batch time interpolated linearly between measured batch sizes."""
    rows = tb.get(model)
    if not rows or b <= 0:
        return None
    pts = sorted((int(k), v["batch_s"]) for k, v in rows.items())
    b = min(max(b, pts[0][0]), pts[-1][0])
    for (b0, s0), (b1, s1) in zip(pts, pts[1:], strict=False):
        if b0 <= b <= b1:
            s = s0 + (s1 - s0) * (b - b0) / (b1 - b0) if b1 > b0 else s0
            return b / s
    return pts[0][0] / pts[0][1]


# --- the engine's processes ---------------------------------------------------------------------


def _kind(cmdline: str) -> str:
    if "SourceActor" in cmdline:
        return "source"
    if "InferenceActor" in cmdline:
        return "inference"
    if "Controller" in cmdline:
        return "controller"
    return "ray"  # raylet, GCS, agents, idle workers: the cluster's own overhead


class ProcSampler:
    """Every ``period`` s: CPU seconds and RSS of every process of the local Ray cluster
    (the driver's descendants), classified by the actor class its title names."""

    def __init__(self, period: float = 0.25) -> None:
        import psutil

        self.psutil = psutil
        self.period = period
        self.lock = threading.Lock()
        self.series: dict[int, list[tuple[float, float, float]]] = {}  # pid: (t, cpu, rss MiB)
        self.kinds: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="proc-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        me = self.psutil.Process()
        while not self._stop.is_set():
            self.sample(me)
            self._stop.wait(self.period)

    def sample(self, me: Any) -> None:
        now = time.time()
        try:
            procs = me.children(recursive=True)
        except self.psutil.Error:
            return
        for p in procs:
            try:
                with p.oneshot():
                    cmd = " ".join(p.cmdline()[:2])
                    cpu = p.cpu_times()
                    rss = p.memory_info().rss / 2**20
            except self.psutil.Error:
                continue
            with self.lock:
                kind = _kind(cmd)
                if kind != "ray" or p.pid not in self.kinds:
                    self.kinds[p.pid] = kind
                self.series.setdefault(p.pid, []).append((now, cpu.user + cpu.system, rss))

    def account(self, t0: float, t1: float) -> dict[str, Any]:
        """CPU seconds in [t0, t1] and peak sampled RSS, per kind of process."""
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        count: dict[str, int] = {}
        with self.lock:
            for pid, rows in self.series.items():
                inside = [r for r in rows if t0 <= r[0] <= t1]
                if not inside:
                    continue
                before = [r for r in rows if r[0] < t0]
                base = before[-1][1] if before else 0.0  # born in the run: all its CPU counts
                kind = self.kinds.get(pid, "ray")
                cpu[kind] = cpu.get(kind, 0.0) + inside[-1][1] - base
                peak = max(r[2] for r in inside)
                rss[kind] = max(rss.get(kind, 0.0), peak)
                if kind == "source":
                    count[kind] = count.get(kind, 0) + 1
        return {
            "cpu_s": {k: round(v, 2) for k, v in sorted(cpu.items())},
            "cpu_s_total": round(sum(cpu.values()), 2),
            "peak_rss_mib": {k: round(v, 1) for k, v in sorted(rss.items())},  # max per process
            "source_processes": count.get("source", 0),
        }


# --- sources: files and cameras -------------------------------------------------------------


def make_clips(folder: Path, sizes: list[str], frames: int) -> dict[str, str]:
    from vsa.tools.make_clip import make_clip

    out = {}
    for size in sizes:
        w, h = SIZES[size]
        path = folder / f"clip_{size}_{frames}.mp4"
        if not path.exists():
            make_clip(path, seed=7, width=w, height=h, fps=25.0, frames=frames)
        out[size] = str(path)
    return out


class RtspCameras:
    """``python -m vsa.tools.flaky_rtsp`` serving ``cam0..cam{n-1}`` (640x360@15 each)."""

    def __init__(self, n: int, size: str, fps: float) -> None:
        cmd = [sys.executable, "-m", "vsa.tools.flaky_rtsp", "--port", "0"]
        cmd += ["--exit-on-stdin-eof"]
        for i in range(n):
            cmd += ["--camera", f"cam{i}={size}@{int(fps)}"]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        self.base = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("READY "):
                self.base = line.split(" ", 1)[1].strip()
                break
        if not self.base:
            self.close()
            raise RuntimeError("flaky_rtsp did not start (GStreamer RTSP server missing?)")

    def url(self, i: int) -> str:
        return f"{self.base}/cam{i}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def source_uris(cfg: Config, clips: dict[str, str], cams: RtspCameras | None) -> list[str]:
    w, h = SIZES[cfg.size]
    if cfg.kind == "synthetic":
        pace = 1 if cfg.mode == "realtime" else 0
        return [
            f"synthetic://shapes?seed={i}&width={w}&height={h}&fps={cfg.fps:g}"
            f"&frames={cfg.frames}&pace={pace}"
            for i in range(cfg.n)
        ]
    if cfg.kind == "file":
        return [clips[cfg.size]] * cfg.n
    assert cams is not None
    return [cams.url(i) for i in range(cfg.n)]


# --- one engine run -------------------------------------------------------------------------------


def run_engine(
    client: Any, cfg: Config, uris: list[str], out: Path, args: argparse.Namespace, k: int
) -> dict[str, Any]:

    from vsa.config import parse_run

    before = inference_stats()
    spec = parse_run(
        {
            "name": f"bench-{k}-{cfg.model}-{cfg.kind}-{cfg.mode}-n{cfg.n}",
            "output_dir": str(out),
            "model": args.model_specs[cfg.model],
            "batching": {"max_batch_size": args.max_batch, "max_wait_ms": args.max_wait_ms},
            "sources": [
                {"id": f"s{i}", "uri": uri, "mode": cfg.mode} for i, uri in enumerate(uris)
            ],
            "sinks": [{"type": "video"}, {"type": "jsonl"}],
        }
    )
    t0 = time.time()
    run_id = client.submit(spec, overwrite=True)["run_id"]
    if cfg.kind == "rtsp":
        time.sleep(cfg.duration_s + 2.0)  # cameras never end: stop the run
        run = client.stop(run_id, timeout_s=30)
    else:
        run = client.wait(run_id, timeout_s=args.run_timeout_s)
    t1 = time.time() + args.sampler_period  # the sampler's last look at the dying sources
    time.sleep(args.sampler_period * 1.5)
    after = inference_stats()
    b_stats = {"batches": 0, "frames": 0, "model_s": 0.0, "model_cpu_s": 0.0}
    split: dict[str, Any] = {}
    for model, totals in after.items():  # the model whose counters moved (one run at a time)
        if isinstance(totals, dict) and totals.get("frames", 0) > before.get(model, {}).get(
            "frames", 0
        ):
            b_stats = {
                key: totals.get(key, 0) - before.get(model, {}).get(key, 0) for key in b_stats
            }
            split = totals.get("split") or {}
    info: dict[str, Any] = {
        "run_id": run_id,
        "state": str(getattr(run.state, "value", run.state)),
        "wall_s": round((run.finished_at or time.time()) - run.created_at, 2),
        "frames_decoded": run.frames_decoded,
        "frames_emitted": run.frames_emitted,
        "drops": run.drops,
        "drops_stream": [dict(s.drops) for s in run.sources],
        "batches": b_stats["batches"],
        "mean_batch": round(b_stats["frames"] / b_stats["batches"], 2)
        if b_stats["batches"]
        else 0.0,
        "model_ms_per_frame": round(b_stats["model_s"] * 1000 / b_stats["frames"], 2)
        if b_stats["frames"]
        else None,
        # the model threads' own CPU in their batches (letterbox, forward, decode)
        "model_cpu_ms_per_frame": round(b_stats["model_cpu_s"] * 1000 / b_stats["frames"], 2)
        if b_stats["frames"]
        else None,
        # batches at once x threads each at the end (and what it measured, if auto)
        "model_split": "{workers}x{threads}".format(**split) if split else None,
        "thread_rates": split.get("rates"),
        "source_pids": [int(s.incarnation.split("-", 1)[0]) for s in run.sources if s.incarnation],
    }
    info.update(args.sampler.account(t0, t1))
    info.update(summarize(read_results(out, [f"s{i}" for i in range(cfg.n)]), args.warmup_s))
    if info["window"] and info["window_frames"]:  # steady state: no start-up, no imports
        steady = args.sampler.account(*info["window"])
        info["steady_cpu_ms_per_frame"] = round(
            steady["cpu_s_total"] * 1000 / info["window_frames"], 2
        )
        info["steady_cpu_ms_per_frame_kind"] = {
            k: round(v * 1000 / info["window_frames"], 2) for k, v in steady["cpu_s"].items()
        }
    info.update(read_stages(out, [f"s{i}" for i in range(cfg.n)]))
    return info


def stage_table(rows: list[dict[str, Any]]) -> str:
    """The engine's per-frame wall times, medians from its JSONL (where the latency goes), and
    the latency in batch times (the live-case targets: p50 <= 1.5x, p99 <= 3x the batch time)
    and the spread of the streams' rates ((max - min) / mean, target < 5 %)."""
    keys = ("decode_ms", "to_engine_ms", "queue_ms", "infer_ms", "back_sinks_ms")
    head = (
        f"{'engine, median wall ms per frame':<44}"
        + "".join(f"{k[:-3]:>12}" for k in keys)
        + f"{'p50/batch':>11}{'p99/batch':>11}{'spread %':>10}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        engine = row.get("engine") or {}
        if engine.get("stage_infer_ms") is None:
            continue
        cells = "".join(
            f"{'-' if engine.get('stage_' + k) is None else format(engine['stage_' + k], '.1f'):>12}"
            for k in keys
        )
        ratios = engine.get("latency_in_batches") or {}
        spread = engine.get("fps_spread_pct")
        lines.append(
            f"{row['label']:<44}{cells}{_f(ratios.get('p50'), '{:.2f}'):>11}"
            f"{_f(ratios.get('p99'), '{:.2f}'):>11}{_f(spread):>10}"
        )
    lines.append(
        "  decode: decode + BGR (or render); to_engine: decoder to the inference engine (a free\n"
        "  slot, the ring or object store, the call); queue: waiting for its batch; infer: the\n"
        "  batch; back_sinks: the rest of latency_ms (result hop, drawing, x264, JSONL);\n"
        "  p50/batch, p99/batch: latency percentiles over the median batch time (infer);\n"
        "  spread: (max - min) / mean of the streams' frames per second"
    )
    return "\n".join(lines)


def inference_stats() -> dict[str, Any]:
    """The inference actor's ``stats`` (cumulative per model name); {} before it exists."""
    import ray

    try:
        return ray.get(ray.get_actor("inference", namespace="vsa").stats.remote(), timeout=60)
    except ValueError:  # no such actor yet
        return {}


def _scrape(
    port: int | None,
    run_ids: list[str],
    timeout_s: float,
    fold: Callable[[str, dict[str, dict[str, float]]], None],
) -> dict[str, dict[str, float]]:
    """Read Ray's metrics endpoint until every run has values (the metrics agent lags a few
    seconds) or ``timeout_s``; ``fold(line, out)`` adds what one line says to ``out[run]``."""
    import urllib.request

    if not port or not run_ids:
        return {}
    deadline = time.monotonic() + timeout_s
    while True:
        out: dict[str, dict[str, float]] = {}
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        except OSError:
            text = b""
        for line in text.decode(errors="replace").splitlines():
            fold(line, out)
        if all(r in out for r in run_ids) or time.monotonic() > deadline:
            return out
        time.sleep(2.0)


def scrape_decode(port: int | None, run_ids: list[str], timeout_s: float) -> dict[str, float]:
    """Decode (or render) ms per emitted frame per run, from the ``vsa_decode_seconds``
    histogram the source actors export through Ray's metrics agent."""
    import re

    pattern = re.compile(r'^ray_vsa_decode_seconds_(sum|count)\{.*?run="([^"]+)".*?\}\s+(\S+)$')

    def fold(line: str, out: dict[str, dict[str, float]]) -> None:
        m = pattern.match(line)
        if m:
            d = out.setdefault(m.group(2), {"sum": 0.0, "count": 0.0})
            d[m.group(1)] += float(m.group(3))

    sums = _scrape(port, run_ids, timeout_s, fold)
    return {r: d["sum"] * 1000 / d["count"] for r, d in sums.items() if d["count"]}


def scrape_stream_cpu(
    port: int | None, run_ids: list[str], timeout_s: float
) -> dict[str, dict[str, float]]:
    """CPU seconds per run and stage (decode, sinks) of the emitted frames, from the
    ``vsa_stream_cpu_seconds`` counter of the source actors."""
    import re

    pattern = re.compile(r"^ray_vsa_stream_cpu_seconds_total\{(.*)\}\s+(\S+)$")

    def fold(line: str, out: dict[str, dict[str, float]]) -> None:
        m = pattern.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            run, stage = labels.get("run"), labels.get("stage")
            if run and stage:
                per_run = out.setdefault(run, {})
                per_run[stage] = per_run.get(stage, 0.0) + float(m.group(2))

    return _scrape(port, run_ids, timeout_s, fold)


# --- derived numbers, table, chart ---------------------------------------------------------------


def derive(row: dict[str, Any], tb: dict[str, Any], passthrough: dict[tuple, float]) -> None:
    e, cfg = row["engine"], row["config"]
    # T measured right after the run where there is one (``measure_t_after``), else the T(B)
    # measured at the start
    t = t_of(row.get("T_after") or tb, cfg["model"], e.get("mean_batch") or 1.0)
    t_start = t_of(tb, cfg["model"], e.get("mean_batch") or 1.0)
    row["T_at_mean_batch"] = None if t is None else round(t, 2)
    row["T_at_mean_batch_start"] = None if t_start is None else round(t_start, 2)
    row["eta_model"] = round(e["fps"] / t, 3) if t and cfg["model"] != "passthrough" else None
    ref = passthrough.get((cfg["kind"], cfg["n"], cfg["size"])) or passthrough.get(
        ("synthetic", cfg["n"], cfg["size"])
    )
    row["eta_pipe"] = round(e["fps"] / ref, 3) if ref else None
    row["eta_pipe_ref_fps"] = ref
    n = row.get("naive")
    row["speedup"] = round(e["fps"] / n["fps"], 2) if n and n.get("fps") else None
    frames = max(e.get("frames_emitted") or e["frames"], 1)
    cpu = e["cpu_s"]
    decode_ms = e.get("decode_ms_per_frame")
    src_ms = cpu.get("source", 0.0) * 1000 / frames
    e["stage_ms"] = {
        "wall_per_frame": round(1000 / e["fps"], 2) if e["fps"] else None,  # 1 / fps
        "cpu_per_frame": round(e["cpu_s_total"] * 1000 / frames, 2),  # every process, measured
        "model_wall": e.get("model_ms_per_frame"),  # measured: model thread time / frames
        "inference_cpu": round(cpu.get("inference", 0.0) * 1000 / frames, 2),  # measured
        "decode": None if decode_ms is None else round(decode_ms, 2),  # measured (histogram)
        # derived: the source actors' CPU minus decode = put, actor calls, draw, x264, JSONL
        "source_rest_derived": round(src_ms - (decode_ms or 0.0), 2),
        "ray_controller_cpu": round(
            (cpu.get("ray", 0.0) + cpu.get("controller", 0.0)) * 1000 / frames, 2
        ),
        # steady state, every process of the engine, CPU per frame
        "cpu_steady": e.get("steady_cpu_ms_per_frame"),
        # the engine's overhead: its steady CPU per frame minus the naive loop's, which does
        # the same decode, model and sinks in one process with no transport, batching,
        # bookkeeping nor Ray (same frames, same model, same outputs)
        "overhead": round(e["steady_cpu_ms_per_frame"] - n["steady_cpu_ms_per_frame"], 2)
        if n and n.get("steady_cpu_ms_per_frame") and e.get("steady_cpu_ms_per_frame")
        else None,
    }
    batch_ms = e.get("stage_infer_ms")
    e["latency_in_batches"] = (
        {
            q: round(e[f"{q}_ms"] / batch_ms, 2)
            for q in ("p50", "p99")
            if e.get(f"{q}_ms") is not None
        }
        if batch_ms
        else None
    )
    mean = e.get("fps_stream_mean")
    e["fps_spread_pct"] = (
        round(100 * (e["fps_stream_max"] - e["fps_stream_min"]) / mean, 1) if mean else None
    )
    # the engine's CPU per frame by stage, each measured in the thread that does it (thread
    # CPU time): decode (+ BGR), the model threads' batches, the sinks; the rest of the steady
    # CPU is the engine's own work plus the library threads those stages start (x264 slices,
    # FFmpeg's decoding threads, torch's helpers): an upper bound of the engine's overhead
    stream_cpu = e.get("stream_cpu_s") or {}
    emitted = max(e.get("frames_emitted") or 0, 1)
    stages = {
        "decode": stream_cpu.get("decode", 0.0) * 1000 / emitted if stream_cpu else None,
        "model": e.get("model_cpu_ms_per_frame"),
        "sinks": stream_cpu.get("sinks", 0.0) * 1000 / emitted if stream_cpu else None,
    }
    steady = e.get("steady_cpu_ms_per_frame")
    known = None if None in stages.values() or steady is None else sum(stages.values())
    kinds = e.get("steady_cpu_ms_per_frame_kind") or {}
    e["cpu_stages_ms"] = {
        **{k: None if v is None else round(v, 2) for k, v in stages.items()},
        "steady": steady,
        "rest": None if known is None else round(steady - known, 2),
        "ray_controller": round(kinds.get("ray", 0.0) + kinds.get("controller", 0.0), 2)
        if kinds
        else None,
    }


def _f(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'configuration':38} {'eng fps':>7} {'stream min/mean/max':>19} {'naive':>6} "
        f"{'xnaive':>6} {'batch':>5} {'p50/p95/p99 ms (engine)':>24} {'naive p50/p99':>14} "
        f"{'eta_m':>5} {'eta_p':>5}  drops"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        e, n = row["engine"], row.get("naive") or {}
        spread = f"{e['fps_stream_min']:.1f}/{e['fps_stream_mean']:.1f}/{e['fps_stream_max']:.1f}"
        lat = f"{_f(e['p50_ms'], '{:.0f}')}/{_f(e['p95_ms'], '{:.0f}')}/{_f(e['p99_ms'], '{:.0f}')}"
        nlat = f"{_f(n.get('p50_ms'), '{:.0f}')}/{_f(n.get('p99_ms'), '{:.0f}')}" if n else "-"
        drops = ",".join(f"{k}:{v}" for k, v in sorted(e["drops"].items())) or "0"
        if n.get("skipped"):
            drops += f" (naive skipped {n['skipped']})"
        lines.append(
            f"{row['label']:38} {e['fps']:7.1f} {spread:>19} {_f(n.get('fps')):>6} "
            f"{_f(row.get('speedup'), '{:.2f}'):>6} {e['mean_batch']:5.2f} {lat:>24} "
            f"{nlat:>14} {_f(row.get('eta_model'), '{:.2f}'):>5} "
            f"{_f(row.get('eta_pipe'), '{:.2f}'):>5}  {drops}"
        )
    return "\n".join(lines)


def cost_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'configuration':38} {'ms/frame: wall':>14} {'cpu':>6} {'steady':>6} {'naive':>5} "
        f"{'ovh':>5} {'model':>6} {'infcpu':>6} "
        f"{'decode':>6} {'src*':>6} {'ray':>5} | {'CPU s: src':>10} {'inf':>5} {'ctl+ray':>7} | "
        f"{'RSS MiB: src':>12} {'inf':>5} | {'naive ms/f: dec':>15} {'model':>6} {'sinks':>6} "
        f"{'CPU s':>6} {'RSS':>5}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        e, n = row["engine"], row.get("naive") or {}
        s, c, r = e["stage_ms"], e["cpu_s"], e["peak_rss_mib"]
        ns = n.get("stage_ms") or {}
        lines.append(
            f"{row['label']:38} {_f(s['wall_per_frame']):>14} {_f(s['cpu_per_frame']):>6} "
            f"{_f(s.get('cpu_steady')):>6} {_f(n.get('steady_cpu_ms_per_frame')):>5} "
            f"{_f(s.get('overhead')):>5} "
            f"{_f(s['model_wall']):>6} {_f(s['inference_cpu']):>6} {_f(s['decode']):>6} "
            f"{_f(s['source_rest_derived']):>6} {_f(s['ray_controller_cpu']):>5} | "
            f"{_f(c.get('source')):>10} {_f(c.get('inference')):>5} "
            f"{_f(c.get('ray', 0) + c.get('controller', 0)):>7} | "
            f"{_f(r.get('source'), '{:.0f}'):>12} {_f(r.get('inference'), '{:.0f}'):>5} | "
            f"{_f(ns.get('decode')):>15} {_f(ns.get('model')):>6} {_f(ns.get('sinks')):>6} "
            f"{_f(n.get('cpu_s')):>6} {_f(n.get('peak_rss_mib'), '{:.0f}'):>5}"
        )
    return "\n".join(lines)


def cpu_stage_table(rows: list[dict[str, Any]]) -> str:
    """The engine's steady CPU per frame by stage, and what is left: its own overhead."""
    keys = ("steady", "decode", "model", "sinks", "rest", "ray_controller")
    head = f"{'engine, CPU ms per frame by stage':<44}" + "".join(f"{k:>15}" for k in keys)
    lines = [head, "-" * len(head)]
    for row in rows:
        stages = (row.get("engine") or {}).get("cpu_stages_ms")
        if not stages:
            continue
        lines.append(f"{row['label']:<44}" + "".join(f"{_f(stages.get(k)):>15}" for k in keys))
    lines.append(
        "  steady: every engine process past warm-up; decode (+ BGR or render), model (letterbox,\n"
        "  forward, output decoding) and sinks (draw, x264, JSONL): CPU time of the thread that\n"
        "  does each; rest = steady - the three: frames to and from inference, batching,\n"
        "  bookkeeping, Ray's daemons and the controller (ray_controller: their part), and the\n"
        "  library threads the stages start (x264 slices, FFmpeg decoding threads, torch helpers),\n"
        "  so rest is an upper bound of the engine's own overhead (scripts/cpu_by_thread.py)"
    )
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = report["rows"]
    fig, ax = plt.subplots(2, 2, figsize=(13, 9))
    series: dict[str, list[tuple[int, float, float | None]]] = {}
    for row in rows:
        c = row["config"]
        key = f"{c['model']} {c['kind']} {c['mode']} {c['size']}"
        n = row.get("naive") or {}
        series.setdefault(key, []).append((c["n"], row["engine"]["fps"], n.get("fps")))
    for i, (key, pts) in enumerate(sorted(series.items())):
        pts.sort()
        colour = f"C{i % 10}"
        ax[0, 0].plot(
            [p[0] for p in pts], [p[1] for p in pts], "o-", color=colour, label=f"engine {key}"
        )
        naive = [(p[0], p[2]) for p in pts if p[2] is not None]
        if naive:
            ax[0, 0].plot(
                [p[0] for p in naive],
                [p[1] for p in naive],
                "x--",
                color=colour,
                label=f"naive {key}",
            )
    ax[0, 0].set(xscale="log", xlabel="streams N", ylabel="frames/s (all streams)")
    ax[0, 0].set_title("throughput: engine (solid) vs naive loop (dashed)")
    ax[0, 0].legend(fontsize=6)
    main = [
        r for r in rows if r["config"]["model"] == "builtin" and r["config"]["kind"] == "synthetic"
    ]
    for mode in ("lossless", "realtime"):
        sel = sorted(
            (r for r in main if r["config"]["mode"] == mode), key=lambda r: r["config"]["n"]
        )
        sel = [r for r in sel if r["config"]["size"] == "640x360"]
        if not sel:
            continue
        a = ax[0, 1] if mode == "lossless" else ax[1, 0]
        xs = [r["config"]["n"] for r in sel]
        for q, style, colour in (
            ("p50_ms", "o-", "C0"),
            ("p95_ms", "s-", "C1"),
            ("p99_ms", "^-", "C3"),
        ):
            a.plot(xs, [r["engine"][q] for r in sel], style, color=colour, label=f"engine {q[:3]}")
            a.plot(
                xs,
                [(r.get("naive") or {}).get(q) for r in sel],
                style.replace("-", "--"),
                color=colour,
                label=f"naive {q[:3]}",
            )
        a.set(xscale="log", yscale="log", xlabel="streams N", ylabel="capture to result (ms)")
        a.set_title(f"latency, builtin model, synthetic 640x360, {mode}")
        a.legend(fontsize=7)
    tb = report["T_of_B"]
    for m in ("builtin", "yolo", "passthrough"):
        if m in tb:
            bs = sorted(int(b) for b in tb[m])
            ax[1, 1].plot(bs, [tb[m][str(b)]["fps"] for b in bs], "o-", label=f"T(B) {m}")
    ax[1, 1].set(xscale="log", yscale="log", xlabel="batch B", ylabel="frames/s, model alone")
    ax[1, 1].set_title(f"T(B), {tb.get('torch_threads')} torch thread(s)")
    ax[1, 1].legend(fontsize=7)
    for a in (ax[0, 0], ax[0, 1], ax[1, 0], ax[1, 1]):
        a.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        a.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.suptitle(report["title"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main -----------------------------------------------------------------------------------------


def capacity(
    client: Any, args: argparse.Namespace, out: Path, k0: int
) -> tuple[int, list[dict[str, Any]]]:
    """Largest N of 15 fps realtime synthetic streams all >= 14 fps with p99 < 500 ms."""
    probes = []
    best = 0
    dur = 8.0 if args.quick else 20.0
    cap = args.capacity_max or (3 if args.quick else 32)
    for n in range(1, cap + 1):
        cfg = Config(
            "synthetic",
            n,
            "640x360",
            "realtime",
            "builtin",
            int(CAPACITY_FPS * dur),
            dur,
            naive=False,
            group="capacity",
        )
        uris = source_uris(cfg, {}, None)
        e = run_engine(client, cfg, uris, out / f"capacity_n{n}", args, k0 + n)
        p99s = [p for p in e["p99_ms_stream"] if p is not None]
        ok = (
            len(p99s) == n
            and e["fps_stream_min"] >= CAPACITY_MIN_FPS
            and max(p99s) < CAPACITY_MAX_P99_MS
        )
        probes.append(
            {
                "n": n,
                "ok": ok,
                **{
                    k: e[k]
                    for k in (
                        "fps",
                        "fps_stream",
                        "p99_ms_stream",
                        "p50_ms",
                        "p99_ms",
                        "drops",
                        "mean_batch",
                    )
                },
            }
        )
        print(
            f"  capacity N={n}: per-stream fps min {e['fps_stream_min']:.1f}, worst p99 "
            f"{max(p99s) if p99s else float('nan'):.0f} ms -> {'ok' if ok else 'FAIL'}",
            flush=True,
        )
        if not ok:
            break
        best = n
    return best, probes


def _transport() -> str:
    """How the engine's frames travel (``VSA_TRANSPORT``, inherited by the cluster's workers)."""
    from vsa.settings import transport

    return transport()


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="~3-5 min on 2 cores: synthetic + file, 640x360, N = 1, 2, 4",
    )
    p.add_argument(
        "--rtsp", action="store_true", help="add live RTSP cameras (always in full mode)"
    )
    p.add_argument(
        "--n", type=int, nargs="+", help="stream counts (default: 1 2 4 quick, 1 2 4 8 16 full)"
    )
    p.add_argument(
        "--out", default="out/bench/bench.json", help="JSON report; the PNG goes next to it"
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="VSA_TORCH_THREADS of the engine (default: the engine's own, auto: every CPU)",
    )
    p.add_argument(
        "--naive-threads",
        type=int,
        default=None,
        help="torch threads of the naive loop (default: the engine's VSA_TORCH_THREADS)",
    )
    p.add_argument(
        "--max-batch", type=int, default=8, help="batching.max_batch_size (T(B) goes up to it)"
    )
    p.add_argument("--max-wait-ms", type=float, default=20.0, help="batching.max_wait_ms")
    p.add_argument(
        "--warmup-s",
        type=float,
        default=1.0,
        help="per stream, frames captured in the first S s are not counted",
    )
    p.add_argument(
        "--capacity-max",
        type=int,
        default=None,
        help="largest N the capacity search tries (quick: 3)",
    )
    p.add_argument("--no-capacity", action="store_true", help="skip the capacity search")
    p.add_argument(
        "--delivery",
        action="store_true",
        help="add the delivery cases: realtime cameras beside lossless files (shares against "
        "max-min fair shares, scripts/bench_mixed.py) and a bursty live stream against the "
        "same stream delivered smoothly (scripts/bench_bursty.py); ~6 min",
    )
    p.add_argument(
        "--delivery-only", action="store_true", help="only the delivery cases (implies --delivery)"
    )
    p.add_argument(
        "--analytics",
        action="store_true",
        help="add the cost of scene analytics: CPU per frame of the tracker and of 2 lines and "
        "2 zones at 20 objects (scripts/bench_analytics.py, no Ray; ~10 s)",
    )
    p.add_argument(
        "--analytics-only",
        action="store_true",
        help="only the analytics cost (implies --analytics)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        metavar="TEXT",
        help="keep the configurations whose label contains one of these (e.g. yolo/rtsp)",
    )
    p.add_argument(
        "--keep-outputs",
        action="store_true",
        help="keep the MP4/JSONL of every run next to the JSON",
    )
    p.add_argument("--run-timeout-s", type=float, default=1800.0)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("payload", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        fn = {"naive": naive_child, "tb": tb_child}[args.child]
        print(json.dumps(fn(json.loads(args.payload))))
        return 0

    started = time.monotonic()
    if args.delivery_only:
        return delivery_only(args)
    if args.analytics_only:
        return analytics_only(args)
    if args.torch_threads is None:
        # the engine's own choice (VSA_TORCH_THREADS, default auto: measured while it runs);
        # T(B) and the naive loop get every CPU (auto's most)
        from vsa.settings import torch_threads

        args.engine_threads = os.environ.get("VSA_TORCH_THREADS", "auto")
        args.torch_threads = torch_threads()
    else:
        args.engine_threads = str(args.torch_threads)
        os.environ["VSA_TORCH_THREADS"] = str(args.torch_threads)  # the workers inherit it
    if args.naive_threads is None:
        args.naive_threads = args.torch_threads
    args.sampler_period = 0.25
    out_json = Path(args.out)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    configs = plan(args)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=out_json.parent))
    print(
        f"vsa benchmark ({'quick' if args.quick else 'full'}): {len(configs)} configurations, "
        f"VSA_TORCH_THREADS={args.engine_threads}, VSA_TRANSPORT={_transport()}, "
        f"outputs under {work}",
        flush=True,
    )

    models = build_models(work / "models")
    args.model_specs = {m: model_spec(m, models) for m in ("builtin", "yolo", "passthrough")}
    print(
        f"YOLOv8n-size network: {models['yolo']['params']:,} parameters, "
        f"{models['yolo']['gflops_640']} GFLOPs at 640x640",
        flush=True,
    )
    t = time.monotonic()
    tb = measure_tb(args)
    print(
        f"T(B) measured in {time.monotonic() - t:.0f} s: "
        + "; ".join(
            f"{m} " + " ".join(f"B{b}={v['fps']:.1f}" for b, v in tb[m].items())
            for m in ("builtin", "yolo", "passthrough")
        ),
        flush=True,
    )

    clip_frames = max((c.frames for c in configs if c.kind == "file"), default=0)
    clips = (
        make_clips(
            work / "clips", sorted({c.size for c in configs if c.kind == "file"}), clip_frames
        )
        if clip_frames
        else {}
    )

    import ray

    from vsa.client import Client

    # a private state directory: a benchmark's runs are never resumed by a later engine
    os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
    ray.init(address="local", namespace="vsa", include_dashboard=False, log_to_driver=False)
    rows: list[dict[str, Any]] = []
    capacity_n, probes = None, []
    try:
        metrics_port = getattr(ray._private.worker.global_worker.node, "metrics_export_port", None)
        args.sampler = ProcSampler(args.sampler_period)
        args.sampler.start()
        client = Client()
        for k, cfg in enumerate(configs):
            t = time.monotonic()
            cams = RtspCameras(cfg.n, cfg.size, cfg.fps) if cfg.kind == "rtsp" else None
            try:
                uris = source_uris(cfg, clips, cams)
                eng = run_engine(client, cfg, uris, work / f"r{k}" / "engine", args, k)
                naive = run_naive(cfg, uris, work / f"r{k}" / "naive", args) if cfg.naive else None
            finally:
                if cams is not None:
                    cams.close()
            t_after = measure_t_after(args, cfg, eng.get("mean_batch"))
            rows.append(
                {"label": cfg.label, "config": asdict(cfg), "engine": eng, "naive": naive,
                 "T_after": t_after}
            )  # fmt: skip
            print(
                f"[{k + 1}/{len(configs)}] {cfg.label}: engine {eng['fps']:.1f} fps"
                + (f", naive {naive['fps']:.1f} fps" if naive else "")
                + f" ({time.monotonic() - t:.0f} s)",
                flush=True,
            )
        if not args.no_capacity:
            print("capacity search (15 fps realtime synthetic 640x360, builtin):", flush=True)
            capacity_n, probes = capacity(client, args, work, len(configs) + 1)
        delivery = delivery_section() if args.delivery else None
        decode = scrape_decode(metrics_port, [r["engine"]["run_id"] for r in rows], 20.0)
        stream_cpu = scrape_stream_cpu(metrics_port, [r["engine"]["run_id"] for r in rows], 20.0)
        for row in rows:
            row["engine"]["decode_ms_per_frame"] = decode.get(row["engine"]["run_id"])
            row["engine"]["stream_cpu_s"] = stream_cpu.get(row["engine"]["run_id"])
    finally:
        args.sampler.stop() if hasattr(args, "sampler") else None
        ray.shutdown()

    passthrough = {
        (r["config"]["kind"], r["config"]["n"], r["config"]["size"]): r["engine"]["fps"]
        for r in rows
        if r["config"]["model"] == "passthrough"
    }
    for row in rows:
        derive(row, tb, passthrough)
    elapsed = time.monotonic() - started
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = {
        "title": f"vsa bench ({'quick' if args.quick else 'full'}) {when}, {os.cpu_count()} CPUs, "
        f"VSA_TORCH_THREADS={args.engine_threads}, VSA_TRANSPORT={_transport()}, "
        "T(B) and naive torch threads "
        f"{args.torch_threads}/{args.naive_threads}",
        "date": when,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "mode": "quick" if args.quick else "full",
        "elapsed_s": round(elapsed, 1),
        "host": {"cpus": os.cpu_count(), "gpu": _gpu_name()},
        "torch_threads_engine": args.engine_threads,
        "transport": _transport(),
        "torch_threads_tb": args.torch_threads,
        "batching": {"max_batch_size": args.max_batch, "max_wait_ms": args.max_wait_ms},
        "warmup_s": args.warmup_s,
        "models": {
            "yolo": {
                **models["yolo"],
                "ms_per_image_b1": tb["yolo"]["1"]["ms_per_frame"],
                "ms_per_image_bmax": tb["yolo"][str(args.max_batch)]["ms_per_frame"],
            },
            "passthrough": models["passthrough"],
        },
        "T_of_B": tb,
        "rows": rows,
        "capacity": {
            "streams": capacity_n,
            "criterion": f"every stream >= {CAPACITY_MIN_FPS:g} fps and p99 < {CAPACITY_MAX_P99_MS:g} ms "
            f"({CAPACITY_FPS:g} fps realtime synthetic 640x360, builtin model)",
            "probes": probes,
        },
        "delivery": delivery,
        "analytics": analytics_section() if args.analytics else None,
    }
    out_json.write_text(json.dumps(report, indent=1, default=str))
    png = out_json.with_suffix(".png")
    chart(report, png)
    if not args.keep_outputs:
        import shutil

        shutil.rmtree(work / "models", ignore_errors=True)
        for child in work.iterdir():
            shutil.rmtree(child, ignore_errors=True)
        work.rmdir()

    print()
    print(report["title"])
    print(
        f"YOLOv8n-size network: {models['yolo']['params']:,} params, {models['yolo']['gflops_640']} GFLOPs, "
        f"{tb['yolo']['1']['ms_per_frame']:.0f} ms/image at B=1, "
        f"{tb['yolo'][str(args.max_batch)]['ms_per_frame']:.0f} at B={args.max_batch}"
    )
    print(
        "T(B) frames/s: "
        + "; ".join(
            f"{m} " + " ".join(f"{b}:{v['fps']:.1f}" for b, v in tb[m].items())
            for m in ("builtin", "yolo", "passthrough")
        )
    )
    print()
    print(table(rows))
    print()
    print(cost_table(rows))
    print(
        "  model = model-thread wall time per frame; infcpu, ray = CPU of the inference actor, of\n"
        "  the controller + Ray's own processes; src* = source actors' CPU minus decode (derived)\n"
        "  cpu = every engine process's CPU over the whole run (start-up and imports included);\n"
        "  steady = the same past the warm-up, in the window every stream produces; naive = the\n"
        "  loop's CPU per frame past its warm-up; ovh = steady - naive: the engine's overhead"
    )
    print()
    print(stage_table(rows))
    print()
    print(cpu_stage_table(rows))
    print(
        "\nengine model split at the end of each run, batches at once x torch threads each "
        "(frames per busy second measured):\n"
        + "\n".join(
            f"  {r['label']}: {r['engine'].get('model_split')} {r['engine'].get('thread_rates') or ''}"
            for r in rows
            if r.get("engine")
        )
    )
    print()
    if capacity_n is not None:
        print(
            f"stream capacity: {capacity_n} streams ({report['capacity']['criterion']}"
            + (f", search capped at {args.capacity_max or 3}" if args.quick else "")
            + ")"
        )
    print(f"wrote {out_json} and {png} in {elapsed / 60:.1f} min")
    return 0


def delivery_section() -> dict[str, Any]:
    """The delivery cases on the connected Ray session (docs/performance.md, "Delivery")."""
    from scripts.bench_bursty import run_bursty
    from scripts.bench_bursty import table as bursty_table
    from scripts.bench_mixed import delivery_cases
    from vsa.client import Client

    print("delivery: realtime cameras beside lossless files (builtin model)", flush=True)
    mixed = delivery_cases()
    print("delivery: a bursty live stream against the same stream delivered smoothly", flush=True)
    bursty = run_bursty(Client(), hls=True, unpaced=True)
    print(bursty_table(bursty), flush=True)
    return {"mixed": mixed, "bursty": bursty}


def analytics_section() -> dict[str, Any]:
    """The tracker's and the counters' CPU per frame (docs/analytics.md, Cost)."""
    from scripts.bench_analytics import run as run_analytics
    from scripts.bench_analytics import table as analytics_table

    report = run_analytics()
    print(analytics_table(report), flush=True)
    return report


def analytics_only(args: argparse.Namespace) -> int:
    report = analytics_section()
    out_json = Path(args.out)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({"analytics": report}, indent=1))
    print(f"wrote {out_json}")
    return 0 if report["meets_target"] else 1


def delivery_only(args: argparse.Namespace) -> int:
    import ray

    os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
    ray.init(address="local", namespace="vsa", include_dashboard=False, log_to_driver=False)
    try:
        report = delivery_section()
    finally:
        ray.shutdown()
    out_json = Path(args.out)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {out_json}")
    mixed_ok = all(case["meets_target"] for case in report["mixed"])
    return 0 if mixed_ok and report["bursty"]["passed"] else 1


def _gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    raise SystemExit(main())
