"""Detection's track id and attributes (issue 25): defaults that cost nothing, a read-only
mapping of JSON values, and a pickle round trip (Ray and the same-host channel pickle results).
"""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest

from vsa.core.detections import NO_ATTRIBUTES, Attributes, Detection
from vsa.core.frames import FrameResult

BOX = (1.0, 2.0, 30.0, 40.0)


def test_defaults_leave_construction_and_json_as_they_were():
    det = Detection("car", 2, 0.9, BOX)  # how vsa/models builds one: positional, no new fields
    assert det.track_id is None
    assert det.attributes is NO_ATTRIBUTES  # shared, not a new object per detection
    assert det.attributes == {} and len(det.attributes) == 0
    assert set(det.to_json(50, 50)) == {"label", "class_id", "score", "box"}


def test_track_id_and_attributes_are_written_only_when_set():
    det = Detection("car", 2, 0.9, BOX, track_id=np.int64(7), attributes={"color": "red"})
    record = det.to_json(50, 50)
    assert record["track_id"] == 7 and type(record["track_id"]) is int
    assert record["attributes"] == {"color": "red"}
    assert set(Detection("car", 2, 0.9, BOX, track_id=0).to_json(50, 50)) == {
        "label",
        "class_id",
        "score",
        "box",
        "track_id",  # 0 is a track id, not "unset"
    }


def test_a_plain_mapping_becomes_read_only_attributes():
    given = {"color": "red", "seen": [1, 2], "plate": {"text": "AB12", "conf": 0.8}}
    det = Detection("car", 2, 0.9, BOX, attributes=given)
    assert type(det.attributes) is Attributes
    given["color"] = "blue"  # the caller's dict is copied
    given["seen"].append(3)
    assert det.attributes["color"] == "red"
    assert det.attributes["seen"] == (1, 2)  # lists kept as tuples
    with pytest.raises(TypeError):
        det.attributes["color"] = "green"  # type: ignore[index]
    assert not hasattr(det.attributes, "__dict__")
    hash(det.attributes)  # nested values are frozen too
    # back to plain JSON
    assert json.loads(json.dumps(det.to_json(50, 50)))["attributes"] == {
        "color": "red",
        "seen": [1, 2],
        "plate": {"text": "AB12", "conf": 0.8},
    }


def test_attributes_equality():
    assert Attributes({"a": 1}) == Attributes(a=1) == {"a": 1}
    assert Attributes({"a": 1}) != Attributes({"a": 2})
    assert hash(Attributes({"a": 1, "b": "x"})) == hash(Attributes({"b": "x", "a": 1}))
    assert Attributes(a=(1, 2)) == Attributes(a=[1, 2])


REFUSED = [
    pytest.param({1: "x"}, TypeError, "keys must be str, got 1 (int)", id="int-key"),
    pytest.param({"n": np.float32(1.5)}, TypeError, "'n': float32 is not a JSON value", id="np"),
    pytest.param({"s": {1, 2}}, TypeError, "'s': set is not a JSON value", id="set"),
    pytest.param({"x": float("nan")}, ValueError, "'x': nan is not a JSON number", id="nan"),
    pytest.param({"d": {"k": [2, {3: 4}]}}, TypeError, "keys must be str, got 3", id="nested"),
]  # fmt: skip


@pytest.mark.parametrize(("given", "error", "message"), REFUSED)
def test_attributes_that_are_not_json_are_refused_when_set(given, error, message):
    with pytest.raises(error, match=re.escape(message)):
        Detection("car", 2, 0.9, BOX, attributes=given)


def test_json_values_are_accepted():
    values = {"s": "x", "i": -3, "f": 0.25, "b": True, "none": None, "list": [1, "a", None]}
    assert Attributes(values).to_json() == values


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_pickle_round_trip(protocol: int):
    plain = Detection("car", 2, 0.9, BOX)
    tracked = Detection("car", 2, 0.9, BOX, track_id=12, attributes={"c": ["r", {"g": 1}]})
    masked = Detection("dog", 1, 0.5, BOX, np.ones((38, 29), bool), track_id=3)
    result = FrameResult(4, [plain, tracked, masked], 1.5, 3)
    back = pickle.loads(pickle.dumps(result, protocol=protocol))
    plain2, tracked2, masked2 = back.detections
    assert plain2 == plain and plain2.track_id is None and plain2.attributes == {}
    assert tracked2 == tracked and type(tracked2.attributes) is Attributes
    assert tracked2.attributes["c"][1]["g"] == 1
    assert masked2.track_id == 3
    np.testing.assert_array_equal(masked2.mask, masked.mask)


def test_a_detection_pickled_before_the_new_fields_still_loads():
    """State without track_id/attributes (an older process's pickle) reads the defaults."""
    det = Detection.__new__(Detection)
    det.__dict__.update(label="car", class_id=2, score=0.9, box=BOX, mask=None)
    back = pickle.loads(pickle.dumps(det))
    assert back.track_id is None and back.attributes == {}
    assert set(back.to_json(50, 50)) == {"label", "class_id", "score", "box"}
