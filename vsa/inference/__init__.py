"""Batched inference without Ray: the engine that forms batches and runs a model on them."""

from __future__ import annotations

from vsa.inference.engine import InferenceEngine, OnBatch, Runner, engine_key

__all__ = ["InferenceEngine", "OnBatch", "Runner", "engine_key"]
