"""YOLO-layout output decoding: the engine's batch decoding against the plain per-frame way.

The plain way takes every candidate's best class with ``max`` (values and indices) over the
transposed [N, C] output of each frame, then thresholds. The engine takes the best score of
the whole batch with one ``amax`` over [B, C, N] and finds the class only for the candidates
above the threshold (``TorchScriptYolo.postprocess``; the same detections,
``tests/component/test_yolo.py``). CPU ms per frame, one torch thread, best of ``--repeats``,
the two alternating, for an all-zero output (the pass-through model: nothing passes) and a
busy one (300 candidates per frame pass, then NMS):

    python scripts/bench_decode.py [--batch 8] [--classes 80] [--repeats 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsa.core.detections import Letterbox  # noqa: E402
from vsa.models.base import Batch  # noqa: E402
from vsa.models.yolo import TorchScriptYolo  # noqa: E402


def plain_scores(preds: torch.Tensor, nc: int, threshold: float) -> list[torch.Tensor]:
    """The candidate selection as it was: per frame, max with indices over [N, C]."""
    out = []
    for p in preds:
        p = p.float().transpose(0, 1)
        score, cls = p[:, 4 : 4 + nc].max(1)
        out.append(p[score > threshold])
    return out


def engine_scores(preds: torch.Tensor, nc: int, threshold: float) -> list[torch.Tensor]:
    """The candidate selection now (``TorchScriptYolo.postprocess`` and ``_decode_one``)."""
    above = preds[:, 4 : 4 + nc].amax(1).float() > threshold
    out = []
    for p, keep in zip(preds, above, strict=True):
        p = p[:, keep].float().transpose(0, 1)
        p[:, 4 : 4 + nc].max(1)
        out.append(p)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    b, nc = args.batch, args.classes
    model = TorchScriptYolo.__new__(TorchScriptYolo)  # decoding only: no file to load
    model.classes = [f"c{i}" for i in range(nc)]
    model.score_threshold, model.iou_threshold, model.max_detections = 0.25, 0.45, 300
    model._keep, model.task, model.input_size = None, "detect", (640, 640)
    batch = Batch(torch.empty(0), [Letterbox(1.0, 0, 140, 360, 640)] * b)
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(b, nc, 8400, generator=g) * 0.2  # below the threshold (0.25)
    for i in range(b):  # 300 candidates per frame above it, as a busy scene's raw output has
        cand = torch.randperm(8400, generator=g)[:300]
        cls = torch.randint(0, nc, (300,), generator=g)
        scores[i, cls, cand] = 0.3 + 0.6 * torch.rand(300, generator=g)
    boxes = torch.rand(b, 4, 8400, generator=g) * torch.tensor([640, 640, 80, 80]).view(1, 4, 1)
    outputs = {
        "zeros (pass-through)": torch.zeros(b, 4 + nc, 8400),
        "300 above threshold": torch.cat([boxes, scores], 1),
    }
    print(
        f"B = {b}, {nc} classes, 8400 candidates, 1 torch thread; CPU ms per frame, best of {args.repeats}"
    )
    for name, preds in outputs.items():
        ways = {
            "plain": lambda p=preds: plain_scores(p, nc, 0.25),
            "engine": lambda p=preds: engine_scores(p, nc, 0.25),
            "whole": lambda p=preds: model.postprocess(p, batch),
        }
        best = dict.fromkeys(ways, float("inf"))
        with torch.inference_mode():
            for _ in range(args.repeats):
                for way, fn in ways.items():
                    started = time.thread_time()
                    fn()
                    best[way] = min(best[way], time.thread_time() - started)
        plain, engine, whole = (1000 * best[w] / b for w in ways)
        print(f"  {name:22} selection: plain {plain:6.3f}, engine {engine:6.3f} (x{plain / engine:.1f}); "
              f"the engine's whole decode (+ NMS, mapping) {whole:6.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
