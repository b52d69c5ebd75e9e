"""GPU check: the built-in model and a YOLO-layout TorchScript model on CUDA vs CPU, and throughput.

Needs only torch (with CUDA), numpy and OpenCV: copy `vsa/` and this script to the GPU
host (no Ray, no PyAV, no pydantic). Finishes in well under 5 minutes.

    PYTHONPATH=. python scripts/gpu_check.py [--yolo model.torchscript --classes 80] [--seconds 2]

Without a CUDA device it reports CPU throughput only and says so. Exit code 1 when CUDA
and CPU disagree.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsa.models.base import Detection, letterbox_batch, run_model  # noqa: E402
from vsa.models.builtin import BuiltinModel  # noqa: E402
from vsa.models.yolo import TorchScriptYolo  # noqa: E402
from vsa.sources.synthetic import ShapesScene, SyntheticParams  # noqa: E402
from vsa.testing.toy import export_toy  # noqa: E402

BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def frames(n: int) -> list[np.ndarray]:
    out = []
    for i, (w, h) in enumerate([(640, 360), (1280, 720), (360, 640), (1920, 1080)] * (n // 4 + 1)):
        scene = ShapesScene(SyntheticParams(seed=100 + i, width=w, height=h, objects=5, pace=False))
        out.append(scene.render(i)[0])
    return out[:n]


def yolo(path: Path, device: torch.device, nc: int, half: bool = False) -> TorchScriptYolo:
    spec = SimpleNamespace(path=str(path), task="detect", input_size=(640, 640), score_threshold=0.6,
                           iou_threshold=0.45, max_detections=300, half=half, classes=None, class_filter=None)  # fmt: skip
    model = TorchScriptYolo(spec, device)
    model.warmup()
    return model


def agreement(a: list[list[Detection]], b: list[list[Detection]], tol_px: float) -> tuple[int, int]:
    """(matched, total): same label and every box edge within tol_px, greedy in score order."""
    matched = total = 0
    for da, db in zip(a, b, strict=True):
        total += max(len(da), len(db))
        free = list(db)
        for d in da:
            for e in free:
                if (
                    d.label == e.label
                    and max(abs(x - y) for x, y in zip(d.box, e.box, strict=True)) <= tol_px
                ):
                    free.remove(e)
                    matched += 1
                    break
    return matched, total


def throughput(model, images: list[np.ndarray], seconds: float) -> dict[int, float]:
    out = {}
    for bs in BATCH_SIZES:
        batch = (images * (bs // len(images) + 1))[:bs]
        run_model(model, batch)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            run_model(model, batch)
            n += bs
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        out[bs] = n / (time.perf_counter() - started)
    return out


def upload_ab(device: torch.device, seconds: float) -> list[str]:
    """Preprocessing alone, 16 frames of 1280x720 into 640x640: each frame converted and sent
    on its own against one staging buffer and one transfer (the default on CUDA), alternating
    twice; the same tensor both ways is checked first."""
    batch = [ShapesScene(SyntheticParams(seed=i, width=1280, height=720, pace=False)).render(i)[0]
             for i in range(16)]  # fmt: skip
    plain = letterbox_batch(batch, (640, 640), device, staged=False).tensor
    staged = letterbox_batch(batch, (640, 640), device, staged=True).tensor
    same = torch.equal(plain, staged)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for mode in (False, True, False, True):
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            letterbox_batch(batch, (640, 640), device, staged=mode)
            n += len(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates[mode].append(n / (time.perf_counter() - started))
    return [
        f"preprocess {device.type} 16x1280x720 -> 640x640, frames/s: per frame "
        + " / ".join(f"{r:.0f}" for r in rates[False])
        + ", staged "
        + " / ".join(f"{r:.0f}" for r in rates[True])
        + f" ({'same tensor' if same else 'TENSORS DIFFER'})"
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--yolo", type=Path, help="a YOLO-layout TorchScript detect model (default: a toy one)"
    )
    p.add_argument(
        "--classes", type=int, default=80, help="class count of --yolo (names embedded or class<i>)"
    )
    p.add_argument("--seconds", type=float, default=2.0, help="per throughput point")
    args = p.parse_args()
    cuda = torch.cuda.is_available()
    print(
        f"torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name(0) if cuda else 'NO (CPU only)'}"
    )
    images = frames(8)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        path = args.yolo or export_toy(Path(tmp) / "toy.torchscript", nc=args.classes)
        cpu = torch.device("cpu")
        models = {"builtin": BuiltinModel(cpu), "yolo": yolo(path, cpu, args.classes)}
        if cuda:
            gpu = torch.device("cuda")
            on_gpu = {"builtin": BuiltinModel(gpu), "yolo": yolo(path, gpu, args.classes)}
            on_gpu["builtin"].warmup()
            for name in models:
                matched, total = agreement(
                    run_model(models[name], images), run_model(on_gpu[name], images), 1.5
                )
                ratio = matched / total if total else 1.0
                good = ratio >= 0.95
                ok &= good
                print(
                    f"{name}: CPU vs CUDA detections agree {matched}/{total} ({ratio:.1%}) {'OK' if good else 'MISMATCH'}"
                )
            models = {
                **{f"{k} cuda": v for k, v in on_gpu.items()},
                "yolo cuda fp16": yolo(path, gpu, args.classes, True),
            }
        else:
            print("no CUDA device: skipping the CPU/CUDA comparison; throughput below is CPU")
        print(
            "frames/s by batch size (frames of 640x360 .. 1920x1080, preprocessing on the device included)"
        )
        print(f"{'model':<18}" + "".join(f"{bs:>9}" for bs in BATCH_SIZES))
        for name, model in models.items():
            rates = throughput(model, images, args.seconds)
            print(f"{name:<18}" + "".join(f"{rates[bs]:>9.1f}" for bs in BATCH_SIZES))
        for line in upload_ab(torch.device("cuda" if cuda else "cpu"), args.seconds):
            print(line)
            ok &= "DIFFER" not in line
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
