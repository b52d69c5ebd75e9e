"""The built-in detector + segmenter (version 0).

A small pure-torch network for ``synthetic://shapes`` scenes: a 3x3 box
filter, then a per-pixel radial-basis classifier written as a 1x1 convolution
over ``[x, x^2]`` (one logit per shape class plus background), softmax; instances
are the connected components of each class map. Its weights are *constructed*
from the generator's colour palette, not learned: issue "Models" replaces them
with trained weights. It is real torch work (batched, on any device) and gives
real boxes, scores and masks, so every path of the engine (batching, drawing
masks, JSONL) is exercised with no download.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vsa.core.detections import Detection
from vsa.core.shapes import CLASSES, PALETTE_BGR
from vsa.models.base import Batch, letterbox_batch, region_detection

VERSION = "builtin-shapes-v0"


class ColourSegNet(nn.Module):
    def __init__(self, palette_rgb: np.ndarray, sigma: float = 0.16, radius: float = 0.33) -> None:
        super().__init__()
        k = len(palette_rgb)
        self.classify = nn.Conv2d(6, k + 1, 1)
        with torch.no_grad():
            w = torch.zeros(k + 1, 6, 1, 1)
            b = torch.zeros(k + 1)
            inv = 1.0 / (2 * sigma**2)
            p = torch.as_tensor(palette_rgb, dtype=torch.float32)
            # logit_c = -|x - p_c|^2 / (2 sigma^2); background = -radius^2 / (2 sigma^2)
            w[1:, :3, 0, 0] = 2 * p * inv
            w[1:, 3:, 0, 0] = -inv
            b[1:] = -(p**2).sum(1) * inv
            w[0] = 0
            b[0] = -(radius**2) * inv
            self.classify.weight.copy_(w)
            self.classify.bias.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 3x3 box filter against texture and compression noise; channels_last makes the
        # tiny 1x1 convolution ~40x faster on CPU.
        x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        features = torch.cat([x, x * x], 1).contiguous(memory_format=torch.channels_last)
        return torch.softmax(self.classify(features), 1)


class BuiltinModel:
    """Implements vsa.models.base.Model."""

    name = VERSION
    classes: Sequence[str] = CLASSES

    def __init__(
        self,
        device: torch.device,
        input_size: tuple[int, int] = (320, 320),
        score_threshold: float = 0.5,
        min_area: int = 24,
    ) -> None:
        self.device = device
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.min_area = min_area
        palette_rgb = np.array(PALETTE_BGR, np.float32)[:, ::-1] / 255.0
        self.net = ColourSegNet(palette_rgb).to(device).eval()

    def warmup(self) -> None:
        """One dummy frame through every stage, so the first real frame is not slow."""
        from vsa.models.base import run_model

        run_model(self, [np.zeros((*self.input_size, 3), np.uint8)])

    def preprocess(self, frames: Sequence[np.ndarray]) -> Batch:
        return letterbox_batch(frames, self.input_size, self.device)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.net(batch.tensor)

    def postprocess(self, raw: torch.Tensor, batch: Batch) -> list[list[Detection]]:
        score, cls = raw.max(1)
        cls_np = cls.to(torch.uint8).cpu().numpy()
        score_np = score.float().cpu().numpy()
        return [self._instances(cls_np[i], score_np[i], box) for i, box in enumerate(batch.boxes)]

    def _instances(self, cls_map: np.ndarray, score_map: np.ndarray, lb) -> list[Detection]:
        # Only the letterboxed image area, then map to source pixels.
        h_in = round(lb.src_h * lb.scale)
        w_in = round(lb.src_w * lb.scale)
        cls_map = cls_map[lb.pad_y : lb.pad_y + h_in, lb.pad_x : lb.pad_x + w_in]
        score_map = score_map[lb.pad_y : lb.pad_y + h_in, lb.pad_x : lb.pad_x + w_in]
        out: list[Detection] = []
        for c in np.unique(cls_map):
            if c == 0:
                continue
            n, comp, stats, _ = cv2.connectedComponentsWithStats(
                (cls_map == c).astype(np.uint8), connectivity=8
            )
            for j in range(1, n):
                x, y, w, h, area = (int(v) for v in stats[j])
                if area < self.min_area:
                    continue
                region = comp[y : y + h, x : x + w] == j
                s = float(score_map[y : y + h, x : x + w][region].mean())
                if s < self.score_threshold:
                    continue
                det = region_detection(
                    CLASSES[c - 1], int(c - 1), s, (x, y, w, h), region, lb, (h_in, w_in)
                )
                out.append(det)
        out.sort(key=lambda d: (d.class_id, d.box))
        return out
