"""Engine throughput against a hand-written single-process loop on the same work.

Both paths render the same synthetic frames, run the same built-in model in batches,
draw the overlays, encode H.264 MP4 and write JSONL. The loop is what a user would write
with OpenCV + torch in one process; the engine adds actors, the object store and
per-stream parallelism. Prints both rates and their ratio, measured in the same run.

    python scripts/bench_engine.py [--sources 4] [--frames 150] [--width 640] [--height 360]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from vsa.config import JsonlSinkSpec, ModelSpec, VideoSinkSpec, parse_run
from vsa.models import load_model
from vsa.models.base import run_model
from vsa.sinks import FrameResult, open_sinks
from vsa.sources.base import Frame
from vsa.sources.synthetic import ShapesScene, SyntheticParams


def in_process(args: argparse.Namespace, out: Path) -> float:
    model = load_model(ModelSpec(device="cpu"))  # the model `builtin` loads in the engine
    scenes = [
        ShapesScene(SyntheticParams(seed=s, width=args.width, height=args.height, pace=False))
        for s in range(args.sources)
    ]
    sinks = [
        open_sinks(
            [VideoSinkSpec(type="video"), JsonlSinkSpec(type="jsonl")], out, "bench", f"s{s}", 25.0
        )
        for s in range(args.sources)
    ]
    started = time.perf_counter()
    for k in range(args.frames):
        frames = [Frame(k, k / 25, time.time(), scene.render(k)[0]) for scene in scenes]
        for i in range(0, len(frames), args.batch):
            chunk = frames[i : i + args.batch]
            t = time.perf_counter()
            dets = run_model(model, [f.image for f in chunk])
            ms = (time.perf_counter() - t) * 1000
            for j, (frame, d) in enumerate(zip(chunk, dets, strict=True)):
                for sink in sinks[i + j]:
                    sink.write(frame, FrameResult(k, d, ms, len(chunk)))
    for group in sinks:
        for sink in group:
            sink.close()
    return args.sources * args.frames / (time.perf_counter() - started)


def engine(args: argparse.Namespace, out: Path) -> tuple[float, dict]:
    import ray

    from vsa.client import Client

    if args.address:
        client = Client(address=args.address)
    else:
        # a private state directory: a benchmark's runs are never resumed by a later engine
        os.environ.setdefault("VSA_STATE_DIR", tempfile.mkdtemp(prefix="vsa-state-"))
        ray.init(address="local", namespace="vsa", include_dashboard=False, log_to_driver=False)
        client = Client()
    spec = parse_run(
        {
            "name": f"bench-{int(time.time())}",
            "output_dir": str(out),
            "batching": {"max_batch_size": args.batch, "max_wait_ms": 20},
            "sources": [
                {
                    "id": f"s{s}",
                    "uri": f"synthetic://shapes?seed={s}&width={args.width}&height={args.height}"
                    f"&frames={args.frames}&pace=0",
                }
                for s in range(args.sources)
            ],
        }
    )
    run_id = client.submit(spec, overwrite=True)["run_id"]  # the last benchmark's files
    run = client.wait(run_id, timeout_s=1800)
    assert run.state == "FINISHED", run
    emitted = run.frames_emitted
    assert emitted == args.sources * args.frames, run
    stats = ray.get(ray.get_actor("inference", namespace="vsa").stats.remote())
    stats.pop("loaded", None)
    return emitted / (run.finished_at - run.created_at), stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=4)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--address", help="use a running cluster instead of an in-process one")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = in_process(args, Path(tmp) / "loop")
        fps, stats = engine(args, Path(tmp) / "engine")
    print(
        f"work: {args.sources} streams x {args.frames} frames, {args.width}x{args.height}, batch {args.batch}"
    )
    print(f"single-process loop : {base:7.1f} frames/s")
    print(f"vsa engine          : {fps:7.1f} frames/s  (ratio engine/loop {fps / base:.2f})")
    for name, s in stats.items():
        if "batches" not in s:  # an engine that served no batch (its health only)
            continue
        print(
            f"inference {name}: {s['batches']} batches, mean batch {s['mean_batch']}, model {s['model_s']} s"
        )


if __name__ == "__main__":
    main()
