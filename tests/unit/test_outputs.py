"""The engine owns its outputs: allowed and writable directories, one run per directory,
deliberate overwrites, admission limits (vsa/outputs.py; the controller calls these)."""

from __future__ import annotations

import errno
import os

import pytest

from vsa.config import parse_run
from vsa.errors import VsaError
from vsa.outputs import (
    AdmissionError,
    OutputConflict,
    check_admission,
    check_output_dir,
    claim_outputs,
    run_files,
)
from vsa.settings import max_sources, max_sources_per_run, output_roots, source_memory_mb


def _spec(out, ids=("cam1", "cam2"), sinks=None):
    run = {
        "name": "r",
        "output_dir": str(out),
        "sources": [{"id": i, "uri": "synthetic://shapes?frames=3"} for i in ids],
    }
    if sinks is not None:
        run["sinks"] = sinks
    return parse_run(run)


def test_an_active_run_in_the_same_directory_is_refused_naming_it(tmp_path):
    out = check_output_dir(str(tmp_path / "out"))
    with pytest.raises(OutputConflict, match=r"being written by run other-1: .*vsa stop other-1"):
        claim_outputs(_spec(out), out, [("other-1", str(out))])


def test_the_same_directory_through_a_symlink_is_the_same_directory(tmp_path):
    out = check_output_dir(str(tmp_path / "out"))
    link = tmp_path / "link"
    link.symlink_to(out)
    with pytest.raises(OutputConflict, match="other-1"):
        claim_outputs(_spec(out), out, [("other-1", str(link))])


def test_another_directory_is_fine(tmp_path):
    out = check_output_dir(str(tmp_path / "a"))
    assert claim_outputs(_spec(out), out, [("other-1", str(tmp_path / "b"))]) == []


def test_files_of_an_earlier_run_are_refused_unless_overwrite(tmp_path):
    out = check_output_dir(str(tmp_path / "out"))
    for name in ("cam1.mp4", "cam1.part2.mp4", "cam2.jsonl", "report.json", "keep.txt"):
        (out / name).write_text("old")
    with pytest.raises(OutputConflict, match=r"already holds outputs .*--overwrite") as err:
        claim_outputs(_spec(out), out, [])
    assert "cam1.mp4" in str(err.value) and "report.json" in str(err.value)
    removed = claim_outputs(_spec(out), out, [], overwrite=True)
    assert {p.name for p in removed} == {"cam1.mp4", "cam1.part2.mp4", "cam2.jsonl", "report.json"}
    assert sorted(os.listdir(out)) == ["keep.txt"]  # what is not the run's stays


def test_overwrite_removes_a_planted_symlink_not_its_target(tmp_path):
    out = check_output_dir(str(tmp_path / "out"))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "cam1.jsonl").symlink_to(victim)
    assert [p.name for p in run_files(_spec(out), out)] == ["cam1.jsonl"]
    claim_outputs(_spec(out), out, [], overwrite=True)
    assert victim.read_text() == "precious" and not os.path.lexists(out / "cam1.jsonl")


def test_only_the_run_sinks_files_count(tmp_path):
    out = check_output_dir(str(tmp_path / "out"))
    (out / "cam1.mp4").write_text("x")
    spec = _spec(out, sinks=[{"type": "jsonl"}])
    assert claim_outputs(spec, out, []) == []


def test_a_source_id_that_prefixes_another_does_not_claim_its_segments(tmp_path):
    out = check_output_dir(str(tmp_path / "out"))
    (out / "cam10.part2.mp4").write_text("x")
    assert run_files(_spec(out, ids=("cam1",)), out) == []


def test_a_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(VsaError, match="exists and is not a directory: choose another one"):
        check_output_dir(str(tmp_path / "out"))


def test_a_read_only_directory_is_refused_with_what_to_do(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):  # root ignores modes: play a read-only mount
        if ".vsa-write-test-" in str(path):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(VsaError, match=r"not writable \(Read-only file system\): choose"):
        check_output_dir(str(tmp_path / "out"))


@pytest.mark.parametrize("path", ["/etc/vsa", "/usr/share/x", "/proc/1", "/"])
def test_system_directories_are_refused(path):
    with pytest.raises(VsaError, match="system directory"):
        check_output_dir(path)


def test_a_symlinked_directory_is_checked_where_it_points(tmp_path):
    allowed = tmp_path / "allowed"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    allowed.mkdir()
    (allowed / "out").symlink_to(elsewhere)
    with pytest.raises(VsaError, match=r"resolves to .*elsewhere.*outside .*VSA_OUTPUT_ROOTS"):
        check_output_dir(str(allowed / "out"), [str(allowed)])
    assert check_output_dir(str(allowed / "sub"), [str(allowed)]) == allowed / "sub"
    etc_link = allowed / "etc"
    etc_link.symlink_to("/etc")
    with pytest.raises(VsaError, match="system directory"):
        check_output_dir(str(etc_link))


ADMISSION = [
    # new, active, available MiB, expected error fragment (None: admitted)
    (4, 0, 16000, None),
    (64, 0, 32000, None),
    (2000, 0, 16000, "the run has 2000 sources; this engine admits at most 64 per run"),
    (60, 100, 64000, "60 sources and 100 are active; this engine admits at most 128 in all"),
    (40, 0, 8000, "need about 10000 MiB (250 MiB each, VSA_SOURCE_MEMORY_MB) and the host has 8000 MiB"),
    (4, 0, None, None),  # memory unknown: only the counts are checked
]  # fmt: skip


@pytest.mark.parametrize(("new", "active", "mib", "expected"), ADMISSION)
def test_admission(new, active, mib, expected):
    available = None if mib is None else mib << 20
    limits = dict(per_run=64, total=128, source_mb=250)
    if expected is None:
        check_admission(new, active, available, **limits)
    else:
        with pytest.raises(AdmissionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            check_admission(new, active, available, **limits)


def test_limits_come_from_the_environment_with_defaults():
    assert (max_sources_per_run({}), max_sources({}), source_memory_mb({})) == (64, 128, 250)
    assert max_sources_per_run({"VSA_MAX_SOURCES_PER_RUN": "8"}) == 8
    with pytest.raises(VsaError, match="VSA_MAX_SOURCES must be a positive integer, not '-1'"):
        max_sources({"VSA_MAX_SOURCES": "-1"})
    assert output_roots({}) == []
    assert output_roots({"VSA_OUTPUT_ROOTS": "/data:/srv/out"}) == ["/data", "/srv/out"]
    with pytest.raises(VsaError, match="absolute paths"):
        output_roots({"VSA_OUTPUT_ROOTS": "rel/dir"})
