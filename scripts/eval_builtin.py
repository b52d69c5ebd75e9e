"""Accuracy of the built-in models on fresh H.264 clips the training never saw.

    .venv/bin/python scripts/eval_builtin.py                    # 8 clips x 60 frames
    .venv/bin/python scripts/eval_builtin.py --frames 20 --weights /tmp/other.pt

Clips: scene seeds 90001..90008 (training uses 1000..1999), 640x360, 1280x720,
960x540, 640x480, 480x270 and two portrait sizes (360x640, 720x1280), 3..6 objects,
written by ``vsa.tools.make_clip.make_clip`` at crf 23 and decoded with PyAV. For each
decoded frame k the detections are matched with ``ShapesScene`` ground truth of frame
k (greedy, same label, box IoU >= 0.5; ground-truth objects under 300 visible pixels
are ignored both ways): see ``vsa.tools.evaluate`` for the exact rules.
Compares ``ShapesModel`` (builtin-shapes-v1, trained) with the hand-built
``BuiltinModel`` (builtin-shapes-v0).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsa.models.builtin import BuiltinModel  # noqa: E402
from vsa.models.shapenet import ShapesModel  # noqa: E402
from vsa.tools.evaluate import EVAL_SPECS, evaluate, make_eval_clips  # noqa: E402

__all__ = ["evaluate", "main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60, help="frames per clip")
    p.add_argument("--crf", type=int, default=23)
    p.add_argument(
        "--weights", type=Path, default=None, help="ShapesModel weights (default: packaged)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--per-clip", action="store_true", help="also print each clip")
    p.add_argument("--json", type=Path, default=None, help="write all numbers here")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    models = {
        "builtin-shapes-v1 (ShapesModel)": ShapesModel(cpu, weights=args.weights),
        "builtin-shapes-v0 (BuiltinModel)": BuiltinModel(cpu),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_eval_clips(tmp, EVAL_SPECS, frames=args.frames, crf=args.crf)
        for name, model in models.items():
            results[name] = evaluate(model, clips)

    first = next(iter(results.values()))
    print(
        f"{len(EVAL_SPECS)} clips x {args.frames} frames ({first['frames']} frames), "
        f"H.264 crf {args.crf}, IoU >= 0.5, ground truth < 300 px ignored"
    )
    header = (
        f"{'model':34} {'precision':>9} {'recall':>7} {'box IoU':>8} {'mask IoU':>9} "
        f"{'TP':>5} {'FP':>4} {'FN':>4} {'ms/frame':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(
            f"{name:34} {r['precision']:9.3f} {r['recall']:7.3f} {r['box_iou']:8.3f} "
            f"{r['mask_iou']:9.3f} {r['tp']:5d} {r['fp']:4d} {r['fn']:4d} "
            f"{r['model_ms_per_frame']:9.1f}"
        )
    print(f"(ms/frame: run_model, batches of 8, {args.threads} CPU threads)")
    if args.per_clip:
        for name, r in results.items():
            print(f"\n{name}")
            for clip, c in r["per_clip"].items():
                print(
                    f"  {clip:40} P {c['precision']:.3f} R {c['recall']:.3f} "
                    f"mask {c['mask_iou']:.3f} FP {c['fp']} FN {c['fn']}"
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
