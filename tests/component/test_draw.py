"""Overlays: masks blended in, boxes and labels on top, input left alone."""

from __future__ import annotations

import numpy as np
import pytest

from vsa.core.scene import LineView, SceneView, ZoneView
from vsa.draw import (
    COLOURS,
    LINE_COLOUR,
    WARNING_COLOUR,
    ZONE_COLOUR,
    colour_for,
    draw_detections,
    track_colour,
)
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


# --- tracked detections and the scene overlay (zones, lines, trails) ----------------------


def changed(out: np.ndarray) -> np.ndarray:
    return (out != BG).any(-1)


def near(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 16) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(colour, int)).max() <= tolerance)


def tag_right_edge(out: np.ndarray, class_id: int) -> int:
    """The rightmost column of the filled label tag above BOX."""
    x1, y1, _, _ = BOX
    tag = (out[y1 - 20 : y1, :] == np.array(colour_for(class_id), np.uint8)).all(-1)
    return int(np.nonzero(tag.any(0))[0].max())


def test_a_tracked_detection_shows_its_track_id_in_its_label():
    plain = draw_detections(frame(), [detection(None, class_id=2)])
    tracked_det = detection(None, class_id=2)
    tracked_det.track_id = 12
    tracked = draw_detections(frame(), [tracked_det])
    # "#12 square 0.90" is wider than "square 0.90"; the tag keeps the class colour
    assert tag_right_edge(tracked, 2) > tag_right_edge(plain, 2) + 15
    x1, y1, _, _ = BOX
    label = tracked[y1 - 20 : y1, x1 : tag_right_edge(tracked, 2)]
    assert (label >= 200).all(-1).sum() > 10  # white text in the tag
    # the box itself is drawn as before
    np.testing.assert_array_equal(tracked[y1 + 1 :], plain[y1 + 1 :])


def test_track_colour_is_stable_and_distinct():
    assert track_colour(7) == track_colour(7)
    colours = {track_colour(i) for i in range(24)}
    assert len(colours) == 24
    assert all(0 <= c <= 255 for colour in colours for c in colour)
    assert track_colour(-3) == track_colour(-3)


@pytest.mark.parametrize("spec", IN_PLACE_CASES)
def test_without_a_scene_the_pixels_are_the_old_ones(spec):
    dets = detections_for(spec)
    original = textured()
    expected = draw_detections(original, dets)
    np.testing.assert_array_equal(draw_detections(original, dets, scene=None), expected)
    np.testing.assert_array_equal(draw_detections(original, dets, scene=SceneView()), expected)


def test_a_line_is_drawn_along_its_path():
    line = LineView("gate", (20.0, 200.0), (300.0, 200.0), 12, 4, "left")
    out = draw_detections(frame(), [], scene=SceneView(lines=(line,)))
    for x in [*range(25, 100, 5), *range(220, 296, 5)]:  # away from the arrow and the tag
        assert near(out[200, x], LINE_COLOUR), (x, out[200, x])
    assert not changed(out)[:150].any()  # nothing far from it
    assert not changed(out)[:, :15].any() and not changed(out)[:, 305:].any()


# horizontal line at y=120 from x=20 to 300 (middle x=160), and vertical at x=160 from y=20 to 220
# (middle y=120); "left" of start -> end on the screen (y down) is where cross < 0
ABOVE, BELOW = (slice(104, 117), slice(140, 181)), (slice(123, 140), slice(100, 221))
RIGHT, LEFT = (slice(100, 141), slice(163, 260)), (slice(100, 141), slice(60, 157))


