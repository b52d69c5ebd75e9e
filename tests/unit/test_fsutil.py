"""Files the engine writes (``vsa.fsutil``): replaced through a temporary file with a random
name created new, never through a link another user planted; directories other users can
write to are refused with the command that fixes them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vsa import fsutil
from vsa.errors import VsaError
from vsa.fsutil import UnsafeDirectory, atomic_write, check_private_dir

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
OTHER_UID = 54321  # a user that is not this one, nor root


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text("precious")
    return path


def private_dir(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o700)
    return path


# --- atomic_write ----------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_whole_and_private(tmp_path: Path):
    path = tmp_path / "endpoint.json"
    atomic_write(path, '{"url": 1}')
    assert path.read_text() == '{"url": 1}'
    atomic_write(path, b"\x00bytes too")
    assert path.read_bytes() == b"\x00bytes too"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    atomic_write(tmp_path / "report.json", "{}", mode=0o644)
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o644 & ~_umask()
    assert sorted(os.listdir(tmp_path)) == ["endpoint.json", "report.json"]  # no temp left


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_link_planted_at_the_old_predictable_temp_name_is_never_followed(
    tmp_path: Path, victim: Path
):
    """The name the store and the endpoint used (``.<name>.<pid>.tmp``) is just a file."""
    path = tmp_path / "r1.json"
    planted = tmp_path / f".{path.name}.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    atomic_write(path, "record")
    assert victim.read_text() == "precious"
    assert path.read_text() == "record" and not path.is_symlink()


def test_temp_names_are_random_and_created_new(tmp_path: Path, victim: Path, monkeypatch):
    names = []
    real_replace = os.replace

    def spy(src, dst):
        names.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write(tmp_path / "a.json", "1")
    atomic_write(tmp_path / "a.json", "2")
    assert len(set(names)) == 2
    for name in names:
        assert name.startswith(".a.json.") and name.endswith(".tmp")
        assert str(os.getpid()) not in name.split(".")
    monkeypatch.undo()

    # a link at the very name it draws: O_EXCL|O_NOFOLLOW refuses it, the victim is untouched
    monkeypatch.setattr(fsutil.secrets, "token_hex", lambda n: "f" * (2 * n))
    (tmp_path / f".a.json.{'f' * 16}.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError):
        atomic_write(tmp_path / "a.json", "3")
    assert victim.read_text() == "precious"
    assert (tmp_path / "a.json").read_text() == "2"


def test_a_link_at_the_target_is_replaced_not_written_through(tmp_path: Path, victim: Path):
    path = tmp_path / "out.json"
    path.symlink_to(victim)
    atomic_write(path, "mine")
    assert victim.read_text() == "precious"
    assert not path.is_symlink() and path.read_text() == "mine"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch):
    path = tmp_path / "r.json"
    atomic_write(path, "old")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


# --- check_private_dir -----------------------------------------------------------------------


def test_a_private_directory_is_accepted(tmp_path: Path):
    check_private_dir(private_dir(tmp_path / "state"), "the state directory")
    (tmp_path / "state").chmod(0o755)  # others may read and enter, not write
    check_private_dir(tmp_path / "state", "the state directory")
    (tmp_path / "link").symlink_to(tmp_path / "state")  # this user's own link
    check_private_dir(tmp_path / "link", "the state directory")


@pytest.mark.parametrize("mode", [0o777, 0o757, 0o770, 0o1777, 0o722])
def test_a_directory_others_can_write_is_refused_with_the_chmod(tmp_path: Path, mode: int):
    path = private_dir(tmp_path / "state")
    path.chmod(mode)
    with pytest.raises(UnsafeDirectory) as err:
        check_private_dir(path, "the state directory")
    message = str(err.value)
    assert f"the state directory {path} can be written by other users" in message
    assert f"(mode {mode:04o})" in message
    assert f"run 'chmod go-w {path}'" in message
    assert "\n" not in message
    assert isinstance(err.value, VsaError) and isinstance(err.value, PermissionError)


def test_through_a_link_the_directory_itself_is_checked(tmp_path: Path):
    target = private_dir(tmp_path / "shared")
    target.chmod(0o777)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UnsafeDirectory, match="can be written by other users"):
        check_private_dir(tmp_path / "link", "the state directory")


def test_a_file_or_nothing_is_not_a_directory(tmp_path: Path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UnsafeDirectory, match="is not a directory"):
        check_private_dir(tmp_path / "file", "the state directory")
    with pytest.raises(FileNotFoundError):
        check_private_dir(tmp_path / "missing", "the state directory")


@needs_root
def test_a_directory_another_user_owns_is_refused_with_the_chown(tmp_path: Path, monkeypatch):
    path = private_dir(tmp_path / "state")
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeDirectory, match="run 'chown 0 "):  # root in a user's directory
        check_private_dir(path, "the state directory")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # vsa as an ordinary user
    with pytest.raises(UnsafeDirectory) as err:
        check_private_dir(path, "the state directory")
    assert f"the state directory {path} belongs to another user (uid {OTHER_UID}" in str(err.value)
    assert f"run 'chown 1000 {path}'" in str(err.value)


@needs_root
def test_a_link_another_user_owns_is_refused(tmp_path: Path, monkeypatch):
    private_dir(tmp_path / "state")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "state")
    os.lchown(link, OTHER_UID, OTHER_UID)
    monkeypatch.setattr(os, "geteuid", lambda: OTHER_UID + 1)
    os.chown(tmp_path / "state", OTHER_UID + 1, -1)  # the directory itself is this user's
    with pytest.raises(UnsafeDirectory, match=f"{link} is a symbolic link owned by another user"):
        check_private_dir(link, "the state directory")


def test_a_root_owned_directory_is_trusted(tmp_path: Path, monkeypatch):
    path = private_dir(tmp_path / "state")
    if path.stat().st_uid != 0:
        pytest.skip("needs a root-owned directory")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    check_private_dir(path, "the state directory")


def test_missing_parents_are_made_private_whatever_the_umask(tmp_path: Path) -> None:
    """The endpoint index ~/.vsa/endpoints made under umask 002 left ~/.vsa 0775, and the
    state directory check then refused ~/.vsa: every level this makes is 0700."""
    from vsa.fsutil import make_private_dirs

    (tmp_path / "home").mkdir(mode=0o755)
    from vsa.control.endpoint import write_endpoint

    (tmp_path / "other").mkdir(mode=0o755)
    old = os.umask(0o002)
    try:
        make_private_dirs(tmp_path / "home" / ".vsa" / "endpoints")
        write_endpoint(tmp_path / "other" / ".vsa" / "endpoints" / "e.json", {"url": "u"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "other" / ".vsa").st_mode) == 0o700
    for level in (".vsa", ".vsa/endpoints"):
        assert stat.S_IMODE(os.stat(tmp_path / "home" / level).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "home").st_mode) == 0o755  # not ours: untouched
    check_private_dir(tmp_path / "home" / ".vsa", "the state directory")  # accepted
