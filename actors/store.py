"""The controller's run records in Ray's GCS key-value store (namespace ``vsa``, ``run/<id>``).

The GCS outlives the controller's process, so a controller that Ray restarts reads its runs
back. The interface is :class:`vsa.supervision.store.RunStore`.
"""

from __future__ import annotations

from typing import Any

from actors import NAMESPACE

KV_PREFIX = "run/"


def _kv() -> Any:
    from ray.experimental import internal_kv

    return internal_kv


class GcsRunStore:
    """A :class:`vsa.supervision.store.RunStore` on ``ray.experimental.internal_kv``."""

    def __init__(self, prefix: str = KV_PREFIX, namespace: str = NAMESPACE) -> None:
        self.prefix = prefix
        self.namespace = namespace

    def _key(self, run_id: str) -> bytes:
        return (self.prefix + run_id).encode(errors="surrogateescape")

    def put(self, run_id: str, text: str) -> None:
        _kv()._internal_kv_put(self._key(run_id), text, overwrite=True, namespace=self.namespace)

    def get(self, run_id: str) -> str | None:
        value = _kv()._internal_kv_get(self._key(run_id), namespace=self.namespace)
        return None if value is None else value.decode()

    def list(self) -> list[str]:
        keys = _kv()._internal_kv_list(self.prefix, namespace=self.namespace)
        start = len(self.prefix.encode())
        return [key[start:].decode(errors="surrogateescape") for key in keys]

    def delete(self, run_id: str) -> None:
        _kv()._internal_kv_del(self._key(run_id), namespace=self.namespace)
