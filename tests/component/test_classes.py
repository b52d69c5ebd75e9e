"""Class names: lists and names files, files that are no names files, and short previews in errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vsa.errors import ModelError
from vsa.models.classes import (
    MAX_CLASSES,
    MAX_NAMES_FILE_BYTES,
    load_classes,
    names_from_data,
    preview_names,
    short_name,
)

HINT = "give one name per line, or a YAML/JSON list"
PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "secretuser:x:1000:1000:Secret User:/home/secretuser:/bin/bash\n"
)
SHADOW = "root:*:19000:0:99999:7:::\nsecretuser:$6$salt$hash:19000:0:99999:7:::\n"

# --- preview_names -------------------------------------------------------------------------

PREVIEW_CASES = [
    pytest.param([], "", id="none"),
    pytest.param(["cat", "dog"], "cat, dog", id="two"),
    pytest.param([f"c{i}" for i in range(10)], ", ".join(f"c{i}" for i in range(10)), id="ten"),
    pytest.param([f"c{i}" for i in range(11)], ", ".join(f"c{i}" for i in range(10)) + ", … and 1 more", id="eleven"),
    pytest.param([f"c{i}" for i in range(10_000)], ", ".join(f"c{i}" for i in range(10)) + ", … and 9990 more", id="ten-thousand"),
    pytest.param(["x" * 41, "y" * 40], "x" * 40 + "…, " + "y" * 40, id="long-name-cut"),
    pytest.param(["a\nb", "c\x1bd"], "a\\nb, c\\x1bd", id="control-characters-escaped"),
]  # fmt: skip


@pytest.mark.parametrize(("names", "expected"), PREVIEW_CASES)
def test_preview_names(names: list[str], expected: str):
    assert preview_names(names) == expected
    assert len(preview_names(names)) <= 10 * 43 + 30


def test_short_name():
    assert short_name("cat") == "cat"
    assert short_name("z" * 300) == "z" * 40 + "…"
    assert short_name("abcdef", width=3) == "abc…"


# --- good names files ----------------------------------------------------------------------

GOOD = [
    pytest.param("names.txt", "cat\ndog\n", ["cat", "dog"], id="txt"),
    pytest.param("names.txt", "\n  cat  \n\n\ndog", ["cat", "dog"], id="txt-blank-lines"),
    pytest.param("names.names", "n01440764 tench\nn01443537 goldfish\n", ["n01440764 tench", "n01443537 goldfish"], id="imagenet-style"),
    pytest.param("names.txt", "a: b\nc:d:e\n", ["a: b", "c:d:e"], id="up-to-two-colons"),
    pytest.param("names.txt", "chat\ncafé\n猫\n🐈\n", ["chat", "café", "猫", "🐈"], id="unicode"),
    pytest.param("names.txt", "\ufeffcat\ndog\n", ["cat", "dog"], id="utf8-bom"),
    pytest.param("names.txt", "x" * 256 + "\n", ["x" * 256], id="longest-name"),
    pytest.param("names.yaml", "names: {0: cat, 1: dog}\n", ["cat", "dog"], id="yaml-names-mapping"),
    pytest.param("names.yml", "- cat\n- dog\n", ["cat", "dog"], id="yml-list"),
    pytest.param("names.json", '["cat", "dog"]', ["cat", "dog"], id="json"),
    pytest.param("names.json", '{"0": "cat", "1": "dog"}', ["cat", "dog"], id="json-mapping"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "expected"), GOOD)
def test_good_names_files(tmp_path: Path, name: str, content: str, expected: list[str]):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert load_classes(str(path)) == expected


def test_many_names_at_the_limit(tmp_path: Path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(f"class{i}" for i in range(MAX_CLASSES)))
    assert len(load_classes(str(path))) == MAX_CLASSES


# --- files that are no names files ---------------------------------------------------------

BAD = [
    pytest.param("passwd", PASSWD.encode(), "line 1 looks like a record of a system file, not a name", id="passwd"),
    pytest.param("shadow", SHADOW.encode(), "line 1 looks like a record of a system file, not a name", id="shadow"),
    pytest.param("names.txt", b"cat\n\ndog\nroot:x:0:0:root\n", "line 4 looks like a record of a system file, not a name", id="record-after-names"),
    pytest.param("names.txt", b"cat\n" * (MAX_NAMES_FILE_BYTES // 4 + 1), f"{MAX_NAMES_FILE_BYTES + 4} bytes, more than 1 MiB", id="too-big"),
    pytest.param("names.txt", b"cat\ndog\x00\x01\x02", "binary data: a NUL byte on line 2", id="nul-byte"),
    pytest.param("names.txt", b"cat\nd\xe9j\xe0\n", "not UTF-8 text on line 2", id="not-utf8"),
    pytest.param("names.txt", b"\x89PNG\r\n\x1a\n", "not UTF-8 text on line 1", id="png"),
    pytest.param("names.txt", "\n".join(f"c{i}" for i in range(MAX_CLASSES + 1)).encode(), f"{MAX_CLASSES + 1} names, more than {MAX_CLASSES}", id="too-many-names"),
    pytest.param("names.txt", b"cat\n\n" + b"x" * 257 + b"\n", "line 3: a name longer than 256 characters", id="name-too-long"),
    pytest.param("names.txt", b"cat\ndo\x1b[31mg\n", "line 2: control characters in a name", id="escape-sequence"),
    pytest.param("names.txt", b"cat\tdog\n", "line 1: control characters in a name", id="tab"),
    pytest.param("names.yaml", b"- cat\n- " + b"y" * 300 + b"\n", "name 2: a name longer than 256 characters", id="yaml-name-too-long"),
    pytest.param("names.json", json.dumps(["c"] * (MAX_CLASSES + 1)).encode(), f"{MAX_CLASSES + 1} names, more than {MAX_CLASSES}", id="json-too-many"),
    pytest.param("names.json", json.dumps(["cat", "a\u0007b"]).encode(), "name 2: control characters in a name", id="json-bell"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "reason"), BAD)
def test_files_that_are_no_names_files(tmp_path: Path, name: str, content: bytes, reason: str):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError) as info:
        load_classes(str(path))
    assert str(info.value) == f"{path}: does not look like a class names file ({reason}): {HINT}"


@pytest.mark.parametrize("content", [PASSWD, SHADOW], ids=["passwd", "shadow"])
def test_system_file_content_is_never_echoed(tmp_path: Path, content: str):
    path = tmp_path / "secrets"
    path.write_text(content)
    with pytest.raises(ModelError) as info:
        load_classes(str(path))
    message = str(info.value).removeprefix(str(path))
    for word in ("root", "daemon", "secretuser", "/bin/bash", "$6$", "99999"):
        assert word not in message


def test_real_etc_passwd_is_refused():
    if not Path("/etc/passwd").is_file():
        pytest.skip("no /etc/passwd")
    with pytest.raises(ModelError, match=r"^/etc/passwd: does not look like a class names file"):
        load_classes("/etc/passwd")


OTHER_ERRORS = [
    pytest.param("names.yaml", b"names: [cat\n  - dog: x\n", "not valid YAML (line 2)", id="invalid-yaml"),
    pytest.param("names.json", b'["cat",\n "root:x:0:0"\n', "not valid JSON (line 3)", id="invalid-json"),
    pytest.param("names.json", b"[" * 100_000, "not valid JSON (nested too deeply)", id="deep-json"),
    pytest.param("names.yaml", b"- " + b"9" * 5000 + b"\n", "not valid YAML", id="yaml-int-of-5000-digits"),
    pytest.param("names.yaml", b"secret: 1\n", "class ids must be integers", id="yaml-mapping-without-names"),
    pytest.param("names.txt", b"\n\n  \n", "expected a non-empty list of class names", id="empty-txt"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "message"), OTHER_ERRORS)
def test_other_errors_name_the_file_only(tmp_path: Path, name: str, content: bytes, message: str):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError) as info:
        load_classes(str(path))
    assert str(info.value) == f"{path}: {message}"


def test_unreadable_names_file(tmp_path: Path):
    with pytest.raises(ModelError) as info:
        load_classes(str(tmp_path / "missing.txt"))
    assert str(info.value) == (
        f"{tmp_path / 'missing.txt'}: cannot read the class names file (No such file or directory)"
    )
    with pytest.raises(ModelError, match=r"cannot read the class names file \(Is a directory\)"):
        load_classes(str(tmp_path))


# --- names that came from a file are never shown --------------------------------------------


def test_names_of_a_file_are_counted_never_shown(tmp_path: Path):
    """A one-token file (the engine's own secret.key) is a valid names file: the error of an
    unknown class_filter name used to show 40 of the key's 44 characters (issue 23, item 7)."""
    key = tmp_path / "secret.key"
    token = "q0Zt3cUMnUtU2J4vW0m8Jf1sN5yR7kLx9pA6dE2hB4c="  # Fernet-like, 44 characters
    key.write_text(token + "\n")
    names = load_classes(str(key))
    assert names == [token]
    shown = preview_names(names)
    assert shown == (
        f"the 1 name of {key} (not shown: errors never print a names file; open the file to see them)"
    )
    assert token[:8] not in shown
    many = tmp_path / "names.txt"
    many.write_text("".join(f"secret{i}\n" for i in range(80)))
    shown = preview_names(load_classes(str(many)))
    assert shown.startswith(f"the 80 names of {many} (not shown") and "secret" not in shown.replace(
        str(tmp_path), ""
    )


@pytest.mark.parametrize(("name", "content"), [("n.yaml", "- tok3n\n"), ("n.json", '["tok3n"]')])
def test_names_of_structured_files_are_not_shown(tmp_path: Path, name: str, content: str):
    path = tmp_path / name
    path.write_text(content)
    assert "tok3n" not in preview_names(load_classes(str(path)))


def test_names_of_a_list_are_still_shown():
    assert preview_names(load_classes(["cat", "dog"])) == "cat, dog"


# --- lists and embedded names --------------------------------------------------------------

LIST_CASES = [
    pytest.param(["cat", "dog"], None, id="good"),
    pytest.param({"names": {0: "cat", 1: "dog"}}, None, id="good-mapping"),
    pytest.param(["cat", "x" * 257], "model.classes: name 2: a name longer than 256 characters", id="too-long"),
    pytest.param(["cat", "a\nb"], "model.classes: name 2: control characters in a name", id="newline"),
    pytest.param(["c"] * (MAX_CLASSES + 1), f"model.classes: {MAX_CLASSES + 1} names, more than {MAX_CLASSES}", id="too-many"),
    pytest.param([], "model.classes: expected a non-empty list of class names", id="empty"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "message"), LIST_CASES)
def test_names_from_data(data: object, message: str | None):
    if message is None:
        assert names_from_data(data, "model.classes") == ["cat", "dog"]
        if isinstance(data, list):
            assert load_classes(data) == ["cat", "dog"]
        return
    with pytest.raises(ModelError) as info:
        names_from_data(data, "model.classes")
    assert str(info.value) == message


# --- the class_filter error of a TorchScript model -----------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_class_filter_error_counts_the_names_of_a_file(tmp_path: Path):
    torch = pytest.importorskip("torch")
    from vsa.config import ModelSpec
    from vsa.models import load_model

    class Empty(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 4 + 50, 10) + x.sum() * 0

    model_path = tmp_path / "m.torchscript"
    torch.jit.save(torch.jit.trace(Empty(), torch.zeros(1, 3, 64, 64)), str(model_path))
    names = tmp_path / "names.txt"
    names.write_text("".join(f"class{i:02d}-{'n' * 50}\n" for i in range(50)))
    spec = ModelSpec.model_validate(
        {
            "name": "torchscript",
            "path": str(model_path),
            "classes": str(names),
            "class_filter": ["q" * 200],
            "device": "cpu",
            "input_size": (64, 64),
        }
    )
    with pytest.raises(ModelError) as info:
        load_model(spec)
    assert str(info.value) == (
        f"model.class_filter: unknown class '{'q' * 40}…' (model classes: the 50 names of "
        f"{names} (not shown: errors never print a names file; open the file to see them))"
    )
    assert "class0" not in str(info.value)
