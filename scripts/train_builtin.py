"""Train the built-in shapes detector + segmenter (``builtin-shapes-v1``) on the CPU.

    .venv/bin/python scripts/train_builtin.py            # <= 13 min on 2 CPU cores
    .venv/bin/python scripts/train_builtin.py --minutes 5 --out /tmp/quick.pt

Data: seeded ``synthetic://shapes`` scenes (scene seeds 1000..1999 only; evaluation uses
80000+ / 90000+), each a short clip of 6 frames with a random frame size and aspect
ratio (landscape and portrait, 320..1280 px on the long side), 1..8 objects, and for
70% of the clips a real H.264 round trip (``vsa.sinks.video.VideoWriter`` at a random
crf in 20..35, decoded with PyAV). Frames are letterboxed with
``vsa.models.base.letterbox_batch`` exactly as at inference; per-pixel labels (class +
"edge between two objects of the same class") come from the ground-truth masks mapped
through the same letterbox.

Training: random 160x160 crops of the 320x320 inputs with flips (a third of them
centred on a same-class edge, a third on an object), AdamW, cosine learning rate,
loss = class-weighted cross-entropy + 0.5 soft dice over the classes + 2 x BCE
(pos_weight 10) on the edge channel. BatchNorm is folded into the convolutions and the
weights are saved as fp16 (~0.46 MB). At the end the model is checked on three
validation clips (seeds 80001..80003, H.264 crf 23).

Everything is seeded (``--seed``): data and steps are reproducible as long as the
``--steps`` schedule fits the ``--minutes`` budget; on a slower machine the schedule is
shortened to fit (printed: "N of 1600 steps fit in the budget") and the result then
depends on the machine's speed.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsa.models.base import letterbox_batch  # noqa: E402
from vsa.models.shapenet import EDGE, WEIGHTS, ShapesModel, ShapesNet, fitted_size  # noqa: E402
from vsa.sinks.video import VideoWriter  # noqa: E402
from vsa.sources.synthetic import CLASSES, ShapesScene, SyntheticParams  # noqa: E402
from vsa.tools.evaluate import decode_frames, evaluate, make_eval_clips  # noqa: E402

INPUT = (320, 320)
TRAIN_SEEDS = range(1000, 2000)
VAL_SPECS = ((80001, 640, 360, 4), (80002, 1280, 720, 5), (80003, 360, 640, 4))
EDGE_RADIUS = 2  # px at the model input scale


def random_size(rng: np.random.Generator) -> tuple[int, int]:
    long = rng.uniform(320, 1280)
    aspect = rng.uniform(1.0, 2.0)
    short = max(180.0, long / aspect)
    w, h = (long, short) if rng.random() < 0.75 else (short, long)
    return int(round(w / 2)) * 2, int(round(h / 2)) * 2


def h264_round_trip(images: list[np.ndarray], crf: int, workdir: Path) -> list[np.ndarray]:
    path = workdir / "clip.mp4"
    writer = VideoWriter(path, fps=15.0, crf=crf, fragmented=False)
    for i, image in enumerate(images):
        writer.write(image, i / 15.0)
    writer.close()
    decoded = list(decode_frames(path))
    path.unlink()
    assert len(decoded) == len(images), (len(decoded), len(images))
    return decoded


def labels_for(truth: list[dict], lb, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Class map (0 = background) and same-class edge map at the model input, via ``lb``."""
    height, width = size
    inst = np.zeros((lb.src_h, lb.src_w), np.uint8)
    classes = np.zeros(len(truth) + 1, np.uint8)
    for i, t in enumerate(truth):
        inst[t["mask"]] = i + 1
        classes[i + 1] = t["class_id"] + 1
    new_h, new_w = fitted_size(lb, size)
    small = cv2.resize(inst, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    inst_in = np.zeros((height, width), np.uint8)
    inst_in[lb.pad_y : lb.pad_y + new_h, lb.pad_x : lb.pad_x + new_w] = small
    cls = classes[inst_in]
    edge = np.zeros((height, width), bool)
    kernel = cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * EDGE_RADIUS + 1, 2 * EDGE_RADIUS + 1)
    )
    for c in range(1, len(CLASSES) + 1):
        ids = [i + 1 for i in range(len(truth)) if classes[i + 1] == c]
        if len(ids) < 2:
            continue
        for i in ids:
            own = inst_in == i
            others = np.isin(inst_in, [j for j in ids if j != i]).astype(np.uint8)
            edge |= own & cv2.dilate(others, kernel).astype(bool)
    return cls, edge


