"""Claims of the docs that the code can check, so they do not go stale unnoticed (issue 23):
the generated run-file reference, no line counts of source files, the threads of the actors."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from vsa import config

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]

# "`controller.py` (87 lines)", "the 120-line worker.py", "handles.py is 300 lines long":
# a count of lines within a few words of a Python file's name, on the same line.
LINE_COUNT = re.compile(
    r"\.py\b[^\n]{0,40}?\b\d[\d,]*[ -]lines?\b|\b\d[\d,]*[ -]lines?\b[^\n]{0,40}?\.py\b"
)


def test_run_file_reference_is_what_its_generator_writes():
    written = (ROOT / "docs" / "run-file.md").read_text()
    assert written == config.markdown_reference() + "\n", (
        "docs/run-file.md is stale: python -m vsa.config --markdown > docs/run-file.md"
    )


def test_run_file_reference_has_every_model_of_the_schema():
    """Every model the JSON Schema holds (any depth), so a new nested model is documented."""
    models = set(config.RunSpec.model_json_schema()["$defs"]) | {"RunSpec"}
    sections = set(re.findall(r"^## (\w+)$", config.markdown_reference(), re.M))
    assert "DegradationSpec" in models
    assert models == sections


def test_the_line_count_pattern_finds_counts_and_only_them():
    for claim in (
        "`controller.py` (87 lines), `source.py`",
        "the 120-line `worker.py`",
        "handles.py is 1,300 lines long",
    ):
        assert LINE_COUNT.search(claim), claim
    for text in (
        "Each JSONL line: `run`, `source`",
        "it prints a line per active run every `--interval` seconds",
        "chunks of up to 4 frames per call (`vsa/stream/worker.py`)",
        "the last 40 lines of its log",
    ):
        assert not LINE_COUNT.search(text), text


def test_no_doc_states_the_line_count_of_a_source_file():
    """A stated size goes stale with the next edit: describe what a file does instead."""
    found = [
        f"{doc.relative_to(ROOT)}: {match.group(0)!r}"
        for doc in DOCS
        for match in LINE_COUNT.finditer(doc.read_text())
    ]
    assert not found


def _thread_names(paths: list[Path]) -> set[str]:
    """The names of the threads these files start: ``threading.Thread(name=...)`` (an f-string's
    fixed part up to ``:``, ``decode:{source_id}`` -> ``decode``) and the prefix of a
    ``ThreadPoolExecutor(thread_name_prefix=...)``."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            wanted = {"Thread": "name", "ThreadPoolExecutor": "thread_name_prefix"}.get(called)
            for keyword in node.keywords:
                if wanted is None or keyword.arg != wanted:
                    continue
                value = keyword.value
                if isinstance(value, ast.JoinedStr) and value.values:
                    value = value.values[0]
                assert isinstance(value, ast.Constant), f"{path}: a thread name not literal"
                names.add(str(value.value).split(":")[0])
    return names


def _py(*parts: str) -> list[Path]:
    """The Python files of these files and folders."""
    paths = [ROOT / part for part in parts]
    return sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py")))


def test_the_source_actors_threads_in_the_architecture_are_those_it_starts():
    arch = (ROOT / "docs" / "architecture.md").read_text()
    line = re.search(r"SourceActor .*\n.*threads: (.*)", arch)
    assert line, "docs/architecture.md: no 'threads:' line under SourceActor"
    # "decode, sink, metrics, channel-reader (+ submit in realtime mode)": each item's first word
    documented = {item.split()[0] for item in re.split(r",|\(\+", line.group(1)) if item.strip()}
    started = _thread_names(_py("actors/source.py", "vsa/stream", "vsa/transport"))
    assert started >= {"decode", "sink", "metrics", "channel-reader", "submit"}
    assert documented == started


def test_every_thread_the_code_names_is_in_the_architecture():
    arch = (ROOT / "docs" / "architecture.md").read_text()
    names = _thread_names(_py("actors", "vsa"))
    assert "vsa-status-endpoint" in names
    assert {n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", arch)} == set()
