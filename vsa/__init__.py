"""vsa: a video stream analytics engine on Ray.

Everything in this package runs and is tested without a Ray cluster; the Ray
actors that wire it together live in the top-level ``actors`` package.
"""

from __future__ import annotations

__version__ = "0.1.0"


def _code_fingerprint() -> str:
    """Hash of the engine's own source files (vsa/ and actors/).

    A detached controller keeps the code it was started with; comparing this
    fingerprint (not only the version string) tells a client that the running
    controller executes different code, even between two commits of one version.
    """
    import hashlib  # here: `import vsa` stays cheap for `vsa status` (no pathlib, no hashlib)
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in ("vsa", "actors"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# The public Python API, imported on first use: ``import vsa`` stays light (no pydantic, no Ray)
# for the actors and tools that only need the fingerprint.
_LAZY = {
    "Client": "vsa.client",
    "connect": "vsa.client",
    "RunSpec": "vsa.config",
    "RunState": "vsa.schema",
    "RunStatus": "vsa.schema",
    "SourceState": "vsa.schema",
    "SourceStatus": "vsa.schema",
    "STATUS_VERSION": "vsa.schema",
}

__all__ = ["CODE_FINGERPRINT", "__version__", *_LAZY]


def __getattr__(name: str) -> object:
    if name == "CODE_FINGERPRINT":  # hashed on first use (the client and the controller), not
        value = globals()[name] = _code_fingerprint()  # by every process that imports vsa
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vsa' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"CODE_FINGERPRINT"})
