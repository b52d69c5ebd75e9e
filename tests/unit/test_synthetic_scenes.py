"""``synthetic://shapes`` scenes for tracking: ids and visibility in the truth, ``scene=``,
``truth=``, ``ShapesScene.truth_at``."""

from __future__ import annotations

import hashlib
import itertools
import math
from typing import Any

import numpy as np
import pytest

from vsa.sources.synthetic import (
    CLASSES,
    PALETTE_BGR,
    PILLAR_BGR,
    SCENES,
    ShapesScene,
    SyntheticParams,
    SyntheticSource,
)

Truth = list[dict[str, Any]]


def scene(name: str, w: int = 320, h: int = 180, objects: int = 3, seed: int = 1) -> ShapesScene:
    return ShapesScene(SyntheticParams(seed=seed, width=w, height=h, objects=objects, scene=name))


def truths(sc: ShapesScene, frames: int) -> list[Truth]:
    return [sc.truth_at(k) for k in range(frames)]


def tracks(frames: list[Truth]) -> dict[int, list[tuple[int, dict[str, Any]]]]:
    """id -> [(frame, truth), ...] in frame order."""
    out: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for k, truth in enumerate(frames):
        for t in truth:
            out.setdefault(t["id"], []).append((k, t))
    return out


def centre(box: list[float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# -- bounce (the default) is the scene it always was --------------------------------------

# sha256 of the image and the boxes of frame k, computed with the generator as it was before
# scenes existed (these frames pin the built-in detector's training and accuracy scenes)
BOUNCE_FRAMES = [
    (7, 640, 360, 5, 0, "2702265487f919fb854ad645c55c925e38f14400f25eeedd0aa4333bc3b5bd49",
     [[56, 101, 125, 207], [175, 147, 288, 281], [408, 169, 444, 209], [443, 24, 508, 89],
      [280, 117, 413, 250]]),
    (7, 640, 360, 5, 123, "f48fd0a100e7fd7fdf9f98e22dd5ec7eb1b2022db0b582a60a50812fb7173b26",
     [[103, 164, 172, 270], [137, 35, 269, 160], [381, 4, 437, 101], [410, 261, 475, 326],
      [402, 14, 535, 147]]),
    (3, 160, 96, 3, 40, "5925dd531be9d75d901e855eed566d3e1631a5eeba7db893e648b7edfe8299b3",
     [[42, 58, 56, 79], [111, 21, 136, 46], [120, 34, 143, 57]]),
]  # fmt: skip


@pytest.mark.parametrize(("seed", "w", "h", "objects", "k", "digest", "boxes"), BOUNCE_FRAMES)
def test_bounce_renders_the_frames_it_always_did(seed, w, h, objects, k, digest, boxes):
    for params in (
        SyntheticParams(seed=seed, width=w, height=h, objects=objects),
        SyntheticParams.from_uri(
            f"synthetic://shapes?seed={seed}&width={w}&height={h}&objects={objects}&scene=bounce"
        ),
    ):
        image, truth = ShapesScene(params).render(k)
        assert hashlib.sha256(image.tobytes()).hexdigest() == digest
        assert [t["box"] for t in truth] == boxes
        assert [t["id"] for t in truth] == list(range(objects))


def test_bounce_ids_are_the_object_indices_in_every_frame():
    sc = scene("bounce", 160, 96, objects=5, seed=2)
    for k in range(0, 200, 7):
        truth = sc.truth_at(k)
        ids = [t["id"] for t in truth]
        assert ids == sorted(set(ids)) and set(ids) <= set(range(5))
        for t in truth:  # each object keeps its class
            assert t["class_id"] == sc.objects[t["id"]]["cls"]


# -- every scene ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENES)
def test_ids_are_stable_and_follow_the_motion(name: str):
    w, h, frames = 320, 180, 600
    sc = scene(name, w, h, objects=12 if name == "crowd" else 3, seed=4)
    short = min(w, h)
    # fastest motion of any scene, plus a spinning shape's box and the pixel grid
    step = (2 * w / 640 if name == "slow" else 1.2 * short / 60) + 0.01 * short + 2
    seen = tracks(truths(sc, frames))
    assert len(seen) >= 3
    classes: dict[int, int] = {}
    for oid, track in seen.items():
        for (k1, a), (k2, b) in itertools.pairwise(track):
            assert classes.setdefault(oid, a["class_id"]) == b["class_id"]
            whole = a["visible"] >= 0.95 and b["visible"] >= 0.95
            if k2 == k1 + 1 and whole:
                (x1, y1), (x2, y2) = centre(a["box"]), centre(b["box"])
                assert math.hypot(x2 - x1, y2 - y1) <= step, (name, oid, k1, a["box"], b["box"])


@pytest.mark.parametrize("name", SCENES)
def test_truth_masks_boxes_and_visibility_agree(name: str):
    w, h = 160, 96
    sc = scene(name, w, h, objects=8 if name == "crowd" else 3, seed=5)
    seen = 0
    for k in range(0, 400, 9):
        image, truth = sc.render(k)
        assert image.shape == (h, w, 3) and image.dtype == np.uint8 and image.flags.c_contiguous
        covered = np.zeros((h, w), bool)
        for t in truth:
            assert list(t) == ["id", "class_id", "label", "box", "area", "visible", "mask"]
            mask = t["mask"]
            assert mask.shape == (h, w) and mask.dtype == bool and mask.any()
            assert not (covered & mask).any(), "visible masks overlap"
            covered |= mask
            ys, xs = np.nonzero(mask)
            assert t["box"] == [xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0]
            assert t["area"] == int(mask.sum())
            assert t["label"] == CLASSES[t["class_id"]]
            assert 0 < t["visible"] <= 1.0 and t["visible"] == round(t["visible"], 3)
            pixels = image[mask].astype(int)
            assert (np.abs(pixels - np.array(PALETTE_BGR[t["class_id"]])) <= 20).all()
            assert (pixels == pixels[0]).all()
            seen += 1
        bg = image[~covered].astype(int)
        assert (bg.max(1) - bg.min(1) <= 14).all()  # grey background (and pillar)
        assert [t["id"] for t in truth] == sorted({t["id"] for t in truth})
    assert seen >= 10


@pytest.mark.parametrize("name", SCENES)
def test_truth_at_is_the_render_truth_without_masks(name: str):
    sc = scene(name, 160, 96, objects=6 if name == "crowd" else 3, seed=6)
    other = scene(name, 160, 96, objects=6 if name == "crowd" else 3, seed=6)
    for k in (0, 5, 77, 150, 333, 20, 1000):
        _, truth = sc.render(k)
        assert sc.truth_at(k) == [{key: v for key, v in t.items() if key != "mask"} for t in truth]
        assert other.truth_at(k) == sc.truth_at(k)  # pure: no state from earlier frames


@pytest.mark.parametrize("name", SCENES)
def test_same_seed_same_truth_other_seed_other_truth(name: str):
    objects = 6 if name == "crowd" else 3
    a = truths(scene(name, objects=objects, seed=11), 250)
    b = truths(scene(name, objects=objects, seed=11), 250)
    c = truths(scene(name, objects=objects, seed=12), 250)
    assert a == b
    assert a != c
    image_a, _ = scene(name, objects=objects, seed=11).render(200)
    image_b, _ = scene(name, objects=objects, seed=11).render(200)
    np.testing.assert_array_equal(image_a, image_b)


# -- lane scenes ---------------------------------------------------------------------------


def complete(track: list[tuple[int, dict[str, Any]]], w: int) -> bool:
    """The pass entered at one side and left at the other within the frames looked at."""
    first, last = track[0][1]["box"], track[-1][1]["box"]
    return (first[0] == 0 and last[2] == w) or (first[2] == w and last[0] == 0)


@pytest.mark.parametrize(("w", "h", "objects", "seed"), [(320, 180, 3, 1), (96, 160, 5, 2)])
def test_cross_each_object_crosses_the_middle_once_and_ids_only_grow(w, h, objects, seed):
    frames = truths(scene("cross", w, h, objects, seed), 1500)
    seen = tracks(frames)
    passes = 0
    for oid, track in seen.items():
        ks = [k for k, _ in track]
        assert ks == list(range(ks[0], ks[-1] + 1)), f"id {oid} left and came back"
        right = [centre(t["box"])[0] >= w / 2 for _, t in track]
        changes = sum(a != b for a, b in itertools.pairwise(right))
        if complete(track, w):
            assert changes == 1, (oid, [t["box"] for _, t in track])
            passes += 1
        else:
            assert changes <= 1
    assert passes >= 3 * objects
    # ids count up in the order objects appear (never reused, none skipped)
    order = sorted(seen, key=lambda oid: (seen[oid][0][0], oid))
    assert order == list(range(len(seen)))
    # directions alternate: both are present
    dirs = {centre(track[0][1]["box"])[0] < w / 2 for track in seen.values() if complete(track, w)}
    assert dirs == {True, False}
    # lanes are apart: boxes never overlap, and the objects in view are whole
    for truth in frames:
        for a, b in itertools.combinations(truth, 2):
            assert iou(a["box"], b["box"]) == 0
        for t in truth:
            if 0 < t["box"][0] and t["box"][2] < w:
                assert t["visible"] == 1.0


def test_cross_objects_enter_at_staggered_times():
    sc = scene("cross", 640, 360, 4, seed=3)
    seen = tracks(truths(sc, 400))
    firsts = sorted(track[0][0] for track in seen.values())
    assert len(set(firsts[:4])) == 4  # the lanes' first objects do not enter together
    assert firsts[0] < 100


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_occlude_hides_each_object_behind_the_pillar_for_a_few_frames(seed: int):
    w, h = 320, 180
    sc = scene("occlude", w, h, 3, seed)
    assert sc.pillar is not None
    x0, x1 = sc.pillar
    assert abs((x0 + x1) / 2 - 0.35 * w) <= 1
    frames = truths(sc, 1200)
    seen = tracks(frames)
    gaps = []
    for track in seen.values():
        for (k1, a), (k2, b) in itertools.pairwise(track):
            if k2 > k1 + 1:
                gaps.append(k2 - k1 - 1)
                # it went behind the pillar and came out of it with the same id
                assert a["box"][2] > x0 - 1 and b["box"][0] < x1 + 1
                assert a["visible"] < 1 and b["visible"] < 1
    assert gaps and all(3 <= g <= 8 for g in gaps), gaps
    complete_passes = [t for t in seen.values() if complete(t, w)]
    assert len(gaps) >= len(complete_passes) >= 3
    # an object at the pillar is partly hidden (its visible box ends at the pillar's edge);
    # away from it and from the frame's border, objects are whole
    at = [t for truth in frames for t in truth if t["box"][2] == x0 or t["box"][0] == x1]
    assert len(at) > 20 and sum(t["visible"] < 1 for t in at) > 0.8 * len(at)
    for truth in frames:
        for t in truth:
            if 0 < t["box"][0] and t["box"][2] < w and t["box"][2] != x0 and t["box"][0] != x1:
                assert t["visible"] == 1.0
    image, _ = sc.render(100)
    assert (image[:, x0:x1] == PILLAR_BGR).all()


@pytest.mark.parametrize(("w", "h", "objects", "seed"), [(320, 180, 4, 1), (160, 96, 3, 7)])
def test_pass_pairs_overlap_when_they_meet(w, h, objects, seed):
    frames = truths(scene("pass", w, h, objects, seed), 800)
    overlaps = set()
    for truth in frames:
        for a, b in itertools.combinations(truth, 2):
            if iou(a["box"], b["box"]) > 0:
                overlaps.add((a["id"], b["id"]))
    assert len(overlaps) >= 3
    # partly hidden while passing, never all
    seen = tracks(frames)
    least = {
        oid: min(t["visible"] for _, t in track if 0 < t["box"][0] and t["box"][2] < w)
        for oid, track in seen.items()
        if any(0 < t["box"][0] and t["box"][2] < w for _, t in track)
    }
    assert all(v > 0.2 for v in least.values()), least
    assert sum(v < 0.9 for v in least.values()) >= 3
    order = sorted(seen, key=lambda oid: (seen[oid][0][0], oid))
    assert order == list(range(len(seen)))


def test_slow_moves_one_to_two_pixels_a_frame_at_640_wide():
    frames = truths(scene("slow", 640, 360, 3, seed=2), 700)
    speeds = []
    for track in tracks(frames).values():
        for (k1, a), (k2, b) in itertools.pairwise(track):
            if a["visible"] == b["visible"] == 1.0:
                speeds.append(abs(centre(b["box"])[0] - centre(a["box"])[0]) / (k2 - k1))
    assert len(speeds) > 300
    assert 0.9 <= np.median(speeds) <= 2.1 and max(speeds) <= 3.0


def test_crowd_objects_wander_inside_the_frame_and_cross():
    w, h, n = 320, 180, 10
    frames = truths(scene("crowd", w, h, n, seed=3), 600)
    seen = tracks(frames)
    assert set(seen) == set(range(n))
    crossings = 0
    for truth in frames:
        for a in truth:  # never clipped by the border: whole unless another one hides it
            grown = [a["box"][0] - 2, a["box"][1] - 2, a["box"][2] + 2, a["box"][3] + 2]
            if all(iou(grown, b["box"]) == 0 for b in truth if b is not a):
                assert a["visible"] == 1.0
        crossings += sum(iou(a["box"], b["box"]) > 0 for a, b in itertools.combinations(truth, 2))
    assert crossings > 100
    # headings change (not straight lines): the direction of motion turns
    track = [centre(t["box"]) for _, t in seen[0]]
    moves = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(track, track[20:], strict=False)]
    heading = [math.atan2(dy, dx) for dx, dy in moves if math.hypot(dx, dy) > 5]
    turned = [abs((a - heading[0] + math.pi) % (2 * math.pi) - math.pi) for a in heading]
    assert max(turned) > 1.0


# -- parameters ----------------------------------------------------------------------------


def test_scene_and_truth_parameters_parse():
    p = SyntheticParams.from_uri("synthetic://shapes?scene=cross&truth=1&objects=2")
    assert p.scene == "cross" and p.truth is True and p.objects == 2
    assert SyntheticParams.from_uri("synthetic://shapes").scene == "bounce"
    assert SyntheticParams.from_uri("synthetic://shapes").truth is False
    for name in SCENES:
        assert SyntheticParams.from_uri(f"synthetic://shapes?scene={name}").scene == name


@pytest.mark.parametrize(
    ("raw", "value"),
    [("0", False), ("false", False), ("No", False), ("1", True), ("TRUE", True), ("yes", True)],
)
def test_truth_values(raw: str, value: bool):
    assert SyntheticParams.from_uri(f"synthetic://shapes?truth={raw}").truth is value


ERRORS = [
    ("synthetic://shapes?scene=spiral", "synthetic parameter 'scene' must be one of bounce, cross, pass, occlude, slow, crowd, got 'spiral'"),
    ("synthetic://shapes?scene=", "synthetic parameter 'scene' must be one of bounce, cross, pass, occlude, slow, crowd, got ''"),
    ("synthetic://shapes?truth=maybe", "synthetic parameter 'truth' must be 0 or 1 (or false/true, no/yes), got 'maybe'"),
    ("synthetic://shapes?truth=", "synthetic parameter 'truth' must be 0 or 1 (or false/true, no/yes), got ''"),
    ("synthetic://shapes?scene=cross&objects=5", "synthetic parameter 'objects' must be in [0, 4] for scene 'cross' at 640x360, got 5"),
    ("synthetic://shapes?scene=pass&objects=7", "synthetic parameter 'objects' must be in [0, 6] for scene 'pass' at 640x360, got 7"),
    ("synthetic://shapes?scene=crowd&objects=33", "synthetic parameter 'objects' must be in [0, 32], got 33"),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "message"), ERRORS)
