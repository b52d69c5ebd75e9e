"""Overlays: masks blended in, boxes and labels on top, input left alone."""

from __future__ import annotations

import numpy as np
import pytest

from vsa.draw import COLOURS, colour_for, draw_detections
from vsa.models.base import Detection

H, W = 240, 320
BG = 100
BOX = (40, 60, 200, 180)  # x1, y1, x2, y2: label goes above the box (rows < 60)


def frame() -> np.ndarray:
    return np.full((H, W, 3), BG, np.uint8)


def circle_mask(box=BOX) -> np.ndarray:
    x1, y1, x2, y2 = box
    h, w = y2 - y1, x2 - x1
    yy, xx = np.mgrid[:h, :w]
    return (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= (min(h, w) / 2 - 10) ** 2


def detection(mask: np.ndarray | None = None, box=BOX, class_id: int = 1) -> Detection:
    return Detection("square", class_id, 0.9, tuple(float(v) for v in box), mask)


def far_from_box(box=BOX, margin: int = 3, label_rows: int = 24) -> np.ndarray:
    """Pixels well away from the box outline and from the label above it."""
    x1, y1, x2, y2 = box
    keep = np.ones((H, W), bool)
    keep[max(0, y1 - label_rows) : y2 + margin, max(0, x1 - margin) : x2 + margin] = False
    return keep


def blend(colour: tuple[int, int, int], alpha: float = 0.45) -> np.ndarray:
    return (BG * (1 - alpha) + np.array(colour, np.float32) * alpha).astype(np.uint8)


def test_colour_for_cycles_the_palette():
    assert colour_for(0) == COLOURS[0]
    assert colour_for(len(COLOURS) + 2) == COLOURS[2]
    assert len(set(COLOURS)) == len(COLOURS)


def test_returns_a_new_array_and_leaves_input_untouched():
    image = frame()
    before = image.copy()
    out = draw_detections(image, [detection(circle_mask())])
    assert out is not image
    assert not np.shares_memory(out, image)
    np.testing.assert_array_equal(image, before)
    assert (out != image).any()


def test_works_on_a_read_only_input():
    image = frame()
    image.setflags(write=False)  # arrays from the object store are read-only
    out = draw_detections(image, [detection(circle_mask())])
    assert out.flags.writeable
    assert (out != BG).any()
    assert (image == BG).all()


def test_in_place_draws_into_the_input():
    image = frame()
    out = draw_detections(image, [detection(circle_mask())], in_place=True)
    assert out is image
    assert (image != BG).any()


def test_no_detections_returns_an_equal_copy():
    image = frame()
    out = draw_detections(image, [])
    assert out is not image
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("class_id", [0, 1, 5])
def test_box_outline_has_the_class_colour(class_id: int):
    x1, y1, x2, y2 = BOX
    out = draw_detections(frame(), [detection(None, class_id=class_id)])
    colour = np.array(colour_for(class_id), int)
    mid_x, mid_y = (x1 + x2) // 2, (y1 + y2) // 2
    # bottom, right and left edges, away from the label; anti-aliasing may soften them a bit
    for y, x in [(y2 - 1, mid_x), (mid_y, x2 - 1), (mid_y, x1)]:
        assert np.abs(out[y, x].astype(int) - colour).max() <= 16, (y, x, out[y, x])
    # inside the box, away from the outline, nothing is drawn without a mask
    assert (out[y1 + 5 : y2 - 5, x1 + 5 : x2 - 5] == BG).all()


def test_label_is_drawn_above_the_box():
    x1, y1, _, _ = BOX
    out = draw_detections(frame(), [detection(None, class_id=2)])
    label_area = out[y1 - 20 : y1, x1 : x1 + 60]
    colour = np.array(colour_for(2), np.uint8)
    assert (label_area == colour).all(-1).sum() > 100  # the filled tag
    assert (label_area >= 200).all(-1).sum() > 10  # white (anti-aliased) text on it


def test_label_moves_inside_when_the_box_touches_the_top():
    box = (40, 0, 200, 120)
    out = draw_detections(frame(), [detection(None, box=box, class_id=2)])
    colour = np.array(colour_for(2), np.uint8)
    assert (out[2:20, 42:100] == colour).all(-1).sum() > 100


def test_mask_region_is_blended_and_outside_unchanged():
    x1, y1, x2, y2 = BOX
    mask = circle_mask()
    out = draw_detections(frame(), [detection(mask, class_id=1)])
    inside = np.zeros((H, W), bool)
    inside[y1:y2, x1:x2] = mask
    expected = blend(colour_for(1))
    # every mask pixel changed; away from the outline it is exactly the blend
    assert (out[inside] != BG).any(-1).all()
    interior = inside.copy()
    interior[: y1 + 5] = interior[y2 - 5 :] = False
    interior[:, : x1 + 5] = interior[:, x2 - 5 :] = False
    assert interior.sum() > 5000
    assert (out[interior] == expected).all()
    # inside the box but outside the mask (corners), away from outline: unchanged
    corner = out[y1 + 4 : y1 + 12, x1 + 4 : x1 + 12]
    assert (corner == BG).all()
    # outside the box: unchanged
    assert (out[far_from_box()] == BG).all()


def test_masks_off_leaves_the_mask_interior_alone():
    x1, y1, x2, y2 = BOX
    mask = circle_mask()
    out = draw_detections(frame(), [detection(mask)], draw_masks=False)
    interior = np.zeros((H, W), bool)
    interior[y1 + 5 : y2 - 5, x1 + 5 : x2 - 5] = mask[5:-5, 5:-5]
    assert (out[interior] == BG).all()
    # the box outline is still drawn
    assert (out[y2 - 1, (x1 + x2) // 2] != BG).any()
    assert (out[far_from_box()] == BG).all()


def test_mask_alpha_controls_the_blend():
    out = draw_detections(frame(), [detection(circle_mask(), class_id=3)], mask_alpha=1.0)
    cy, cx = (BOX[1] + BOX[3]) // 2, (BOX[0] + BOX[2]) // 2
    assert tuple(out[cy, cx]) == colour_for(3)


@pytest.mark.parametrize(
    "box",
    [
        (-30, -20, 60, 50),  # top-left corner outside
        (280, 200, 400, 300),  # bottom-right corner outside
        (-50, 100, 10, 140),  # mostly left of the frame
        (400, 300, 500, 400),  # entirely outside
        (-100, -100, -10, -10),  # entirely outside, negative
        (0, 0, W, H),  # the whole frame
    ],
)
def test_detections_partly_or_fully_outside_do_not_crash(box):
    x1, y1, x2, y2 = box
    mask = np.ones((y2 - y1, x2 - x1), bool)
    image = frame()
    out = draw_detections(image, [detection(mask, box=box)])
    assert out.shape == image.shape and out.dtype == np.uint8
    vx1, vy1, vx2, vy2 = max(x1, 0), max(y1, 0), min(x2, W), min(y2, H)
    if vx2 - vx1 > 12 and vy2 - vy1 > 12:
        # the visible part of the mask is blended
        cy, cx = (vy1 + vy2) // 2, (vx1 + vx2) // 2
        assert tuple(out[cy, cx]) == tuple(blend(colour_for(1)))


def test_visible_part_of_a_clipped_mask_is_the_right_part():
    # a box hanging off the left edge whose mask only covers its right half
    box = (-40, 100, 40, 180)
    mask = np.zeros((80, 80), bool)
    mask[:, 40:] = True  # frame columns 0..39
    out = draw_detections(frame(), [detection(mask, box=box)], mask_alpha=1.0)
    colour = colour_for(1)
    assert tuple(out[150, 20]) == colour
    assert tuple(out[150, 60]) == (BG, BG, BG)


def test_several_detections_each_get_their_colour():
    a = (20, 40, 120, 140)
    b = (180, 60, 300, 200)
    dets = [
        detection(np.ones((100, 100), bool), box=a, class_id=0),
        detection(np.ones((140, 120), bool), box=b, class_id=2),
    ]
    out = draw_detections(frame(), dets)
    assert tuple(out[90, 70]) == tuple(blend(colour_for(0)))
    assert tuple(out[130, 240]) == tuple(blend(colour_for(2)))


# --- in place: the video sink draws into the decoded frame itself -------------------------

IN_PLACE_CASES = [
    pytest.param([], id="nothing"),
    pytest.param([(BOX, "circle", 1)], id="circle-mask"),
    pytest.param([(BOX, None, 2)], id="box-only"),
    pytest.param([((-30, -20, 60, 50), "full", 0)], id="clipped-top-left"),
    pytest.param([((280, 200, 400, 300), "full", 4)], id="clipped-bottom-right"),
    pytest.param([((0, 0, W, H), "full", 3)], id="whole-frame"),
    pytest.param(
        [((20, 40, 120, 140), "full", 0), ((80, 60, 300, 200), "circle", 2)], id="overlapping"
    ),
]


def detections_for(spec) -> list[Detection]:
    out = []
    for box, kind, class_id in spec:
        x1, y1, x2, y2 = box
        mask = None
        if kind == "circle":
            mask = circle_mask(box)
        elif kind == "full":
            mask = np.ones((y2 - y1, x2 - x1), bool)
        out.append(detection(mask, box=box, class_id=class_id))
    return out


def textured() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (H, W, 3), np.uint8)


@pytest.mark.parametrize("spec", IN_PLACE_CASES)
@pytest.mark.parametrize("draw_masks", [True, False])
def test_in_place_gives_the_same_pixels_as_a_copy(spec, draw_masks: bool):
    dets = detections_for(spec)
    original = textured()
    on_copy = draw_detections(original, dets, draw_masks=draw_masks)
    image = original.copy()
    in_place = draw_detections(image, dets, draw_masks=draw_masks, in_place=True)
    assert in_place is image
    np.testing.assert_array_equal(in_place, on_copy)


@pytest.mark.parametrize("spec", IN_PLACE_CASES)
def test_in_place_on_a_read_only_image_falls_back_to_a_copy(spec):
    dets = detections_for(spec)
    image = textured()
    before = image.copy()
    image.setflags(write=False)
    out = draw_detections(image, dets, in_place=True)
    assert out is not image and out.flags.writeable
    np.testing.assert_array_equal(image, before)  # untouched
    np.testing.assert_array_equal(out, draw_detections(before, dets))


def test_masks_are_blended_inside_their_box_only():
    # a mask array larger than its box: only the box-sized part is blended
    box = (40, 60, 100, 120)
    mask = np.ones((90, 90), bool)
    out = draw_detections(frame(), [detection(mask, box=box)], mask_alpha=1.0)
    changed = (out != BG).any(-1)
    x1, y1, x2, y2 = box
    # below the label (above the box) everything changed is in the box or on its outline
    rows, cols = np.nonzero(changed[y1:])
    assert cols.min() >= x1 - 2 and cols.max() <= x2 + 2
    assert rows.max() + y1 <= y2 + 2
    assert changed[y1 + 5 : y2 - 5, x1 + 5 : x2 - 5].all()
    assert not changed[y2 + 3 :, :].any()
