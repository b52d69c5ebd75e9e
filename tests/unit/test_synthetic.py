"""``synthetic://shapes``: deterministic frames, pacing and ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from vsa.sources import SourceError, SourceOptions, open_source
from vsa.sources.synthetic import (
    CLASSES,
    PALETTE_BGR,
    ShapesScene,
    SyntheticParams,
    SyntheticSource,
)

SMALL = "synthetic://shapes?width=96&height=64&pace=0"


def frames_of(uri: str, n: int | None = None) -> list:
    source = SyntheticSource(uri)
    out = []
    for frame in source.frames():
        out.append(frame)
        if n is not None and len(out) == n:
            break
    source.close()
    return out


def test_same_seed_gives_identical_frames():
    a = frames_of(SMALL + "&seed=5&frames=6")
    b = frames_of(SMALL + "&seed=5&frames=6")
    assert len(a) == len(b) == 6
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_array_equal(fa.image, fb.image)
        assert [t["box"] for t in fa.truth] == [t["box"] for t in fb.truth]


def test_frame_k_is_a_pure_function_of_seed_and_k():
    scene = ShapesScene(SyntheticParams(seed=3, width=96, height=64))
    late_first, _ = scene.render(4)
    for k in range(5):
        scene.render(k)
    again, _ = scene.render(4)
    np.testing.assert_array_equal(late_first, again)


def test_different_seed_differs():
    a = frames_of(SMALL + "&seed=1&frames=1")[0].image
    b = frames_of(SMALL + "&seed=2&frames=1")[0].image
    assert (a != b).any()


def test_objects_move():
    a, b = frames_of(SMALL + "&seed=1&frames=2")
    assert (a.image != b.image).any()
    assert [t["box"] for t in a.truth] != [t["box"] for t in b.truth]


@pytest.mark.parametrize("n", [1, 7])
def test_frames_n_yields_n_frames(n: int):
    frames = frames_of(SMALL + f"&frames={n}")
    assert [f.index for f in frames] == list(range(n))


def test_frame_fields():
    frames = frames_of(SMALL + "&fps=8&frames=3")
    for k, frame in enumerate(frames):
        assert frame.index == k
        assert frame.pts == k / 8
        assert frame.image.shape == (64, 96, 3)
        assert frame.image.dtype == np.uint8
        assert frame.image.flags.c_contiguous
        assert frame.wall_time > 0


def test_endless_without_frames_and_close_ends_it():
    source = SyntheticSource(SMALL)
    it = source.frames()
    got = [next(it) for _ in range(25)]
    assert got[-1].index == 24
    source.close()
    assert list(it) == []


def test_source_attributes_and_open_source():
    paced = open_source("synthetic://shapes?fps=12&width=64&height=32")
    assert isinstance(paced, SyntheticSource)
    assert paced.live is True and paced.fps == 12.0
    unpaced = open_source("synthetic://shapes?pace=0&width=64&height=32")
    assert unpaced.live is False


class FakeTime:
    """clock() and sleep() that only move when told; records every sleep."""

    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def test_pace_sleeps_to_the_frame_rate():
    t = FakeTime()
    source = SyntheticSource(
        "synthetic://shapes?fps=10&frames=5&width=64&height=32", clock=t.clock, sleep=t.sleep
    )
    frames = list(source.frames())
    assert len(frames) == 5
    assert t.sleeps == pytest.approx([0.1] * 4)
    assert t.now == pytest.approx(50.4)


def test_pace_catches_up_after_a_slow_consumer_without_drift():
    t = FakeTime()
    source = SyntheticSource(
        "synthetic://shapes?fps=10&frames=6&width=64&height=32", clock=t.clock, sleep=t.sleep
    )
    it = source.frames()
    next(it)  # frame 0 at t=0: no sleep
    next(it)  # frame 1 due at 0.1
    assert t.sleeps == pytest.approx([0.1])
    t.now += 0.25  # consumer busy until t=0.35
    next(it)  # frame 2 (due 0.2) is late: no sleep
    next(it)  # frame 3 (due 0.3) is late: no sleep
    assert t.sleeps == pytest.approx([0.1])
    next(it)  # frame 4 due at 0.4: sleeps 0.05, the schedule did not shift
    assert t.sleeps == pytest.approx([0.1, 0.05])
    t.now += 0.03  # consumer took 0.03 s: the next sleep is shorter
    next(it)  # frame 5 due at 0.5, now 0.43
    assert t.sleeps == pytest.approx([0.1, 0.05, 0.07])


def test_no_pacing_never_sleeps():
    t = FakeTime()
    source = SyntheticSource(
        "synthetic://shapes?fps=1&frames=4&pace=0&width=64&height=32", clock=t.clock, sleep=t.sleep
    )
    assert len(list(source.frames())) == 4
    assert t.sleeps == []


@pytest.mark.parametrize(
    ("seed", "w", "h", "objects"), [(1, 160, 96, 3), (2, 96, 160, 5), (9, 128, 128, 8)]
)
def test_ground_truth_matches_the_masks(seed: int, w: int, h: int, objects: int):
    uri = f"synthetic://shapes?seed={seed}&width={w}&height={h}&objects={objects}&pace=0&frames=12"
    seen_objects = 0
    for frame in frames_of(uri)[::3]:
        covered = np.zeros((h, w), bool)
        assert 1 <= len(frame.truth) <= objects
        for t in frame.truth:
            mask = t["mask"]
            assert mask.shape == (h, w) and mask.dtype == bool
            assert mask.any()
            assert not (covered & mask).any(), "visible masks overlap"
            covered |= mask
            ys, xs = np.nonzero(mask)
            assert t["box"] == [xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0]
            assert t["area"] == int(mask.sum())
            assert 0 <= t["class_id"] < len(CLASSES)
            assert t["label"] == CLASSES[t["class_id"]]
            # the object is painted in its class's hue (base colour +-20 per channel)
            pixels = frame.image[mask].astype(int)
            base = np.array(PALETTE_BGR[t["class_id"]])
            assert (np.abs(pixels - base) <= 20).all()
            assert (pixels == pixels[0]).all()  # flat fill
            seen_objects += 1
        # the background is grey (low saturation), never an object hue
        bg = frame.image[~covered].astype(int)
        assert (bg.max(1) - bg.min(1) <= 14).all()
    assert seen_objects >= 4


def test_zero_objects_has_no_truth():
    frame = frames_of("synthetic://shapes?objects=0&width=64&height=32&pace=0&frames=1")[0]
    assert frame.truth == []


PARAM_ERRORS = [
    ("synthetic://cubes", "unknown synthetic generator 'cubes' (only 'shapes' exists)"),
    ("synthetic://shapes?speed=2", "unknown synthetic parameter 'speed' (known: seed, fps, width, height, frames, objects, pace, burst, scene, truth)"),
    ("synthetic://shapes?fps=fast", "synthetic parameter 'fps' must be a number, got 'fast'"),
    ("synthetic://shapes?seed=", "synthetic parameter 'seed' must be a number, got ''"),
    ("synthetic://shapes?frames=ten", "synthetic parameter 'frames' must be a number, got 'ten'"),
    ("synthetic://shapes?fps=0", "synthetic parameter 'fps' must be in (0, 1000], got 0"),
    ("synthetic://shapes?fps=-5", "synthetic parameter 'fps' must be in (0, 1000], got -5"),
    ("synthetic://shapes?fps=1001", "synthetic parameter 'fps' must be in (0, 1000], got 1001"),
    ("synthetic://shapes?width=641", "synthetic parameter 'width' must be an even number in [32, 7680], got 641"),
    ("synthetic://shapes?width=30", "synthetic parameter 'width' must be an even number in [32, 7680], got 30"),
    ("synthetic://shapes?height=7682", "synthetic parameter 'height' must be an even number in [32, 7680], got 7682"),
    ("synthetic://shapes?frames=0", "synthetic parameter 'frames' must be >= 1, got 0"),
    ("synthetic://shapes?objects=33", "synthetic parameter 'objects' must be in [0, 32], got 33"),
    ("synthetic://shapes?objects=-1", "synthetic parameter 'objects' must be in [0, 32], got -1"),
    ("synthetic://shapes?seed=-1", "synthetic parameter 'seed' must be in [0, 4294967295], got -1"),
    ("synthetic://shapes?seed=4294967296", "synthetic parameter 'seed' must be in [0, 4294967295], got 4294967296"),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "message"), PARAM_ERRORS)
def test_params_from_uri_errors(uri: str, message: str):
    with pytest.raises(ValueError) as info:
        SyntheticParams.from_uri(uri)
    assert str(info.value) == message


def test_params_from_uri_defaults_and_values():
    assert SyntheticParams.from_uri("synthetic://shapes") == SyntheticParams()
    p = SyntheticParams.from_uri(
        "synthetic://shapes?seed=4&fps=7.5&width=32&height=7680&frames=3&objects=32&pace=0"
    )
    assert p == SyntheticParams(
        seed=4, fps=7.5, width=32, height=7680, frames=3, objects=32, pace=False
    )


@pytest.mark.parametrize(
    ("raw", "paced"),
    [("0", False), ("false", False), ("No", False), ("1", True), ("true", True), ("yes", True)],
)
def test_pace_parameter(raw: str, paced: bool):
    assert SyntheticParams.from_uri(f"synthetic://shapes?pace={raw}").pace is paced


def test_largest_seed_is_valid():
    assert SyntheticParams.from_uri("synthetic://shapes?seed=4294967295").seed == 2**32 - 1
    assert frames_of(SMALL + "&seed=4294967295&frames=1")[0].image.shape == (64, 96, 3)


@pytest.mark.parametrize("opener", [SyntheticSource, open_source])
def test_frames_larger_than_max_frame_pixels_are_refused_at_open(opener):
    uri = "synthetic://shapes?width=640&height=360"
    with pytest.raises(SourceError) as info:
        opener(uri, SourceOptions(max_frame_pixels=640 * 360 - 1))
    assert info.value.code == "FRAME_TOO_LARGE"
    assert str(info.value) == (
        "FRAME_TOO_LARGE: frame 640x360 (230400 pixels) is larger than max_frame_pixels "
        "230399; raise the source's max_frame_pixels to accept it"
    )
    source = opener(uri + "&pace=0&frames=1", SourceOptions(max_frame_pixels=640 * 360))
    assert [f.image.shape for f in source.frames()] == [(360, 640, 3)]
