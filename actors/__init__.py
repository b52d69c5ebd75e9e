"""Thin Ray actors around the plain-Python engine in ``vsa``."""

NAMESPACE = "vsa"
CONTROLLER_NAME = "vsa-controller"
INFERENCE_NAME = "inference"  # the first inference actor (vsa.supervision.handles.DEFAULT_SLOT)


def source_actor_name(run_id: str, source_id: str) -> str:
    return f"source:{run_id}/{source_id}"