def make_data(args, rng: np.random.Generator, deadline: float):
    """Letterboxed uint8 inputs (N x 3 x H x W) and labels (N x H x W: class | edge << 3)."""
    total = args.clips * args.clip_frames
    x_all = torch.empty((total, 3, *INPUT), dtype=torch.uint8)
    y_all = torch.empty((total, *INPUT), dtype=torch.uint8)
    n_frames = n_clips = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        while n_clips < args.clips and time.monotonic() < deadline:
            seed = TRAIN_SEEDS[n_clips % len(TRAIN_SEEDS)]
            w, h = random_size(rng)
            objects = int(rng.integers(1, 9))
            k0, step = int(rng.integers(0, 600)), int(rng.integers(1, 8))
            compressed = rng.random() < args.h264_fraction
            crf = int(rng.integers(20, 36))
            scene = ShapesScene(
                SyntheticParams(seed=seed, width=w, height=h, objects=objects, pace=False)
            )
            rendered = [scene.render(k0 + i * step) for i in range(args.clip_frames)]
            images = [r[0] for r in rendered]
            if compressed:
                images = h264_round_trip(images, crf, Path(tmp))
            batch = letterbox_batch(images, INPUT, torch.device("cpu"))
            x_all[n_frames : n_frames + len(images)] = (batch.tensor * 255).round().to(torch.uint8)
            for (_, truth), lb in zip(rendered, batch.boxes, strict=True):
                cls, edge = labels_for(truth, lb, INPUT)
                y_all[n_frames] = torch.from_numpy(cls | (edge.astype(np.uint8) << 3))
                n_frames += 1
            n_clips += 1
            if n_clips % 100 == 0:
                print(
                    f"  data: {n_clips} clips, {n_frames} frames, "
                    f"{time.monotonic() - started:.0f} s",
                    flush=True,
                )
    if n_clips < args.clips:
        print(f"  data: budget reached after {n_clips} of {args.clips} clips", flush=True)
    return x_all[:n_frames], y_all[:n_frames]


