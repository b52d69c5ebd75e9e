"""The built-in detector + instance segmenter, version 1: a small *trained* network.

``ShapesNet`` is a compact U-Net (four stride-2 stages, 16-64 channels, ~0.2 M
parameters; BatchNorm is folded into the convolutions at export, so the packaged
network is plain conv + ReLU). It reads the 320x320 letterboxed RGB frame and
predicts, at 1/2 resolution (bilinearly upsampled to the input size):

* 5 class logits per pixel: background + ``vsa.sources.synthetic.CLASSES``;
* 1 "instance edge" logit: the pixel lies within ~2 px of a *different* object of
  the *same* class (where two same-class objects touch or overlap).

Instances (``ShapesModel.postprocess``) are connected components of each class map,
cut along the predicted edges (edge-free cores are the seeds; the rest of the
component goes to the nearest seed), then pieces of one class are merged again when
their union's convex hull is filled by foreground, i.e. one convex shape seen in
two parts because something in front of it cuts it (every generator shape is convex).
Score = mean class probability over the instance; boxes and masks are in source
pixels, the mask covering ``Detection.mask_box()`` (the same conventions as
``vsa.models.builtin.BuiltinModel``).

Weights were trained by ``scripts/train_builtin.py`` on seeded generator scenes with
random frame sizes and real H.264 compression; ``scripts/eval_builtin.py`` measures
them on fresh H.264 clips. Importable with only torch, numpy and OpenCV.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vsa.models.base import Batch, Detection, Letterbox, letterbox_batch
from vsa.sources.synthetic import CLASSES

VERSION = "builtin-shapes-v1"
WEIGHTS = Path(__file__).resolve().parent / "weights" / f"{VERSION}.pt"
NUM_OUTPUTS = len(CLASSES) + 2  # background + classes, then the instance-edge logit
EDGE = len(CLASSES) + 1  # channel index of the edge output
WIDTHS = (16, 32, 48, 64)


def _block(cin: int, cout: int, stride: int, bn: bool) -> nn.Sequential:
    """conv3x3 (+BN) + ReLU, then conv3x3 (+BN) + ReLU."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(((cin, cout), (cout, cout))):
        layers.append(nn.Conv2d(a, b, 3, stride if i == 0 else 1, 1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(b))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ShapesNet(nn.Module):
    """Compact U-Net: input B x 3 x H x W in [0, 1] (H, W divisible by 16) ->
    B x NUM_OUTPUTS x H/2 x W/2 logits (``forward``) or x H x W (``upsampled=True``)."""

    def __init__(self, bn: bool = False, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.enc0 = _block(3, w0, 2, bn)  # 1/2
        self.enc1 = _block(w0, w1, 2, bn)  # 1/4
        self.enc2 = _block(w1, w2, 2, bn)  # 1/8
        self.enc3 = _block(w2, w3, 2, bn)  # 1/16
        self.dec2 = _block(w3 + w2, w2, 1, bn)
        self.dec1 = _block(w2 + w1, w1, 1, bn)
        self.dec0 = _block(w1 + w0, w0, 1, bn)
        self.head = nn.Conv2d(w0, NUM_OUTPUTS, 1)

    @staticmethod
    def _up(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([x, skip], 1)

    def forward(self, x: torch.Tensor, upsampled: bool = False) -> torch.Tensor:
        e0 = self.enc0(x - 0.5)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d = self.dec2(self._up(e3, e2))
        d = self.dec1(self._up(d, e1))
        d = self.dec0(self._up(d, e0))
        out = self.head(d)
        if upsampled:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    return {k: v.float() for k, v in state.items()}


class ShapesModel:
    """Implements vsa.models.base.Model with the trained ShapesNet."""

    name = VERSION
    classes: Sequence[str] = CLASSES

    def __init__(
        self,
        device: torch.device,
        score_threshold: float = 0.5,
        weights: str | Path | None = None,
        input_size: tuple[int, int] = (320, 320),
        min_area: int = 24,
        edge_threshold: float = 0.5,
    ) -> None:
        self.device = device
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.min_area = min_area  # pixels at the model input scale
        self.edge_threshold = edge_threshold
        self.weights = Path(weights) if weights is not None else WEIGHTS
        net = ShapesNet()
        net.load_state_dict(load_state(self.weights))
        self.net = net.to(device).eval()

    def preprocess(self, frames: Sequence[np.ndarray]) -> Batch:
        return letterbox_batch(frames, self.input_size, self.device)

    def forward(self, batch: Batch) -> torch.Tensor:
        """B x 6 x H x W at the input size: 5 class probabilities, then the edge probability."""
        logits = self.net(batch.tensor, upsampled=True)
        return torch.cat([torch.softmax(logits[:, :EDGE], 1), torch.sigmoid(logits[:, EDGE:])], 1)

    def warmup(self) -> None:
        with torch.inference_mode():
            frame = np.full((self.input_size[0], self.input_size[1], 3), 114, np.uint8)
            batch = self.preprocess([frame])
            self.postprocess(self.forward(batch), batch)

    def postprocess(self, raw: torch.Tensor, batch: Batch) -> list[list[Detection]]:
        score, cls = raw[:, :EDGE].max(1)
        cls_np = cls.to(torch.uint8).cpu().numpy()
        score_np = score.float().cpu().numpy()
        edge_np = raw[:, EDGE].float().cpu().numpy()
        return [
            self._instances(cls_np[i], score_np[i], edge_np[i], lb)
            for i, lb in enumerate(batch.boxes)
        ]

    # -- instances -------------------------------------------------------------------

    def _instances(
        self, cls_map: np.ndarray, score_map: np.ndarray, edge_map: np.ndarray, lb: Letterbox
    ) -> list[Detection]:
        # Only the letterboxed image area, then map to source pixels.
        h_in = round(lb.src_h * lb.scale)
        w_in = round(lb.src_w * lb.scale)
        window = (slice(lb.pad_y, lb.pad_y + h_in), slice(lb.pad_x, lb.pad_x + w_in))
        cls_map, score_map, edge_map = cls_map[window], score_map[window], edge_map[window]
        sx, sy = lb.src_w / w_in, lb.src_h / h_in
        edges = edge_map >= self.edge_threshold
        out: list[Detection] = []
        for c in np.unique(cls_map):
            if c == 0:
                continue
            fg = cls_map == c
            pieces = self._split(fg, edges)
            pieces = self._merge(pieces, cls_map, 0.5 * min(h_in, w_in))
            for mask, (x, y, w, h) in pieces:
                region = mask[y : y + h, x : x + w]
                area = int(region.sum())
                if area < self.min_area:
                    continue
                s = float(score_map[y : y + h, x : x + w][region].mean())
                if s < self.score_threshold:
                    continue
                x1, y1 = x * sx, y * sy
                x2, y2 = min((x + w) * sx, lb.src_w), min((y + h) * sy, lb.src_h)
                det = Detection(CLASSES[c - 1], int(c - 1), s, (x1, y1, x2, y2))
                mx1, my1, mx2, my2 = det.mask_box()
                det.mask = (
                    cv2.resize(
                        region.astype(np.float32),
                        (mx2 - mx1, my2 - my1),
                        interpolation=cv2.INTER_LINEAR,
                    )
                    >= 0.5
                )
                out.append(det)
        out.sort(key=lambda d: (d.class_id, d.box))
        return out

    def _split(
        self, fg: np.ndarray, edges: np.ndarray
    ) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
        """Connected components of ``fg``, each cut along ``edges`` into its cores."""
        pieces = []
        n, comp, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
        for j in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[j])
            if area < self.min_area:
                continue
            region = comp[y : y + h, x : x + w] == j
            core = region & ~edges[y : y + h, x : x + w]
            m, seeds, sstats, _ = cv2.connectedComponentsWithStats(
                core.astype(np.uint8), connectivity=4
            )
            keep = [i for i in range(1, m) if sstats[i, cv2.CC_STAT_AREA] >= self.min_area]
            if len(keep) < 2:
                full = np.zeros_like(fg)
                full[y : y + h, x : x + w] = region
                pieces.append((full, (x, y, w, h)))
                continue
            # Every pixel of the component goes to its nearest seed.
            lut = np.zeros(m, np.int32)
            lut[keep] = np.arange(1, len(keep) + 1)
            seed_ids = lut[seeds]
            _, nearest = cv2.distanceTransformWithLabels(
                (seed_ids == 0).astype(np.uint8),
                cv2.DIST_L2,
                5,
                labelType=cv2.DIST_LABEL_PIXEL,
            )
            owner = np.zeros(int(nearest.max()) + 1, np.int32)
            owner[nearest[seed_ids > 0]] = seed_ids[seed_ids > 0]
            assigned = owner[nearest]
            for i in range(1, len(keep) + 1):
                part = region & (assigned == i)
                if not part.any():
                    continue
                full = np.zeros_like(fg)
                full[y : y + h, x : x + w] = part
                pieces.append((full, _rect(full)))
        return pieces

    @staticmethod
    def _merge(
        pieces: list[tuple[np.ndarray, tuple[int, int, int, int]]],
        cls_map: np.ndarray,
        max_extent: float,
        max_background: float = 0.03,
    ) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
        """Join pieces of one class whose union is convex up to foreground: the hull of
        the union minus the union must be (almost) all other objects, not background, and
        the union no larger than a generator object can be (under half the short side)."""
        if len(pieces) < 2:
            return pieces
        background = cls_map == 0
        merged = True
        while merged and len(pieces) > 1:
            merged = False
            best = None
            for a in range(len(pieces)):
                for b in range(a + 1, len(pieces)):
                    ra, rb = pieces[a][1], pieces[b][1]
                    x, y = min(ra[0], rb[0]), min(ra[1], rb[1])
                    w = max(ra[0] + ra[2], rb[0] + rb[2]) - x
                    h = max(ra[1] + ra[3], rb[1] + rb[3]) - y
                    if max(w, h) > max_extent:
                        continue
                    union = pieces[a][0] | pieces[b][0]
                    sub = union[y : y + h, x : x + w].astype(np.uint8)
                    pts = cv2.findNonZero(sub)
                    hull = np.zeros_like(sub)
                    cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
                    gap = hull.astype(bool) & ~sub.astype(bool)
                    bg = int((gap & background[y : y + h, x : x + w]).sum())
                    ratio = bg / max(1, int(hull.sum()))
                    if ratio <= max_background and (best is None or ratio < best[0]):
                        best = (ratio, a, b, union, (x, y, w, h))
            if best is not None:
                _, a, b, union, rect = best
                pieces = [p for i, p in enumerate(pieces) if i not in (a, b)] + [(union, rect)]
                merged = True
        return pieces


def _rect(mask: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return int(x), int(y), int(w), int(h)
