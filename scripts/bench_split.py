"""The model alone on the CPU: one batch at a time on every core against several batches at
once on fewer threads each (what ``VSA_MODEL_WORKERS`` / ``vsa.inference.threads`` choose).

    python scripts/bench_split.py                       # YOLOv8n-size model, B = 2, 12 s each
    python scripts/bench_split.py --model builtin --batch 4
    python scripts/bench_split.py --cameras 4           # beside 4 RTSP cameras being decoded

Every split is measured twice, alternating, in one process (torch threads wait passively, as
in the inference actor); prints frames/s per split and the ratio to 1 x all cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("yolo", "builtin", "passthrough"), default="yolo")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--cameras", type=int, default=0, help="decode N RTSP cameras meanwhile")
    args = p.parse_args()

    import tempfile

    import bench
    import torch

    from vsa.config import ModelSpec
    from vsa.inference.threads import Split, splits
    from vsa.models import load_model, run_model
    from vsa.settings import available_cpus
    from vsa.sources.synthetic import ShapesScene, SyntheticParams

    models = bench.build_models(Path(tempfile.mkdtemp(prefix="bench-split-")))
    model = load_model(ModelSpec.model_validate(bench.model_spec(args.model, models)))
    scene = ShapesScene(SyntheticParams(seed=3, width=640, height=360, pace=False))
    frames = [scene.render(k)[0] for k in range(args.batch)]
    cams = None
    if args.cameras:
        import av

        cams = bench.RtspCameras(args.cameras, "640x360", 15)

        def read(url: str) -> None:
            for _ in av.open(url, options={"rtsp_transport": "tcp"}).decode(video=0):
                pass

        for i in range(args.cameras):
            threading.Thread(target=read, args=(cams.url(i),), daemon=True).start()
        time.sleep(3)

    def worker(split: Split, stop: float, counts: list[int], k: int) -> None:
        torch.set_num_threads(split.threads)
        while time.monotonic() < stop:
            run_model(model, frames)
            counts[k] += len(frames)

    cpus = available_cpus()
    candidates = splits(cpus)
    results: dict[Split, list[float]] = {c: [] for c in candidates}
    run_model(model, frames)  # warm
    for _ in range(2):
        for split in candidates:
            counts = [0] * split.workers
            stop = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=worker, args=(split, stop, counts, k))
                for k in range(split.workers)
            ]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            results[split].append(sum(counts) / (time.monotonic() - t0))
    base = max(results[Split(1, cpus)])
    print(
        f"{args.model}, B = {args.batch}, {cpus} CPUs"
        + (f", {args.cameras} RTSP cameras decoded meanwhile" if args.cameras else "")
    )
    for split, fps in results.items():
        print(
            f"  {split.workers} batch(es) at once x {split.threads} thread(s): "
            + " / ".join(f"{f:.2f}" for f in fps)
            + f" frames/s  (best x{max(fps) / base:.2f} of 1 x {cpus})"
        )
    if cams is not None:
        cams.close()
    os._exit(0)  # the camera reader threads block in PyAV


if __name__ == "__main__":
    raise SystemExit(main())
