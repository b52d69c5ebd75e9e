"""Engine settings from the environment: defaults pinned, bad values named."""

from __future__ import annotations

import pytest

from vsa import settings
from vsa.errors import VsaError
from vsa.settings import inference_gpus, torch_threads


@pytest.mark.parametrize(
    ("env", "cluster_gpus", "expected"),
    [({}, 0, 0), ({}, 1, 1), ({}, 4, 1), ({"VSA_INFERENCE_GPUS": "0"}, 1, 0),
     ({"VSA_INFERENCE_GPUS": "1"}, 0, 1), ({"VSA_INFERENCE_GPUS": " auto "}, 2, 1)],
)  # fmt: skip
def test_inference_gpus(env, cluster_gpus, expected):
    assert inference_gpus(cluster_gpus, env) == expected


def test_inference_gpus_rejects_other_values():
    with pytest.raises(VsaError, match=r"VSA_INFERENCE_GPUS must be auto, 0 or 1, not '2'"):
        inference_gpus(1, {"VSA_INFERENCE_GPUS": "2"})


def test_torch_threads():
    assert torch_threads({}, cpus=6) == 6  # auto: every CPU the process may use
    assert torch_threads({"VSA_TORCH_THREADS": "auto"}, cpus=2) == 2
    assert torch_threads({}) >= 1
    assert torch_threads({"VSA_TORCH_THREADS": "4"}) == 4
    with pytest.raises(
        VsaError, match="VSA_TORCH_THREADS must be auto or a positive integer, not '0'"
    ):
        torch_threads({"VSA_TORCH_THREADS": "0"})


def test_state_dir_defaults_to_dot_vsa_and_holds_the_runs(monkeypatch, tmp_path):
    from pathlib import Path

    monkeypatch.setenv("HOME", str(tmp_path))
    assert settings.state_dir({}) == tmp_path / ".vsa"
    assert settings.runs_dir({"VSA_STATE_DIR": "/srv/vsa"}) == Path("/srv/vsa/runs")
    assert settings.state_dir({"VSA_STATE_DIR": "~/state"}) == tmp_path / "state"
