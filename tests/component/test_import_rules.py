"""Import rules: which heavy stacks each module may load, and which packages may import which.

Each module is imported in a fresh interpreter (this process has long since loaded
everything), and the heavy top-level packages that ended up in ``sys.modules`` are compared
with what the module is allowed to load.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

NO_HEAVY = frozenset({"torch", "av", "cv2", "ray"})

# module -> top-level packages its import must not load
RULES: dict[str, frozenset[str]] = {
    "vsa.core.detections": NO_HEAVY,
    "vsa.core.frames": NO_HEAVY,
    "vsa.core.shapes": NO_HEAVY,
    "vsa.batching": NO_HEAVY,
    "vsa.degradation": NO_HEAVY,
    "vsa.runstate": NO_HEAVY,
    "vsa.schema": NO_HEAVY,
    "vsa.constants": NO_HEAVY,
    "vsa.supervision.runbook": NO_HEAVY,
    "vsa.supervision.watchdog": NO_HEAVY,
    "vsa.supervision.core": NO_HEAVY,
    "vsa.supervision.changes": NO_HEAVY,
    "vsa.supervision.admission": NO_HEAVY,
    "vsa.supervision.engines": NO_HEAVY,
    "vsa.supervision.sources": NO_HEAVY,
    "vsa.supervision.recovery": NO_HEAVY,
    "vsa.supervision.reconcile": NO_HEAVY,
    "vsa.supervision.handles": NO_HEAVY,
    "vsa.sinks.jsonl": NO_HEAVY,
    "vsa.stream": NO_HEAVY,
    "vsa.core.clock": NO_HEAVY,
    "vsa.errors": NO_HEAVY,
    "vsa.inference.engine": NO_HEAVY,
    "vsa.transport": NO_HEAVY,  # the GPU check machine has no Ray or PyAV
    "vsa.transport.base": NO_HEAVY,
    "vsa.transport.path": NO_HEAVY,
    "vsa.config": NO_HEAVY,
    # the control plane and the CLI: `vsa status` reads the endpoint without a Ray driver
    "vsa.control.endpoint": NO_HEAVY | {"pydantic"},
    "vsa.control.priority": NO_HEAVY | {"pydantic"},
    "vsa.cli": NO_HEAVY | {"pydantic"},
    "vsa.hostconfig": NO_HEAVY | {"pydantic"},
    "vsa.serve": NO_HEAVY | {"pydantic"},
    # the controller is a Ray actor; it only creates the source and inference actors
    "actors.controller": frozenset({"torch", "av", "cv2"}),
}


def _loaded(module: str, watched: frozenset[str]) -> list[str]:
    code = f"import sys, {module}; print(sorted(set({sorted(watched)!r}) & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", sorted(RULES))
def test_module_does_not_load_heavy_stacks(module: str) -> None:
    assert _loaded(module, RULES[module]) == []


def test_the_check_sees_a_heavy_import() -> None:
    # the subprocess check itself can fail: a module that does load a forbidden stack
    assert _loaded("vsa.draw", frozenset({"cv2"})) == ["cv2"]


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (functions included).

    ``from a import b`` counts as both ``a`` and ``a.b`` (``b`` may be a submodule);
    relative imports are resolved against ``package``, the package the file is in.
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _package_imports(package: str, forbidden: str) -> list[str]:
    """``file: module`` for each import of ``forbidden`` (or its submodules) in ``package``."""
    directory = ROOT.joinpath(*package.split("."))
    files = sorted(directory.rglob("*.py"))
    assert files, directory
    found = []
    for path in files:
        sub = path.parent.relative_to(ROOT).as_posix().replace("/", ".")
        for name in sorted(_imported_modules(path, sub)):
            if name == forbidden or name.startswith(forbidden + "."):
                found.append(f"{path.relative_to(ROOT)}: {name}")
    return found


def test_sources_do_not_import_models() -> None:
    assert _package_imports("vsa.sources", "vsa.models") == []


def test_models_do_not_import_sources() -> None:
    assert _package_imports("vsa.models", "vsa.sources") == []


def _import_cycles(package: str) -> list[list[str]]:
    """The import cycles among ``package``'s modules, imports inside functions included (a lazy
    import hides a cycle from the interpreter, not from the reader)."""
    directory = ROOT.joinpath(*package.split("."))
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in sorted(directory.rglob("*.py"))
    }
    graph = {
        module: sorted(
            name
            for name in _imported_modules(path, module.rpartition(".")[0] or module)
            if name in modules and name != module
        )
        for module, path in modules.items()
    }
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        for name in graph[module]:
            if name == trail[0]:
                cycles.append([*trail, name])
            elif name not in trail and name > trail[0]:  # each cycle once, from its least module
                visit(name, [*trail, name])

    for module in sorted(graph):
        visit(module, [module])
    return cycles


def test_the_actors_import_no_cycle() -> None:
    # the source actor takes its Ray calls from actors.frames; actors.handles creates it
    assert _import_cycles("actors") == []
    assert _imported_modules(ROOT / "actors" / "source.py", "actors").isdisjoint(
        {"actors.handles", "actors.controller"}
    )


def test_the_cycle_check_sees_a_lazy_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import f\n")
    (package / "b.py").write_text("def f():\n    from pkg import a\n")
    (package / "c.py").write_text("from pkg import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _import_cycles("pkg") == [["pkg.a", "pkg.b", "pkg.a"]]


def test_the_static_check_sees_an_import(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "from vsa import sources\n"
        "def f():\n"
        "    from ..sources.synthetic import CLASSES\n"
        "    import vsa.sources.base\n"
    )
    names = _imported_modules(src, "vsa.models")
    assert {"vsa.sources", "vsa.sources.synthetic", "vsa.sources.base"} <= names
    assert _package_imports("vsa.tools", "vsa.sources") != []  # evaluate, make_clip


def test_importing_vsa_hashes_no_source_files():
    """Every actor process imports vsa; only the client and the controller need the code
    fingerprint, and it is computed the first time one of them asks."""
    code = (
        "import vsa, pathlib; hashed = 'CODE_FINGERPRINT' in vars(vsa); "
        "from vsa import CODE_FINGERPRINT as f; print(hashed, len(f))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.split() == ["False", "12"], out.stderr
