"""torchvision detection and Mask R-CNN models with a local weights file (optional extra).

torchvision is not a dependency: when it is missing, asking for this model is one clear
error at submit time. (On this project's build hosts the PyPI torchvision does not import
beside the CPU torch wheel, so this path is exercised only for that message.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vsa.core.detections import Detection, Letterbox
from vsa.errors import ModelError
from vsa.models.base import Batch
from vsa.models.classes import load_classes

if TYPE_CHECKING:
    from vsa.config import ModelSpec


def _import_detection() -> Any:
    try:
        from torchvision.models import detection
    except Exception as exc:  # noqa: BLE001 - not installed, or built for another torch
        raise ModelError(
            "model 'torchvision' needs the optional torchvision package, built for the installed torch "
            f"(`pip install torchvision` with the matching version); importing it failed: {exc}"
        ) from None
    return detection


class TorchvisionModel:
    """Implements vsa.models.base.Model; frames go in at their own size (the model resizes)."""

    def __init__(self, spec: ModelSpec, device: torch.device) -> None:
        detection = _import_detection()
        self.path, self.device = Path(spec.path or ""), device
        self.classes = load_classes(spec.classes or [])
        self.task = spec.task
        self.score_threshold = spec.score_threshold
        builder = getattr(detection, spec.arch or "", None)
        if builder is None or not callable(builder):
            raise ModelError(f"model.arch: torchvision has no detection model {spec.arch!r}")
        if not self.path.is_file():
            raise ModelError(f"{self.path}: weights file not found")
        model = builder(weights=None, weights_backbone=None, num_classes=len(self.classes) + 1)
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"{self.path}: does not fit {spec.arch} with {len(self.classes)} classes: {exc}"
            ) from None
        self.model = model.to(device).eval()
        self.name = f"torchvision:{spec.arch}"

    def preprocess(self, frames: Sequence[np.ndarray]) -> Batch:
        tensors = [
            torch.from_numpy(np.ascontiguousarray(f[..., ::-1]))
            .to(self.device)
            .permute(2, 0, 1)
            .float()
            / 255
            for f in frames
        ]
        boxes = [Letterbox(1.0, 0, 0, f.shape[0], f.shape[1]) for f in frames]
        return Batch(tensors, boxes)  # type: ignore[arg-type] - a list: torchvision takes images of any size

    def forward(self, batch: Batch) -> Any:
        return self.model(batch.tensor)

    def postprocess(self, raw: Any, batch: Batch) -> list[list[Detection]]:
        out = []
        for result in raw:
            keep = result["scores"] > self.score_threshold
            dets = []
            masks = result.get("masks")
            for i in torch.nonzero(keep).flatten().tolist():
                label = int(result["labels"][i]) - 1
                if not 0 <= label < len(self.classes):
                    continue
                det = Detection(
                    self.classes[label],
                    label,
                    float(result["scores"][i]),
                    tuple(result["boxes"][i].tolist()),
                )
                if masks is not None:
                    x1, y1, x2, y2 = det.mask_box()
                    det.mask = (masks[i, 0, y1:y2, x1:x2] > 0.5).cpu().numpy()
                dets.append(det)
            out.append(dets)
        return out
