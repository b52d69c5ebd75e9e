"""Sealing source credentials: round trip, the key file and its permissions, clear errors."""

from __future__ import annotations

import errno
import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from vsa import secrets
from vsa.errors import VsaError
from vsa.secrets import is_sealed, key_path, needs_sealing, seal, unseal

URI = "rtsp://admin:hunter2'&@cam.local:554/live?token=t0k3n"


def test_round_trip(key_file: Path):
    sealed = seal(URI)
    assert sealed.startswith("vsa-sealed:v1:")
    assert is_sealed(sealed)
    assert "hunter2" not in sealed and "t0k3n" not in sealed
    assert unseal(sealed) == URI
    assert unseal(seal("")) == ""
    assert unseal(seal("caméra €")) == "caméra €"


def test_key_file_is_private(key_file: Path):
    assert not key_file.exists()
    seal(URI)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert key_file.stat().st_uid == os.getuid()
    Fernet(key_file.read_bytes().strip())  # a valid key
    assert [p.name for p in key_file.parent.iterdir()] == ["secret.key"]  # no temp file left


def test_existing_directory_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tmp_path.chmod(0o755)
    monkeypatch.setenv("VSA_SECRET_KEY_FILE", str(tmp_path / "k"))
    seal(URI)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_two_seals_share_one_key(key_file: Path):
    first = seal(URI)
    key = key_file.read_bytes()
    second = seal(URI)
    assert key_file.read_bytes() == key
    assert first != second  # Fernet tokens carry a random IV
    assert unseal(first) == unseal(second) == URI


def _seal_in_child(path: str, queue: multiprocessing.Queue) -> None:
    os.environ["VSA_SECRET_KEY_FILE"] = path
    queue.put(seal(URI))


def test_racing_processes_end_with_one_key(key_file: Path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_seal_in_child, args=(str(key_file), queue)) for _ in range(6)]
    for child in children:
        child.start()
    sealed = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    assert all(unseal(s) == URI for s in sealed)  # every child used the one key on disk


def test_replaced_key_gives_a_clear_error(key_file: Path):
    sealed = seal(URI)
    key_file.unlink()
    seal("something else")  # a new key
    with pytest.raises(VsaError) as info:
        unseal(sealed)
    message = str(info.value)
    assert message == (
        f"cannot open the sealed source credentials: the key file {key_file} is missing or "
        "was replaced; submit the run again"
    )
    _assert_no_secret(message, sealed)


def test_missing_key_gives_a_clear_error(key_file: Path):
    sealed = seal(URI)
    key_file.unlink()
    with pytest.raises(VsaError, match="is missing or was replaced; submit the run again") as info:
        unseal(sealed)
    _assert_no_secret(str(info.value), sealed)
    assert not key_file.exists()  # unseal never makes a key


def test_tampered_token_gives_a_clear_error(key_file: Path):
    sealed = seal(URI)
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(VsaError, match="submit the run again") as info:
        unseal(tampered)
    _assert_no_secret(str(info.value), tampered)
    with pytest.raises(VsaError, match="submit the run again"):
        unseal("vsa-sealed:v1:not a token ü")


def test_unseal_refuses_clear_text(key_file: Path):
    with pytest.raises(VsaError, match="not sealed") as info:
        unseal(URI)
    assert "hunter2" not in str(info.value)


def _assert_no_secret(message: str, sealed: str) -> None:
    assert "hunter2" not in message and "t0k3n" not in message
    assert sealed[len("vsa-sealed:v1:") :] not in message
    assert sealed[-20:] not in message


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620])
def test_refuses_a_key_file_others_can_reach(key_file: Path, mode: int):
    sealed = seal(URI)
    key_file.chmod(mode)
    for action in (lambda: seal(URI), lambda: unseal(sealed)):
        with pytest.raises(VsaError) as info:
            action()
        assert str(info.value) == (
            f"the key file {key_file} can be read or written by other users (mode {mode:04o}); "
            f"it guards camera passwords, so vsa refuses it: run 'chmod 600 {key_file}'"
        )
        _assert_no_secret(str(info.value), sealed)
    key_file.chmod(0o600)
    assert unseal(sealed) == URI


def test_refuses_a_key_file_of_another_user(key_file: Path, monkeypatch: pytest.MonkeyPatch):
    sealed = seal(URI)
    monkeypatch.setattr(secrets.os, "getuid", lambda: os.stat(key_file).st_uid + 1)
    with pytest.raises(VsaError, match="belongs to another user") as info:
        unseal(sealed)
    _assert_no_secret(str(info.value), sealed)


def test_refuses_a_key_file_that_is_not_a_key(key_file: Path):
    key_file.parent.mkdir(mode=0o700)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key")
    os.close(fd)
    with pytest.raises(VsaError, match="does not hold a vsa key"):
        seal(URI)


def test_refuses_a_directory_as_key_file(key_file: Path):
    key_file.mkdir(parents=True, mode=0o700)
    with pytest.raises(VsaError, match="is not a regular file"):
        seal(URI)


def test_unusable_key_path_is_a_vsa_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("VSA_SECRET_KEY_FILE", str(tmp_path / "a-file" / "secret.key"))
    with pytest.raises(VsaError, match="the key file .*secret.key: Not a directory"):
        seal(URI)


def test_cannot_create_key_is_a_vsa_error(key_file: Path, monkeypatch: pytest.MonkeyPatch):
    def link(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(secrets.os, "link", link)
    with pytest.raises(VsaError) as info:
        seal(URI)
    assert str(info.value) == f"cannot create the key file {key_file}: Operation not permitted"
    assert list(key_file.parent.iterdir()) == []  # temp file removed


def test_losing_the_creation_race_uses_the_winners_key(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
):
    winner = Fernet.generate_key()
    real_link = os.link

    def link_after_another_process(src: str, dst: str) -> None:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, winner)
        os.close(fd)
        real_link(src, dst)  # FileExistsError: the other process won

    monkeypatch.setattr(secrets.os, "link", link_after_another_process)
    sealed = seal(URI)
    assert key_file.read_bytes() == winner
    assert Fernet(winner).decrypt(sealed[len("vsa-sealed:v1:") :].encode()).decode() == URI
    assert [p.name for p in key_file.parent.iterdir()] == ["secret.key"]  # temp file removed


def test_key_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("VSA_SECRET_KEY_FILE", raising=False)
    monkeypatch.delenv("VSA_STATE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert key_path() == tmp_path / "home" / ".vsa" / "secret.key"
    monkeypatch.setenv("VSA_STATE_DIR", str(tmp_path / "state"))
    assert key_path() == tmp_path / "state" / "secret.key"
    monkeypatch.setenv("VSA_SECRET_KEY_FILE", str(tmp_path / "k"))
    assert key_path() == tmp_path / "k"


@pytest.mark.parametrize(
    ("uri", "needed"),
    [
        ("rtsp://admin:hunter2@cam/x", True),
        ("rtsp://TOKEN@cam/x", True),
        ("https://h/x.m3u8?X-Amz-Signature=abc", True),
        ("rtsp://cam.local:554/x", False),
        ("synthetic://shapes?seed=1", False),
        ("/data/a.mp4", False),
    ],
)
def test_needs_sealing(uri: str, needed: bool):
    assert needs_sealing(uri) is needed


def test_is_sealed():
    assert is_sealed("vsa-sealed:v1:abc")
    assert not is_sealed("rtsp://cam/x")
    assert not is_sealed("vsa-sealed:v2:abc")
