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


# --- numbers that are not ASCII digits (issue 23, item 16) ----------------------------------

NUMERIC = [
    ("VSA_INFERENCE_ACTORS", lambda env: settings.inference_actors(env), "a positive integer"),
    ("VSA_TORCH_THREADS", lambda env: settings.torch_threads(env), "auto or a positive integer"),
    ("VSA_MODEL_WORKERS", lambda env: settings.model_splits(env, cpus=4), "auto or a positive integer"),
    ("VSA_DATA_PLANE_NICE", lambda env: settings.data_plane_nice(env), "an integer from 0 to 19"),
    ("VSA_MAX_SOURCES_PER_RUN", lambda env: settings.max_sources_per_run(env), "a positive integer"),
    ("VSA_MAX_SOURCES", lambda env: settings.max_sources(env), "a positive integer"),
    ("VSA_SOURCE_MEMORY_MB", lambda env: settings.source_memory_mb(env), "a positive integer"),
]  # fmt: skip
NOT_NUMBERS = ["²", "١٢", "½", "3.5e", "3.5", "", "+5", "-1", "0x10", "1_000", "٣", "５"]


@pytest.mark.parametrize("value", NOT_NUMBERS)
@pytest.mark.parametrize(("name", "read", "what"), NUMERIC, ids=[n for n, _, _ in NUMERIC])
def test_numbers_must_be_ascii_digits(name, read, what, value):
    """'²'.isdigit() holds but int('²') raises a bare ValueError; '١٢' was read as 12."""
    with pytest.raises(VsaError) as info:
        read({name: value})
    assert str(info.value) == f"{name} must be {what}, not {value!r}"


@pytest.mark.parametrize(("name", "read", "what"), NUMERIC, ids=[n for n, _, _ in NUMERIC])
def test_a_number_of_thousands_of_digits_is_one_short_error(name, read, what):
    value = "9" * 5000  # more digits than int() converts: a bare ValueError too
    with pytest.raises(VsaError) as info:
        read({name: value})
    assert str(info.value) == f"{name} must be {what}, not {'9' * 40!r}… (5000 chars)"


def test_ascii_digits_still_read():
    assert settings.max_sources({"VSA_MAX_SOURCES": " 12 "}) == 12
    assert settings.data_plane_nice({"VSA_DATA_PLANE_NICE": "0"}) == 0
    assert settings.torch_threads({"VSA_TORCH_THREADS": "007"}) == 7
