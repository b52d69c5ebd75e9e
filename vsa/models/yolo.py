"""TorchScript models with the output layout of Ultralytics YOLO (v8 / 11) exports.

- detect:  ``[B, 4 + nc, N]``: per candidate ``cx, cy, w, h`` in input pixels, then one score per class.
- segment: ``([B, 4 + nc + nm, N], [B, nm, mh, mw])``: the same plus ``nm`` mask coefficients,
  and the prototype masks; an instance mask is ``sigmoid(coefficients @ prototypes)``.

Decoding (score threshold, class filter, NMS per class, top-k) runs on the model's device;
boxes and masks are mapped back through the letterbox to source pixels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from vsa.core.detections import Detection, Letterbox
from vsa.errors import ModelError
from vsa.models.base import Batch, letterbox_batch
from vsa.models.classes import load_classes, names_from_data, preview_names, short_name
from vsa.models.nms import batched_nms, cxcywh_to_xyxy

if TYPE_CHECKING:
    from vsa.config import ModelSpec

MAX_CANDIDATES = 3_000  # before NMS, highest scores first (bounds the O(n^2) fallback NMS)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".strip()


class TorchScriptYolo:
    """Implements vsa.models.base.Model for a YOLO-layout TorchScript file."""

    def __init__(self, spec: ModelSpec, device: torch.device) -> None:
        self.path = Path(spec.path or "")
        self.device = device
        self.task = spec.task
        self.input_size = (int(spec.input_size[0]), int(spec.input_size[1]))
        self.score_threshold = spec.score_threshold
        self.iou_threshold = spec.iou_threshold
        self.max_detections = spec.max_detections
        self.dtype = torch.float16 if spec.half and device.type == "cuda" else torch.float32
        self.name = f"torchscript:{self.path.name}"
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        extra = {"config.txt": ""}
        try:
            module = torch.jit.load(str(self.path), map_location=device, _extra_files=extra)
        except Exception as exc:  # noqa: BLE001 - corrupt, not TorchScript, saved by a newer torch...
            raise ModelError(
                f"{self.path}: not a loadable TorchScript model ({_short(exc)})"
            ) from None
        self.module = module.eval().to(self.dtype)
        self.classes = self._classes(spec, extra["config.txt"])
        self._keep = None
        if spec.class_filter:
            unknown = [c for c in spec.class_filter if c not in self.classes]
            if unknown:
                raise ModelError(
                    f"model.class_filter: unknown class {short_name(unknown[0])!r} "
                    f"(model classes: {preview_names(self.classes)})"
                )
            self._keep = torch.tensor(
                [self.classes.index(c) for c in spec.class_filter], device=device
            )
        self.warmup()

    def _classes(self, spec: ModelSpec, embedded: str | bytes) -> list[str]:
        if spec.classes:
            return load_classes(spec.classes)
        if embedded:
            try:
                meta = json.loads(embedded)
            except ValueError:
                meta = {}
            if isinstance(meta, dict) and meta.get("names"):
                return names_from_data(meta["names"], f"{self.path} (embedded names)")
        raise ModelError(
            f"{self.path}: the file carries no class names: give model.classes (a list or a names file)"
        )

    # --- the Model protocol --------------------------------------------------------------------
    def preprocess(self, frames: Sequence[np.ndarray]) -> Batch:
        return letterbox_batch(frames, self.input_size, self.device, dtype=self.dtype)

    def forward(self, batch: Batch) -> Any:
        return self.module(batch.tensor)

    def postprocess(self, raw: Any, batch: Batch) -> list[list[Detection]]:
        preds, protos = self._split(raw)
        # The best class score of every candidate of the whole batch in one reduction, without
        # the class index: most candidates are below the threshold, so the index is found only
        # for those above it (selection 1.4 -> 0.5 ms of CPU per frame with nothing above it,
        # 1.95 -> 1.25 with 300 above, 80 classes, one thread: scripts/bench_decode.py).
        nc = len(self.classes)
        above = preds[:, 4 : 4 + nc].amax(1).float() > self.score_threshold  # [B, N]
        return [
            self._decode_one(preds[i], above[i], None if protos is None else protos[i], box)
            for i, box in enumerate(batch.boxes)
        ]

    def warmup(self) -> None:
        """Run one frame through the model: checks the input size and the output layout.

        ``load_model`` calls it, so a bad model fails at submit, not on the first real frame.
        """
        h, w = self.input_size
        frame = np.zeros((h, w, 3), np.uint8)
        with torch.inference_mode():
            batch = self.preprocess([frame])
            try:
                raw = self.forward(batch)
            except Exception as exc:  # noqa: BLE001
                raise ModelError(
                    f"{self.path}: the model fails on a {h}x{w} input ({_short(exc)}); check model.input_size"
                ) from None
            self._check_layout(raw)
            self.postprocess(raw, batch)

    # --- layout ------------------------------------------------------------------------------
    def _split(self, raw: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.task == "segment":
            return raw[0], raw[1]
        return (raw[0] if isinstance(raw, list | tuple) else raw), None

    def _check_layout(self, raw: Any) -> None:
        nc = len(self.classes)
        if self.task == "segment":
            if not (
                isinstance(raw, list | tuple)
                and len(raw) >= 2
                and all(torch.is_tensor(t) for t in raw[:2])
            ):
                raise ModelError(
                    f"{self.path}: task 'segment' expects (predictions, prototypes) outputs, the model returns "
                    f"{_describe(raw)}; is it a detection model (task: detect)?"
                )
            preds, protos = raw[0], raw[1]
            if protos.dim() != 4:
                raise ModelError(
                    f"{self.path}: prototypes should be [B, nm, h, w], got {list(protos.shape)}"
                )
            expected = 4 + nc + protos.shape[1]
            what = f"4 + {nc} classes + {protos.shape[1]} mask coefficients = {expected}"
        else:
            preds = raw[0] if isinstance(raw, list | tuple) else raw
            if not torch.is_tensor(preds):
                raise ModelError(
                    f"{self.path}: expected a tensor output [B, 4 + classes, N], got {_describe(raw)}"
                )
            expected = 4 + nc
            what = f"4 + {nc} classes = {expected}"
        if preds.dim() != 3 or preds.shape[0] != 1:
            raise ModelError(
                f"{self.path}: predictions should be [B, {expected}, N], got {list(preds.shape)}"
            )
        if preds.shape[1] != expected:
            if preds.shape[2] == expected:
                raise ModelError(
                    f"{self.path}: predictions are [B, N, {expected}] (YOLOv5-style); vsa reads the "
                    f"Ultralytics v8/11 layout [B, {expected}, N]"
                )
            raise ModelError(
                f"{self.path}: predictions have {preds.shape[1]} values per candidate, expected {what} "
                f"(task {self.task}); check model.classes and model.task"
            )

    # --- decoding ----------------------------------------------------------------------------
    def _decode_one(
        self, preds: torch.Tensor, above: torch.Tensor, protos: torch.Tensor | None, lb: Letterbox
    ) -> list[Detection]:
        """One frame's detections; ``preds`` [C, N], ``above`` [N]: the candidates whose best
        class score passes the threshold."""
        nc = len(self.classes)
        p = preds[:, above].float().transpose(0, 1)  # [k, C]
        score, cls = p[:, 4 : 4 + nc].max(1)
        if self._keep is not None:
            wanted = torch.isin(cls, self._keep)
            p, score, cls = p[wanted], score[wanted], cls[wanted]
        if len(score) > MAX_CANDIDATES:
            top = score.topk(MAX_CANDIDATES).indices
            p, score, cls = p[top], score[top], cls[top]
        boxes = cxcywh_to_xyxy(p[:, :4])
        idx = batched_nms(boxes, score, cls, self.iou_threshold)[: self.max_detections]
        boxes, score, cls = boxes[idx], score[idx], cls[idx]
        src = boxes.clone()
        src[:, 0::2] = ((src[:, 0::2] - lb.pad_x) / lb.scale).clamp(0, lb.src_w)
        src[:, 1::2] = ((src[:, 1::2] - lb.pad_y) / lb.scale).clamp(0, lb.src_h)
        dets = [
            Detection(self.classes[c], int(c), float(s), tuple(float(v) for v in b))
            for b, s, c in zip(src.tolist(), score.tolist(), cls.tolist(), strict=True)
        ]
        if protos is not None and dets:
            coeffs = p[idx, 4 + nc :]
            logits = (coeffs @ protos.float().flatten(1)).view(-1, *protos.shape[1:])  # [k, mh, mw]
            for j, det in enumerate(dets):
                det.mask = _sample_mask(logits[j], det, lb, self.input_size)
        return dets


def _sample_mask(
    logits: torch.Tensor, det: Detection, lb: Letterbox, input_size: tuple[int, int]
) -> np.ndarray:
    """The instance mask at the source pixels of ``det.mask_box()`` (bilinear on the prototype grid)."""
    x1, y1, x2, y2 = det.mask_box()
    if x2 <= x1 or y2 <= y1:
        return np.zeros((max(0, y2 - y1), max(0, x2 - x1)), bool)
    height, width = input_size
    xs = (
        torch.arange(x1, x2, device=logits.device, dtype=torch.float32) + 0.5
    ) * lb.scale + lb.pad_x
    ys = (
        torch.arange(y1, y2, device=logits.device, dtype=torch.float32) + 0.5
    ) * lb.scale + lb.pad_y
    gy, gx = torch.meshgrid(ys / height * 2 - 1, xs / width * 2 - 1, indexing="ij")
    grid = torch.stack((gx, gy), -1)[None]
    sampled = F.grid_sample(logits[None, None], grid, mode="bilinear", align_corners=False)[0, 0]
    return (sampled > 0).cpu().numpy()


def _describe(raw: Any) -> str:
    if torch.is_tensor(raw):
        return f"a tensor {list(raw.shape)}"
    if isinstance(raw, list | tuple):
        return f"{type(raw).__name__} of " + ", ".join(_describe(r) for r in raw)
    return type(raw).__name__