@pytest.mark.parametrize(
    "start, end, in_side, arrow_side, tag_side",
    [
        ((20, 120), (300, 120), "left", ABOVE, BELOW),  # going right: left is up
        ((20, 120), (300, 120), "right", BELOW, ABOVE),
        ((300, 120), (20, 120), "left", BELOW, ABOVE),  # going left: left is down
        ((160, 20), (160, 220), "left", RIGHT, LEFT),  # going down: left is +x on screen
        ((160, 20), (160, 220), "right", LEFT, RIGHT),
    ],
)
def test_a_line_arrow_points_to_its_in_side(start, end, in_side, arrow_side, tag_side):
    sx, sy = start
    ex, ey = end
    # the definition of the contract, for the arrow's region's centre
    ys, xs = arrow_side
    px, py = (xs.start + xs.stop) / 2, (ys.start + ys.stop) / 2
    cross = (ex - sx) * (py - sy) - (ey - sy) * (px - sx)
    assert (cross < 0) == (in_side == "left")
    line = LineView("gate", (float(sx), float(sy)), (float(ex), float(ey)), 1, 2, in_side)
    drawn = changed(draw_detections(frame(), [], scene=SceneView(lines=(line,))))
    # a thin arrow on the "in" side, the wide tag on the other
    assert 5 <= drawn[arrow_side].sum() < 150, drawn[arrow_side].sum()
    assert drawn[tag_side].sum() > 500


def test_a_trail_is_drawn_along_its_points_in_its_track_colour():
    points = tuple((float(x), 40.0 + 0.5 * x) for x in range(20, 300, 10))  # oldest first
    out = draw_detections(frame(), [], scene=SceneView(trails={7: points}))
    for x, y in points[1:-1]:
        assert changed(out)[round(y) - 1 : round(y) + 2, round(x)].any(), (x, y)
    hits = out[changed(out)]
    assert any(near(p, track_colour(7), 8) for p in hits)
    keep = np.ones((H, W), bool)
    for x, y in points:
        keep[max(0, round(y) - 8) : round(y) + 8, max(0, round(x) - 12) : round(x) + 12] = False
    assert not changed(out)[keep].any()


ZONE = ((60.0, 60.0), (260.0, 60.0), (260.0, 200.0), (60.0, 200.0))


def zone_tag_width(out: np.ndarray, colour: tuple[int, int, int]) -> int:
    tag = (out[62:76, 60:W] == np.array(colour, np.uint8)).all(-1)
    return int(np.nonzero(tag.any(0))[0].max())


def test_a_zone_is_outlined_lightly_filled_and_tagged_with_its_occupancy():
    zone = ZoneView("lot", ZONE, occupancy=3)
    out = draw_detections(frame(), [], scene=SceneView(zones=(zone,)), zone_alpha=0.2)
    for x, y in [(160, 200), (60, 130), (260, 130), (200, 60)]:  # on the outline
        assert near(out[y, x], ZONE_COLOUR), (x, y, out[y, x])
    expected = BG * 0.8 + np.array(ZONE_COLOUR) * 0.2  # the fill, inside
    assert np.abs(out[150, 160].astype(float) - expected).max() <= 1.5
    assert (out[70:74, 62:75] == np.array(ZONE_COLOUR, np.uint8)).all(-1).any()  # the tag
    outside = changed(out)
    outside[57:204, 57:264] = False
    assert not outside.any()


def test_a_zone_with_loitering_tracks_is_in_the_warning_colour_with_a_longer_tag():
    calm = draw_detections(frame(), [], scene=SceneView(zones=(ZoneView("lot", ZONE, 3),)))
    loiter = draw_detections(frame(), [], scene=SceneView(zones=(ZoneView("lot", ZONE, 3, 1),)))
    assert near(loiter[200, 160], WARNING_COLOUR) and not near(loiter[200, 160], ZONE_COLOUR)
    # "lot: 3 (1 loitering)" is longer than "lot: 3"
    assert zone_tag_width(loiter, WARNING_COLOUR) > zone_tag_width(calm, ZONE_COLOUR) + 40


def test_a_zone_fill_stays_inside_its_polygon():
    triangle = ((40.0, 40.0), (280.0, 40.0), (40.0, 220.0))
    out = draw_detections(frame(), [], scene=SceneView(zones=(ZoneView("t", triangle, 0),)))
    assert changed(out)[100, 80]  # inside
    assert not changed(out)[200, 260]  # inside the bounding rect, outside the triangle
    bare = draw_detections(
        frame(), [], scene=SceneView(zones=(ZoneView("t", triangle, 0),)), zone_alpha=0
    )
    assert not changed(bare)[100, 80]  # no fill: only the outline and tag


