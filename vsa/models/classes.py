"""Class names from the run file: a list, or a names file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vsa.errors import ModelError


def names_from_data(data: Any, where: str) -> list[str]:
    """A list, ``{0: a, 1: b}``, or a mapping with ``names:`` (Ultralytics data files)."""
    if isinstance(data, dict) and "names" in data:
        data = data["names"]
    if isinstance(data, dict):
        try:
            keys = sorted(int(k) for k in data)
        except (TypeError, ValueError):
            raise ModelError(f"{where}: class ids must be integers") from None
        if keys != list(range(len(keys))):
            raise ModelError(f"{where}: class ids must be 0..{len(keys) - 1} without gaps")
        data = [data[k] if k in data else data[str(k)] for k in keys]
    if not isinstance(data, list) or not data or not all(isinstance(n, str | int) for n in data):
        raise ModelError(f"{where}: expected a non-empty list of class names")
    return [str(n) for n in data]


def load_classes(classes: list[str] | str) -> list[str]:
    if isinstance(classes, list):
        return names_from_data(classes, "model.classes")
    path = Path(classes)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the class names file ({exc.strerror})") from None
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        import yaml  # imported here: the model code must import without PyYAML on GPU check hosts

        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ModelError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
        return names_from_data(data, str(path))
    return names_from_data([line.strip() for line in text.splitlines() if line.strip()], str(path))
