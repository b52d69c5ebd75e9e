"""The classes of the ``synthetic://shapes`` scenes, shared by the generator and the models."""

from __future__ import annotations

CLASSES = ("circle", "square", "triangle", "diamond")
# BGR base colour per class; objects jitter around it.
PALETTE_BGR = ((40, 40, 220), (60, 200, 60), (220, 90, 40), (40, 210, 230))

__all__ = ["CLASSES", "PALETTE_BGR"]
