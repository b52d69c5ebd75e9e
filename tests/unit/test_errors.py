"""vsa/errors.py: one table of source error codes generates their classes, CODES, NEVER_RETRIED
and matches the code table in docs/failure-policy.md."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import pytest

import vsa.errors as errors
import vsa.sources.errors as source_errors
from vsa.errors import (
    CODES,
    NEVER_RETRIED,
    SOURCE_ERROR_CLASSES,
    SOURCE_ERRORS,
    AuthenticationFailed,
    ClusterNotFound,
    ConfigError,
    InvalidArgument,
    ModelError,
    Retry,
    RunNotFound,
    SourceError,
    VersionMismatch,
    VsaError,
    source_error_class,
)

ROOT = Path(__file__).resolve().parents[2]
ROWS = pytest.mark.parametrize("row", SOURCE_ERRORS, ids=lambda row: row.code)

# The wire contract: every code with its permanent flag. Changing one changes statuses, JSONL,
# reports, metrics and docs, so this list is written out on purpose (adding a code: add it here).
WIRE = {
    "AUTH_FAILED": True,
    "NOT_FOUND": True,
    "UNREACHABLE": False,
    "TIMEOUT": False,
    "STALLED": False,
    "DISCONNECTED": False,
    "ENDED": False,
    "SERVER_ERROR": False,
    "REJECTED": True,
    "UNSUPPORTED_CODEC": True,
    "NO_VIDEO": True,
    "CORRUPT_DATA": True,
    "FRAME_TOO_LARGE": True,
    "IO_ERROR": False,
    "SINK_ERROR": True,
    "SECRET_UNAVAILABLE": True,
    "SOURCE_CHANGED": True,
    "ERROR": False,
}


# --- the table ------------------------------------------------------------------------------


def test_the_table_keeps_every_code_on_the_wire_with_its_permanent_flag():
    assert {code: permanent for code, (permanent, _) in CODES.items()} == WIRE
    assert NEVER_RETRIED == {"SINK_ERROR", "SECRET_UNAVAILABLE"}


def test_codes_and_class_names_are_unique_and_well_formed():
    codes = [row.code for row in SOURCE_ERRORS]
    names = [row.name for row in SOURCE_ERRORS]
    assert len(set(codes)) == len(codes) and len(set(names)) == len(names)
    for row in SOURCE_ERRORS:
        assert re.fullmatch(r"[A-Z][A-Z_]*", row.code), row.code
        assert re.fullmatch(r"[A-Z]\w*", row.name), row.name
        assert row.meaning and row.meaning == row.meaning.strip()
        assert isinstance(row.retry, Retry)
        assert row.builtin is None or issubclass(row.builtin, Exception)


def test_derived_tables_come_from_the_rows():
    assert list(CODES) == [row.code for row in SOURCE_ERRORS]
    for row in SOURCE_ERRORS:
        assert CODES[row.code] == (row.permanent, row.meaning)
        assert (row.code in NEVER_RETRIED) is row.never_retried
        assert row.permanent is (row.retry is not Retry.TRANSIENT)
        if row.never_retried:
            assert row.permanent  # never retried is the strongest permanent


def test_sources_errors_reexports_the_same_objects():
    assert source_errors.CODES is CODES
    assert source_errors.NEVER_RETRIED is NEVER_RETRIED
    assert source_errors.SourceError is SourceError
    assert callable(source_errors.classify) and callable(source_errors.describe)


def test_every_code_classify_can_produce_is_in_the_table():
    produced = set(source_errors._ERRNO_CODES.values()) | {c for _, c in source_errors._AV_CODES}
    assert produced <= set(CODES)


@ROWS
def test_each_code_has_its_class_with_the_builtin_base(row):
    cls = SOURCE_ERROR_CLASSES[row.code]
    assert cls is source_error_class(row.code) is getattr(errors, row.name)
    assert cls.__name__ == cls.__qualname__ == row.name and cls.__module__ == "vsa.errors"
    assert row.name in errors.__all__
    assert issubclass(cls, SourceError) and issubclass(cls, VsaError)
    if row.builtin is not None:
        assert issubclass(cls, row.builtin)
    else:
        assert cls.__bases__ == (SourceError,)
    assert (cls.code, cls.permanent, cls.never_retried) == (
        row.code,
        row.permanent,
        row.never_retried,
    )


# --- constructing ---------------------------------------------------------------------------


@ROWS
def test_constructing_by_code_returns_the_subclass(row):
    err = SourceError(row.code, "what happened")
    assert type(err) is SOURCE_ERROR_CLASSES[row.code]
    assert isinstance(err, SourceError) and isinstance(err, VsaError)
    assert (err.code, err.message, err.permanent) == (row.code, "what happened", row.permanent)
    assert err.args == ("what happened",)
    assert str(err) == f"{row.code}: what happened"
    assert isinstance(err, Exception)


@ROWS
def test_a_codes_class_takes_the_message_alone_or_its_own_code(row):
    cls = SOURCE_ERROR_CLASSES[row.code]
    assert str(cls("m")) == str(cls(row.code, "m")) == f"{row.code}: m"
    other = "ERROR" if row.code != "ERROR" else "TIMEOUT"
    with pytest.raises(ValueError, match="has code"):
        cls(other, "m")


@pytest.mark.parametrize("code", ["NOPE", "timeout", "", None, 42, ["TIMEOUT"]])
def test_an_unknown_code_raises_value_error(code):
    with pytest.raises(ValueError, match="unknown source error code"):
        SourceError(code, "x")


def test_source_error_needs_a_code_and_a_message():
    with pytest.raises(TypeError):
        SourceError("just a message")
    with pytest.raises(TypeError):
        SourceError()
    with pytest.raises(TypeError):
        SourceError("TIMEOUT", "m", "extra")


def test_raising_and_catching():
    with pytest.raises(SourceError) as info:
        raise SourceError("STALLED", "no frame for 5 s")
    assert info.value.code == "STALLED"
    with pytest.raises(errors.SourceStalled):
        raise SourceError("STALLED", "no frame for 5 s")


@pytest.mark.parametrize(
    "code, builtin",
    [
        ("AUTH_FAILED", PermissionError),
        ("NOT_FOUND", FileNotFoundError),
        ("UNREACHABLE", ConnectionError),
        ("TIMEOUT", TimeoutError),
        ("STALLED", TimeoutError),
        ("DISCONNECTED", ConnectionError),
        ("ENDED", EOFError),
        ("CORRUPT_DATA", ValueError),
        ("IO_ERROR", OSError),
        ("SINK_ERROR", OSError),
    ],
)
def test_the_matching_builtin_catches_it(code, builtin):
    with pytest.raises(builtin):
        raise SourceError(code, "m")


def test_except_permission_error_catches_auth_failed_but_not_a_timeout():
    try:
        raise SourceError("AUTH_FAILED", "401 Unauthorized")
    except PermissionError as exc:
        caught: BaseException = exc
    assert isinstance(caught, SourceError) and caught.code == "AUTH_FAILED"
    assert str(caught) == "AUTH_FAILED: 401 Unauthorized"
    assert not isinstance(SourceError("TIMEOUT", "m"), PermissionError)
    assert not isinstance(SourceError("SECRET_UNAVAILABLE", "m"), PermissionError)


def test_os_error_bases_do_not_invent_an_errno():
    err = SourceError("NOT_FOUND", "no such file")
    assert err.errno is None and err.strerror is None
    assert err.args == ("no such file",)


# --- pickling (Ray pickles them) ------------------------------------------------------------


@ROWS
def test_pickle_round_trip_keeps_the_class_code_and_message(row):
    err = SourceError(row.code, "gone: rtsp://admin:***@cam/1")
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(err, protocol=proto))
        assert type(back) is type(err)
        assert (back.code, back.message, back.permanent) == (row.code, err.message, row.permanent)
        assert str(back) == str(err) and back.args == err.args
    assert type(copy.copy(err)) is type(err) and copy.deepcopy(err).message == err.message


def test_an_old_pickle_by_the_base_class_still_loads_as_the_subclass():
    # Before the table, SourceError.__reduce__ was (SourceError, (code, message)).
    back = pickle.loads(pickle.dumps(SourceError)).__call__("TIMEOUT", "slow")
    assert type(back) is errors.SourceTimeout


def test_a_dual_subclass_with_its_own_constructor_can_be_made():
    # Ray raises a remote error as class RayTaskError(cause_cls) constructed as cls(cause).
    cause = SourceError("TIMEOUT", "slow")

    class RemoteError(Exception):  # like RayTaskError: a Python class over Exception
        pass

    class Dual(RemoteError, type(cause)):  # type: ignore[misc]
        def __init__(self, c: BaseException) -> None:
            self.cause = c

        def __getattr__(self, name: str) -> object:
            return getattr(self.cause, name)

    dual = Dual(cause)
    assert isinstance(dual, errors.SourceTimeout) and isinstance(dual, TimeoutError)
    assert dual.code == "TIMEOUT" and dual.message == "slow"


# --- the other errors -----------------------------------------------------------------------


def test_config_error_pickle_keeps_problems_and_source():
    err = ConfigError(["fps: must be > 0", "name: required"], source="run.yaml")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ConfigError
    assert back.problems == err.problems and back.source == "run.yaml"
    assert str(back) == str(err) == "run.yaml: fps: must be > 0\nrun.yaml: name: required"
    assert isinstance(back, ValueError) and isinstance(back, VsaError)


@pytest.mark.parametrize(
    "cls, builtin",
    [
        (ConfigError, ValueError),
        (ClusterNotFound, ConnectionError),
        (VersionMismatch, VsaError),
        (RunNotFound, KeyError),
        (ModelError, ValueError),
        (AuthenticationFailed, PermissionError),
        (InvalidArgument, ValueError),
    ],
)
def test_other_errors_are_vsa_errors_and_their_builtin(cls, builtin):
    assert issubclass(cls, VsaError) and issubclass(cls, builtin)


def test_run_not_found_is_not_quoted_and_pickles():
    err = RunNotFound("no run 'x'")
    assert str(err) == "no run 'x'" and str(RunNotFound()) == "run not found"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is RunNotFound and str(back) == "no run 'x'"


@pytest.mark.parametrize(
    "err",
    [
        ClusterNotFound("no cluster"),
        VersionMismatch("v1 != v2"),
        ModelError("bad model"),
        AuthenticationFailed("token refused"),
        InvalidArgument("timeout_s must be > 0"),
    ],
)
def test_other_errors_pickle(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err)


# --- the docs -------------------------------------------------------------------------------


def _doc_rows() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "failure-policy.md").read_text()
    section = text.split("## Source error codes", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([A-Z_]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_the_failure_policy_doc_lists_every_code_as_the_table_says():
    rows = _doc_rows()
    assert list(rows) == [row.code for row in SOURCE_ERRORS]  # same codes, same order
    yes_no = {True: "yes", False: "no"}
    for row in SOURCE_ERRORS:
        permanent, never, name, builtin, meaning = rows[row.code]
        assert permanent == yes_no[row.permanent], row.code
        assert never == yes_no[row.never_retried], row.code
        assert name == f"`{row.name}`", row.code
        assert builtin == (f"`{row.builtin.__name__}`" if row.builtin else "—"), row.code
        assert meaning == row.meaning, row.code
