"""The built-in detector + instance segmenter, version 1: a small *trained* network.

``ShapesNet`` is a compact U-Net (four stride-2 stages, 16-64 channels, 0.23 M
parameters; BatchNorm is folded into the convolutions at export, so the packaged
network is plain conv + ReLU). It reads the 320x320 letterboxed RGB frame and
predicts at 1/2 resolution, bilinearly upsampled to the input size:

* 5 class logits per pixel: background + ``vsa.sources.synthetic.CLASSES``;
* 1 "instance edge" logit: the pixel lies within ~2 px of a *different* object of
  the *same* class (where two same-class objects touch or overlap).

Instances (``ShapesModel.postprocess``), per class, at the model input scale:

1. connected components of the class map;
2. each component minus its predicted edge pixels is split at the significant peaks
   of its distance transform (``peak_markers``): every generator shape is convex and
   has one peak, two touching or overlapping shapes have a neck between two; each
   pixel goes to its nearest peak region;
3. pieces are merged again when their union is convex up to other objects (the hull
   of the union minus the union is foreground, not background): one shape cut in two
   by something in front of it, or a shape split too eagerly.

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

from vsa.core.detections import Detection, Letterbox
from vsa.core.shapes import CLASSES
from vsa.models.base import Batch, letterbox_batch, region_detection

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
    """Compact U-Net: B x 3 x H x W RGB in [0, 1] (H, W divisible by 16) -> B x NUM_OUTPUTS
    x H x W logits (computed at H/2 x W/2, bilinearly upsampled)."""

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
        self.head = nn.Conv2d(w0, NUM_OUTPUTS, 1)  # at 1/2 resolution

    @staticmethod
    def _up(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([x, skip], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0 = self.enc0(x - 0.5)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d = self.dec2(self._up(e3, e2))
        d = self.dec1(self._up(d, e1))
        d = self.dec0(self._up(d, e0))
        return F.interpolate(self.head(d), size=x.shape[-2:], mode="bilinear", align_corners=False)


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    return {k: v.float() for k, v in state.items()}


class ShapesModel:
    """Implements vsa.models.base.Model with the trained ShapesNet.

    ``min_area``: smallest instance kept, in pixels at the model input. ``edge_threshold``:
    edge probability above which a pixel is cut out before the peak split (0.6 was chosen
    on validation clips, seeds 80001..80008, never on the evaluation seeds).
    ``min_prominence`` / ``rel_prominence``: how far (pixels / fraction of its height) a
    distance-transform peak must stand above its saddle to seed its own instance.
    """

    name = VERSION
    classes: Sequence[str] = CLASSES

    def __init__(
        self,
        device: torch.device,
        score_threshold: float = 0.5,
        weights: str | Path | None = None,
        input_size: tuple[int, int] = (320, 320),
        min_area: int = 24,
        edge_threshold: float = 0.6,
        min_prominence: float = 2.0,
        rel_prominence: float = 0.2,
    ) -> None:
        self.device = device
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.min_area = min_area  # pixels at the model input scale
        self.edge_threshold = edge_threshold
        self.min_prominence = min_prominence
        self.rel_prominence = rel_prominence
        self.weights = Path(weights) if weights is not None else WEIGHTS
        net = ShapesNet()
        net.load_state_dict(load_state(self.weights))
        self.net = net.to(device).eval()

    def preprocess(self, frames: Sequence[np.ndarray]) -> Batch:
        return letterbox_batch(frames, self.input_size, self.device)

    def forward(self, batch: Batch) -> torch.Tensor:
        """B x 6 x H x W at the input size: 5 class probabilities, then the edge probability."""
        logits = self.net(batch.tensor)
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
        h_in, w_in = fitted_size(lb, self.input_size)
        window = (slice(lb.pad_y, lb.pad_y + h_in), slice(lb.pad_x, lb.pad_x + w_in))
        cls_map, score_map, edge_map = cls_map[window], score_map[window], edge_map[window]
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
                det = region_detection(
                    CLASSES[c - 1],
                    int(c - 1),
                    s,
                    (x, y, w, h),
                    region,
                    lb,
                    (h_in, w_in),
                    smooth_mask=True,
                )
                out.append(det)
        out.sort(key=lambda d: (d.class_id, d.box))
        return out

    def _split(
        self, fg: np.ndarray, edges: np.ndarray
    ) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
        """Connected components of ``fg``, each split at the significant peaks of the
        distance transform of the component minus ``edges``."""
        pieces = []
        n, comp, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
        for j in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[j])
            if area < 4:  # specks; pieces under min_area may still join a neighbour
                continue
            region = comp[y : y + h, x : x + w] == j
            solid = np.pad(region & ~edges[y : y + h, x : x + w], 1).astype(np.uint8)
            dist = cv2.distanceTransform(solid, cv2.DIST_L2, 5)[1:-1, 1:-1]
            seed_ids, count = peak_markers(dist, self.min_prominence, self.rel_prominence)
            if count < 2:
                full = np.zeros_like(fg)
                full[y : y + h, x : x + w] = region
                pieces.append((full, (x, y, w, h)))
                continue
            # Every pixel of the component goes to its nearest seed.
            _, nearest = cv2.distanceTransformWithLabels(
                (seed_ids == 0).astype(np.uint8),
                cv2.DIST_L2,
                5,
                labelType=cv2.DIST_LABEL_PIXEL,
            )
            owner = np.zeros(int(nearest.max()) + 1, np.int32)
            owner[nearest[seed_ids > 0]] = seed_ids[seed_ids > 0]
            assigned = owner[nearest]
            for i in range(1, count + 1):
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
        max_background: float = 0.25,
        max_convex_gap: float = 0.01,
    ) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
        """Join pieces of one class whose union is convex up to foreground: background
        may fill at most ``max_background`` of the hull of the union minus the union (the
        rest is other objects in front), or at most ``max_convex_gap`` of the hull (the
        union is convex: an over-cut); the union must be no larger than a generator
        object can be (under half the short side)."""
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
                    # Occluded: the gap is mostly other objects. Convex already: no gap.
                    ratio = bg / max(1, int(gap.sum()))
                    convex = bg <= 2 + max_convex_gap * int(hull.sum())
                    if (ratio <= max_background or convex) and (best is None or ratio < best[0]):
                        best = (ratio, a, b, union, (x, y, w, h))
            if best is not None:
                _, a, b, union, rect = best
                pieces = [p for i, p in enumerate(pieces) if i not in (a, b)] + [(union, rect)]
                merged = True
        return pieces


def _rect(mask: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return int(x), int(y), int(w), int(h)


def fitted_size(lb: Letterbox, size: tuple[int, int]) -> tuple[int, int]:
    """Height and width the source frame took inside the model input (as letterbox_batch)."""
    scale = min(size[0] / lb.src_h, size[1] / lb.src_w)
    return max(1, round(lb.src_h * scale)), max(1, round(lb.src_w * scale))


def peak_markers(
    dist: np.ndarray, min_prominence: float, rel_prominence: float
) -> tuple[np.ndarray, int]:
    """Seeds of the significant peaks of a distance transform (labels 1..count, 0 elsewhere).

    Flooding from the top down, a peak that meets a higher one at a saddle is kept as its
    own seed (the region above the saddle) when it stands out by at least
    ``max(min_prominence, rel_prominence * peak)`` pixels; otherwise it joins the higher
    peak. One convex shape has one peak; two overlapping shapes have a neck between two.
    """
    markers = np.zeros(dist.shape, np.int32)
    top = float(dist.max())
    if top <= 0:
        return markers, 0
    peak, frozen = [0.0], [True]
    step = max(0.5, top / 40)
    level = top
    while level > 0.5:
        level = max(0.5, level - step)
        n, lab = cv2.connectedComponents((dist >= level).astype(np.uint8), connectivity=8)
        inside = markers > 0
        width = len(peak)
        pairs = np.unique(lab[inside].astype(np.int64) * width + markers[inside])
        contained: dict[int, list[int]] = {}
        for pair in pairs.tolist():
            contained.setdefault(pair // width, []).append(pair % width)
        for k in range(1, n):
            ms = contained.get(k, [])
            where = lab == k
            if not ms:
                peak.append(float(dist[where].max()))
                frozen.append(False)
                markers[where] = len(peak) - 1
                continue
            if len(ms) > 1:
                significant = [
                    m
                    for m in ms
                    if peak[m] - level >= max(min_prominence, rel_prominence * peak[m])
                ]
                if len(significant) > 1:
                    for m in ms:
                        if m in significant:
                            frozen[m] = True
                        else:
                            markers[markers == m] = 0
                    continue
                keep = significant[0] if significant else max(ms, key=lambda m: peak[m])
                for m in ms:
                    if m != keep:
                        markers[markers == m] = keep
                ms = [keep]
            if not frozen[ms[0]]:
                markers[where & (markers == 0)] = ms[0]
    ids = np.unique(markers[markers > 0])
    lut = np.zeros(len(peak), np.int32)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[markers], len(ids)
