"""Detections in source pixels, their JSON form (COCO RLE masks) and the letterbox mapping.

Numpy only: the code that builds detections from model output (torch, OpenCV) stays in
``vsa.models``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Attributes(Mapping[str, Any]):
    """A detection's attributes: a read-only mapping of str to JSON values.

    Values are str, int, float (finite), bool, None, or lists/tuples and str-keyed dicts of
    them; lists are kept as tuples and dicts as ``Attributes``, so nothing inside can change
    and the mapping hashes. ``to_json()`` gives plain dicts and lists back. Anything else (a
    numpy scalar, a set, a non-str key, NaN) is refused here, not when the line is written.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        merged = {**(items or {}), **more}
        self._items: dict[str, Any] = {
            _key(k, "attributes"): _frozen(v, k) for k, v in merged.items()
        }

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attributes):
            return self._items == other._items
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"Attributes({self._items!r})"

    def __reduce__(self) -> tuple[type[Attributes], tuple[dict[str, Any]]]:
        return Attributes, (self._items,)

    def to_json(self) -> dict[str, Any]:
        return {k: _thawed(v) for k, v in self._items.items()}


NO_ATTRIBUTES = Attributes()  # the shared default: a detection without attributes costs nothing


def _key(key: object, where: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"{where}: keys must be str, got {key!r} ({type(key).__name__})")
    return key


def _frozen(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"attribute {where!r}: {value} is not a JSON number (finite float)")
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v, where) for v in value)
    if isinstance(value, Mapping):
        return Attributes({_key(k, f"attribute {where!r}"): v for k, v in value.items()})
    raise TypeError(
        f"attribute {where!r}: {type(value).__name__} is not a JSON value; expected str, int, "
        "float, bool, None, or a list or str-keyed dict of them (convert numpy values with "
        "int() or float())"
    )


def _thawed(value: Any) -> Any:
    if isinstance(value, Attributes):
        return value.to_json()
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value


@dataclass
class Detection:
    """One object in source pixels. ``mask`` (bool) covers ``mask_box()`` of the frame, when given.

    ``track_id``: the object's identity across frames, when a tracker gave it one (None until
    then). ``attributes``: per-detection values a later stage adds (a plain mapping is turned
    into :class:`Attributes`). Both default to nothing, so building a detection costs what it
    did, and the JSON line leaves them out while unset.
    """

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels
    mask: np.ndarray | None = field(default=None, repr=False)
    track_id: int | None = None
    attributes: Attributes = NO_ATTRIBUTES

    def __post_init__(self) -> None:
        if type(self.attributes) is not Attributes:
            self.attributes = Attributes(self.attributes)

    def mask_box(self) -> tuple[int, int, int, int]:
        """Integer region ``[y1:y2, x1:x2]`` that ``mask`` covers."""
        x1, y1, x2, y2 = self.box
        return int(math.floor(x1)), int(math.floor(y1)), int(math.ceil(x2)), int(math.ceil(y2))

    def full_mask(self, height: int, width: int) -> np.ndarray | None:
        """The mask as a ``height`` x ``width`` array (for readers; the frame path never needs one)."""
        if self.mask is None:
            return None
        out = np.zeros((height, width), bool)
        x1, y1, x2, y2 = self.mask_box()
        out[y1:y2, x1:x2] = self.mask[: y2 - y1, : x2 - x1]
        return out

    def mask_in_frame(self, height: int, width: int) -> tuple[np.ndarray, int, int] | None:
        """The part of ``mask`` inside a ``height`` x ``width`` frame, and where it starts there.

        ``(region, x, y)``: ``region`` is a view of ``mask`` (possibly empty) that covers
        ``[y : y + region.shape[0], x : x + region.shape[1]]`` of the frame. None without a mask.
        """
        if self.mask is None:
            return None
        x1, y1, x2, y2 = self.mask_box()
        mask = self.mask[: max(0, y2 - y1), : max(0, x2 - x1)]
        cx1, cy1 = min(max(x1, 0), width), min(max(y1, 0), height)
        cx2 = max(cx1, min(x1 + mask.shape[1], width))
        cy2 = max(cy1, min(y1 + mask.shape[0], height))
        return mask[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1], cx1, cy1

    def to_json(self, height: int, width: int) -> dict[str, Any]:
        record: dict[str, Any] = {
            "label": self.label,
            "class_id": self.class_id,
            "score": round(float(self.score), 4),
            "box": [round(float(v), 1) for v in self.box],
        }
        if self.track_id is not None:
            record["track_id"] = int(self.track_id)
        if self.attributes:
            record["attributes"] = self.attributes.to_json()
        placed = self.mask_in_frame(height, width)
        if placed is not None:  # the box-sized mask, never a frame-sized one
            record["mask"] = rle_encode_region(*placed, height, width)
        return record


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE (column-major, counts start with a run of zeros)."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_encode_region(mask: np.ndarray, x: int, y: int, height: int, width: int) -> dict[str, Any]:
    """``rle_encode`` of a ``height`` x ``width`` frame that is ``mask`` at ``(x, y)``, zero elsewhere.

    The same counts as placing ``mask`` into a full-frame array and encoding that, computed
    from the region alone: no frame-sized array is made. Parts of ``mask`` outside the frame
    are cut off.
    """
    total = height * width
    mask = np.asarray(mask)
    x1, y1 = max(x, 0), max(y, 0)
    x2, y2 = min(x + mask.shape[1], width), min(y + mask.shape[0], height)
    if x2 > x1 and y2 > y1:
        sub = mask[y1 - y : y2 - y, x1 - x : x2 - x]
        # Each column of the region between rows of zeros: +1 where a run of ones starts,
        # -1 one past where it ends, so every column's runs are closed within the column.
        padded = np.zeros((sub.shape[1], sub.shape[0] + 2), np.int8)  # columns as rows
        padded[:, 1:-1] = sub.T != 0
        col, row = np.nonzero(np.diff(padded, axis=1))  # in column-major order of the frame
        # starts and ends alternate; position in the frame's column-major pixel order
        edges = (col.astype(np.int64) + x1) * height + (row.astype(np.int64) + y1)
        starts, ends = edges[0::2], edges[1::2]
        # a run that ends at the bottom of a column and one that starts at the top of the
        # next are one run in column-major order
        joined = ends[:-1] == starts[1:]
        if joined.any():
            starts = starts[np.concatenate(([True], ~joined))]
            ends = ends[np.concatenate((~joined, [True]))]
        edges = np.stack((starts, ends), 1).ravel()
    else:
        edges = np.zeros(0, np.int64)
    counts = np.diff(np.concatenate(([0], edges, [total]))).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # the last run of ones reached the last pixel
        counts.pop()
    return {"size": [int(height), int(width)], "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    h, w = rle["size"]
    flat = np.zeros(h * w, np.uint8)
    pos, value = 0, 0
    for count in rle["counts"]:
        flat[pos : pos + count] = value
        pos += count
        value ^= 1
    return flat.reshape((h, w), order="F").astype(bool)


@dataclass
class Letterbox:
    """How a source frame was fitted into the model input: ``model = source * scale + pad``."""

    scale: float
    pad_x: int
    pad_y: int
    src_h: int
    src_w: int

    def to_source(self, x: float, y: float) -> tuple[float, float]:
        return (x - self.pad_x) / self.scale, (y - self.pad_y) / self.scale


__all__ = [
    "NO_ATTRIBUTES",
    "Attributes",
    "Detection",
    "Letterbox",
    "rle_decode",
    "rle_encode",
    "rle_encode_region",
]