def test_the_scene_is_drawn_under_the_boxes():
    x1, y1, x2, y2 = BOX
    mid_y = (y1 + y2) // 2
    line = LineView("gate", (0.0, mid_y), (float(W), mid_y), 0, 0, "left")
    zone = ZoneView("lot", ((30.0, 50.0), (210.0, 50.0), (210.0, 190.0), (30.0, 190.0)), 1)
    scene = SceneView(lines=(line,), zones=(zone,), trails={3: ((x1, mid_y), (x2, y2))})
    out = draw_detections(frame(), [detection(None, class_id=5)], scene=scene)
    for y, x in [(mid_y, x1), (mid_y, x2 - 1), (y2 - 1, (x1 + x2) // 2)]:
        assert near(out[y, x], colour_for(5)), (y, x, out[y, x])


def test_in_place_with_a_scene_gives_the_same_pixels_as_a_copy():
    scene = SceneView(
        lines=(LineView("gate", (-50.0, 100.0), (400.0, 150.0), 3, 4, "right"),),
        zones=(ZoneView("lot", ((-20.0, -20.0), (200.0, 10.0), (150.0, 300.0)), 2, 1),),
        trails={1: ((10.0, 10.0), (50.0, 60.0), (90.0, 80.0)), 2: ((300.0, 200.0), (330.0, 250.0))},
    )
    dets = detections_for([(BOX, "circle", 1)])
    original = textured()
    on_copy = draw_detections(original, dets, scene=scene)
    image = original.copy()
    assert draw_detections(image, dets, in_place=True, scene=scene) is image
    np.testing.assert_array_equal(image, on_copy)
    assert (on_copy != draw_detections(original, dets)).any()


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    "scene",
    [
        pytest.param(
            SceneView(lines=(LineView("a", (-500.0, -40.0), (900.0, 600.0), 1, 1, "left"),)),
            id="line-crossing-the-frame",
        ),
        pytest.param(
            SceneView(lines=(LineView("a", (-1e12, 120.0), (1e12, 121.0), 1, 1, "right"),)),
            id="line-very-far",
        ),
        pytest.param(
            SceneView(lines=(LineView("a", (100.0, 100.0), (100.0, 100.0), 0, 0, "left"),)),
            id="line-of-no-length",
        ),
        pytest.param(
            SceneView(lines=(LineView("a", (0.0, 0.0), (W - 1.0, 0.0), 0, 0, "sideways"),)),
            id="line-on-the-edge-unknown-side",
        ),
        pytest.param(
            SceneView(zones=(ZoneView("z", ((-100.0, -100.0), (1e9, -50.0), (50.0, 1e9)), 2, 1),)),
            id="zone-mostly-outside",
        ),
        pytest.param(
            SceneView(zones=(ZoneView("z", ((5.0, 5.0),), 1), ZoneView("y", (), 0))),
            id="zones-degenerate",
        ),
        pytest.param(
            SceneView(zones=(ZoneView("z", ((0.0, 0.0), (W, 0.0), (W, H), (0.0, H)), 9, 9),)),
            id="zone-the-whole-frame",
        ),
        pytest.param(
            SceneView(
                trails={
                    1: ((-50.0, -50.0), (400.0, 300.0), (1e15, -1e15)),
                    2: ((10.0, 10.0),),
                    3: (),
                    4: ((INF, 5.0), (20.0, 20.0), (NAN, 30.0), (60.0, 40.0)),
                }
            ),
            id="trails-outside-short-and-not-finite",
        ),
    ],
)
def test_a_scene_partly_or_fully_outside_does_not_crash(scene: SceneView):
    image = frame()
    out = draw_detections(image, [detection(None)], scene=scene)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == BG).all()


@pytest.mark.parametrize(
    "scene",
    [
        SceneView(lines=(LineView("a", (-100.0, -10.0), (500.0, -40.0), 1, 1, "left"),)),
        SceneView(zones=(ZoneView("z", ((400.0, 10.0), (500.0, 10.0), (450.0, 90.0)), 1, 1),)),
        SceneView(trails={1: ((-30.0, 10.0), (-5.0, 200.0)), 2: ((330.0, 250.0), (900.0, 300.0))}),
    ],
    ids=["line", "zone", "trails"],
)
def test_a_scene_wholly_outside_the_frame_draws_nothing(scene: SceneView):
    out = draw_detections(frame(), [], scene=scene)
    assert not changed(out).any()