class Sampler:
    """Random crops with flips; a share of them centred on a same-class edge (rare: well
    under 1% of pixels) or on an object, the rest anywhere."""

    def __init__(self, x_all, y_all, rng: np.random.Generator, crop: int) -> None:
        self.x_all, self.y_all, self.rng, self.crop = x_all, y_all, rng, crop
        self.edge_points = self._points(lambda y: (y >> 3) > 0, 20000)
        self.fg_points = self._points(lambda y: (y & 7) > 0, 20000)

    def _points(self, select, limit: int, chunk: int = 250) -> np.ndarray:
        """Up to ``limit`` random (frame, y, x) where ``select`` holds (chunked: little memory)."""
        n = len(self.y_all)
        parts = []
        for start in range(0, n, chunk):
            pts = select(self.y_all[start : start + chunk]).nonzero().numpy()
            pts[:, 0] += start
            keep = max(1, limit * chunk // n)
            if len(pts) > keep:
                pts = pts[self.rng.choice(len(pts), keep, replace=False)]
            parts.append(pts)
        return np.concatenate(parts)

    def _origin(self) -> tuple[int, int, int]:
        n, _, height, width = self.x_all.shape
        crop, rng = self.crop, self.rng
        r = rng.random()
        pool = self.edge_points if r < 0.35 else self.fg_points if r < 0.7 else None
        if pool is None or not len(pool):
            i = int(rng.integers(0, n))
            return (
                i,
                int(rng.integers(0, height - crop + 1)),
                int(rng.integers(0, width - crop + 1)),
            )
        i, y, x = (int(v) for v in pool[rng.integers(0, len(pool))])
        jitter = rng.integers(-crop // 3, crop // 3 + 1, 2)
        oy = int(np.clip(y - crop // 2 + jitter[0], 0, height - crop))
        ox = int(np.clip(x - crop // 2 + jitter[1], 0, width - crop))
        return i, oy, ox

    def batch(self, size: int):
        crop = self.crop
        xb = torch.empty(size, 3, crop, crop, dtype=torch.uint8)
        yb = torch.empty(size, crop, crop, dtype=torch.uint8)
        for b in range(size):
            i, oy, ox = self._origin()
            xi = self.x_all[i, :, oy : oy + crop, ox : ox + crop]
            yi = self.y_all[i, oy : oy + crop, ox : ox + crop]
            flips = [d for d in (-1, -2) if self.rng.random() < 0.5]
            if flips:
                xi, yi = xi.flip(flips), yi.flip(flips)
            xb[b], yb[b] = xi, yi
        return xb.float() / 255.0, (yb & 7).long(), (yb >> 3).float()


def loss_fn(out: torch.Tensor, cls: torch.Tensor, edge: torch.Tensor, class_weight: torch.Tensor):
    logits = out[:, :EDGE]
    ce = F.cross_entropy(logits, cls, weight=class_weight)
    prob = logits.softmax(1)
    onehot = F.one_hot(cls, EDGE).permute(0, 3, 1, 2).float()
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = 1 - ((2 * inter + 1) / (denom + 1))[present].mean()
    bce = F.binary_cross_entropy_with_logits(
        out[:, EDGE], edge, pos_weight=torch.tensor(10.0, device=out.device)
    )
    return ce + 0.5 * dice + 2.0 * bce, (ce.item(), dice.item(), bce.item())


@torch.no_grad()
def fold_batchnorm(trained: ShapesNet) -> ShapesNet:
    """The same function without BatchNorm: each conv followed by a BatchNorm becomes
    conv(x) * g / sqrt(v + eps) + (beta - mean * g / sqrt(v + eps))."""
    plain = ShapesNet(bn=False)
    modules = list(trained.modules())
    folded = []
    for i, m in enumerate(modules):
        if not isinstance(m, torch.nn.Conv2d):
            continue
        weight = m.weight
        bias = m.bias if m.bias is not None else torch.zeros(m.out_channels)
        bn = modules[i + 1] if i + 1 < len(modules) else None
        if isinstance(bn, torch.nn.BatchNorm2d):
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = weight * scale[:, None, None, None]
            bias = bn.bias + (bias - bn.running_mean) * scale
        folded.append((weight, bias))
    targets = [m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)]
    for target, (weight, bias) in zip(targets, folded, strict=True):
        target.weight.copy_(weight)
        target.bias.copy_(bias)
    return plain.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=WEIGHTS)
    p.add_argument("--minutes", type=float, default=13.0, help="wall-time budget, all phases")
    p.add_argument("--data-minutes", type=float, default=3.5, help="cap on data generation")
    p.add_argument("--clips", type=int, default=1000)
    p.add_argument("--clip-frames", type=int, default=6)
    p.add_argument("--h264-fraction", type=float, default=0.7)
    p.add_argument("--steps", type=int, default=1600)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop", type=int, default=160)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-val", action="store_true", help="skip the validation clips at the end")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.monotonic()
    budget = args.minutes * 60
    reserve = 0 if args.no_val else 30  # seconds kept for export + validation

    print(f"[1/3] data: {args.clips} clips x {args.clip_frames} frames", flush=True)
    x_all, y_all = make_data(args, rng, t0 + min(args.data_minutes * 60, budget / 2))
    fg = sum(int(((y & 7) > 0).sum()) for y in y_all.split(250)) / y_all.numel()
    edge = sum(int(((y >> 3) > 0).sum()) for y in y_all.split(250)) / y_all.numel()
    print(
        f"  {len(x_all)} frames in {time.monotonic() - t0:.0f} s "
        f"(foreground {fg:.1%}, edge {edge:.2%} of pixels)",
        flush=True,
    )

    net = ShapesNet(bn=True).to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in net.parameters())
    print(
        f"[2/3] train: {args.steps} steps, batch {args.batch}, crop {args.crop}, {n_params} params"
    )
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    class_weight = torch.tensor([1.0] + [2.0] * len(CLASSES))
    sampler = Sampler(x_all, y_all, rng, args.crop)
    train_start = time.monotonic()
    deadline = t0 + budget - reserve
    warm = max(1, args.steps // 30)
    last_print = 0.0
    running = None
    step = 0
    total = args.steps
    for step in range(args.steps):
        now = time.monotonic()
        if step in (30, 300, 600, 900) and step < total:
            # Shorten the (cosine) schedule if this machine cannot finish it in time, so
            # that the learning rate still anneals; the run is then not reproducible.
            rate = step / (now - train_start)
            fits = min(args.steps, step + int(0.97 * rate * (deadline - now)))
            if fits != total:
                total = fits
                print(f"  {total} of {args.steps} steps fit in the budget", flush=True)
        if step >= total or now > deadline:
            print(f"  stopped at step {step} of {args.steps} (time budget)", flush=True)
            break
        lr = args.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / total))
        for group in opt.param_groups:
            group["lr"] = lr
        x, cls, edge_t = sampler.batch(args.batch)
        out = net(x.contiguous(memory_format=torch.channels_last))
        loss, parts = loss_fn(out, cls, edge_t, class_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running = (
            parts
            if running is None
            else tuple(0.95 * r + 0.05 * v for r, v in zip(running, parts, strict=True))
        )
        now = time.monotonic()
        if now - last_print > 20 or step == total - 1:
            last_print = now
            print(
                f"  step {step + 1}/{total} lr {lr:.2e} ce {running[0]:.4f} "
                f"dice {running[1]:.4f} edge {running[2]:.4f} "
                f"({now - train_start:.0f} s, {(step + 1) / (now - train_start):.2f} steps/s)",
                flush=True,
            )
    else:
        step = args.steps
    del x_all, y_all, sampler

    print("[3/3] export", flush=True)
    net.eval()
    plain = fold_batchnorm(net)
    with torch.no_grad():
        probe = torch.rand(2, 3, *INPUT)
        diff = (plain(probe) - net(probe)).abs().max().item()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() for k, v in plain.state_dict().items()}, args.out)
    size = args.out.stat().st_size
    print(f"  wrote {args.out} ({size / 1e6:.2f} MB, fold error {diff:.1e}, {step} steps)")

    if not args.no_val:
        model = ShapesModel(torch.device("cpu"), weights=args.out)
        with tempfile.TemporaryDirectory() as tmp:
            clips = make_eval_clips(tmp, VAL_SPECS, frames=30)
            r = evaluate(model, clips)
        print(
            f"  validation (seeds 80001-80003, H.264 crf 23, {r['frames']} frames): "
            f"precision {r['precision']:.3f} recall {r['recall']:.3f} "
            f"box IoU {r['box_iou']:.3f} mask IoU {r['mask_iou']:.3f}"
        )
    print(f"done in {(time.monotonic() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
