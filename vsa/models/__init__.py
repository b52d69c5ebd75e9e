"""Models: the protocol, the built-in model and loading from a run's model spec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vsa.errors import ModelError
from vsa.models.base import Batch, BatchRunner, Detection, Model, resolve_device, run_model

if TYPE_CHECKING:
    from vsa.config import ModelSpec


def load_model(spec: ModelSpec) -> Model:
    """Build the model a run asks for, on its device, warmed up. Raises ModelError with the reason."""
    model = _build(spec)
    warmup = getattr(model, "warmup", None)
    if warmup is not None:
        warmup()
    return model


def _build(spec: ModelSpec) -> Model:
    try:
        device = resolve_device(spec.device)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    if spec.name == "builtin":
        from vsa.models.shapenet import ShapesModel

        return ShapesModel(device, score_threshold=spec.score_threshold)
    if spec.name == "torchscript":
        from vsa.models.yolo import TorchScriptYolo

        return TorchScriptYolo(spec, device)
    if spec.name == "torchvision":
        from vsa.models.tv import TorchvisionModel

        return TorchvisionModel(spec, device)
    raise ModelError(f"model.name: unknown model '{spec.name}'")


__all__ = [
    "Batch",
    "BatchRunner",
    "Detection",
    "Model",
    "load_model",
    "resolve_device",
    "run_model",
]