def test_parameter_errors(uri: str, message: str):
    with pytest.raises(ValueError) as info:
        SyntheticParams.from_uri(uri)
    assert str(info.value) == message


def test_scene_checks_its_params_when_built_directly():
    with pytest.raises(ValueError, match="'scene' must be one of bounce, cross"):
        ShapesScene(SyntheticParams(scene="spiral"))
    with pytest.raises(ValueError, match=r"'objects' must be in \[0, 4\] for scene 'occlude'"):
        ShapesScene(SyntheticParams(scene="occlude", objects=9))
    assert SyntheticParams.from_uri(
        "synthetic://shapes?scene=slow&objects=7&width=360&height=640"
    ).objects


def test_lane_scene_without_objects_is_empty():
    sc = scene("cross", 160, 96, objects=0)
    assert sc.truth_at(0) == sc.truth_at(500) == []


def test_source_frames_carry_the_scene_truth():
    uri = "synthetic://shapes?scene=occlude&width=160&height=96&pace=0&frames=300&truth=1&seed=3"
    source = SyntheticSource(uri)
    assert source.params.truth is True
    frames = list(source.frames())
    assert len(frames) == 300
    for frame in frames[::10]:
        image = frame.image
        expected_image, expected = source.scene.render(frame.index)
        np.testing.assert_array_equal(image, expected_image)
        assert [(t["id"], t["box"]) for t in frame.truth] == [(t["id"], t["box"]) for t in expected]
    assert any(frame.truth for frame in frames)
