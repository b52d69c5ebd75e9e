"""A toy network with the exact Ultralytics YOLO output layout and random weights.

For checks and tests where a real YOLO export cannot be downloaded: it exercises the
TorchScript path (shapes, decoding, NMS, masks, throughput), not accuracy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class ToyYolo(nn.Module):
    """``[B, 4 + nc (+ nm), 8400]`` at 640x640 (three levels, strides 8/16/32), plus prototypes when nm > 0."""

    def __init__(self, nc: int, nm: int = 0, width: int = 16) -> None:
        super().__init__()
        self.nc, self.nm = nc, nm
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=4, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
        )
        self.head = nn.Conv2d(width, 4 + nc + nm, 1)
        self.proto = nn.Conv2d(width, max(nm, 1), 1)

    def forward(self, x: torch.Tensor):
        f8 = torch.relu(self.stem(x))
        levels = [f8, nn.functional.avg_pool2d(f8, 2), nn.functional.avg_pool2d(f8, 4)]
        out = torch.cat([self.head(f).flatten(2) for f in levels], 2)
        box = torch.sigmoid(out[:, :4]) * x.shape[-1]
        scores = torch.sigmoid(out[:, 4 : 4 + self.nc])
        if self.nm == 0:
            return torch.cat([box, scores], 1)
        protos = nn.functional.interpolate(self.proto(f8), scale_factor=0.5)
        return torch.cat([box, scores, out[:, 4 + self.nc :]], 1), protos


def export_toy(path: str | Path, nc: int = 80, nm: int = 0, size: int = 640, seed: int = 0) -> Path:
    """Trace a seeded ToyYolo to a TorchScript file, names embedded as Ultralytics does."""
    import json

    torch.manual_seed(seed)
    module = ToyYolo(nc, nm).eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, torch.zeros(1, 3, size, size), check_trace=False)
    names = json.dumps({"names": {i: f"class{i}" for i in range(nc)}})
    torch.jit.save(traced, str(path), _extra_files={"config.txt": names})
    return Path(path)
