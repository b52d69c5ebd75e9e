"""The built-in model's accuracy, measured through the whole pipeline.

Fresh H.264 clips of scenes the training never saw (other seeds, real encoder and decoder),
run through the engine; the JSONL of each frame k is scored against the generator's ground
truth of frame k.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.conftest import read_jsonl
from vsa.config import parse_run, resolve_paths
from vsa.models.base import Detection, rle_decode
from vsa.sources.synthetic import ShapesScene
from vsa.tools.evaluate import make_eval_clips, match_frame

pytestmark = pytest.mark.integration

SPECS = ((90101, 640, 360, 4), (90102, 1280, 720, 5), (90103, 360, 640, 3))


def _detection(record: dict, height: int, width: int) -> Detection:
    det = Detection(record["label"], record["class_id"], record["score"], tuple(record["box"]))
    if "mask" in record:
        x1, y1, x2, y2 = det.mask_box()
        det.mask = rle_decode(record["mask"])[y1:y2, x1:x2]
    return det


def test_builtin_precision_recall_and_mask_iou_through_the_engine(client, tmp_path):
    clips = make_eval_clips(tmp_path / "clips", SPECS, frames=30)
    run = {"name": "accuracy", "output_dir": str(tmp_path / "out"),
           "sources": [{"id": f"c{i}", "uri": str(c.path)} for i, c in enumerate(clips)]}  # fmt: skip
    run_id = client.submit(resolve_paths(parse_run(run), tmp_path))["run_id"]
    assert client.wait(run_id, timeout_s=300).to_dict()["state"] == "FINISHED"

    tp = fp = fn = 0
    mask_ious: list[float] = []
    for i, clip in enumerate(clips):
        scene = ShapesScene(clip.params)
        lines = read_jsonl(tmp_path / "out" / f"c{i}.jsonl")
        assert len(lines) == clip.params.frames
        for line in lines:
            _, truth = scene.render(line["frame"])
            dets = [_detection(d, line["height"], line["width"]) for d in line["detections"]]
            result = match_frame(dets, truth)
            tp, fp, fn = tp + result.tp, fp + result.fp, fn + result.fn
            mask_ious += result.mask_ious
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    mean_mask_iou = float(np.mean(mask_ious))
    print(
        f"pipeline accuracy: precision {precision:.3f} recall {recall:.3f} mask IoU {mean_mask_iou:.3f} (tp {tp})"
    )
    assert tp >= 200
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    assert mean_mask_iou >= 0.7
