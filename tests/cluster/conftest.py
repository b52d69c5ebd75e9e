"""A two-node Ray cluster simulated on this host (``ray.cluster_utils.Cluster``), each node
advertising one GPU (``num_gpus=1``: Ray's GPU resource, with no device behind it; torch finds
no CUDA and the model runs on the CPU). Its own pytest session, after the integration tier:
Ray allows one cluster per driver, and a second cluster on the host would be the one
``address="auto"`` finds (Ray's ``ray_current_cluster`` file), so this tier runs alone and puts
that file back as it found it.

This tier sends frames through Ray's object store (``VSA_TRANSPORT=ray``, inherited by the
nodes' workers): the integration tier covers the same-host channel, this one keeps the path
a source takes when it cannot use it working end to end, node failures included."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def two_nodes():
    import ray
    from ray._common.utils import get_ray_address_file
    from ray.cluster_utils import Cluster

    address_file = Path(get_ray_address_file(None))
    saved = address_file.read_text() if address_file.exists() else None
    temp = tempfile.mkdtemp(prefix="vsa2n", dir="/tmp")  # socket paths stay short
    common = {"num_cpus": 2, "num_gpus": 1, "object_store_memory": 300 << 20}
    transport = os.environ.get("VSA_TRANSPORT")
    os.environ["VSA_TRANSPORT"] = "ray"  # before the nodes start: their workers inherit it
    os.environ["VSA_STATE_DIR"] = tempfile.mkdtemp(prefix="vsa-state-")  # runs not kept for later
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**common, "include_dashboard": False, "temp_dir": temp},
    )
    worker = cluster.add_node(**common)
    ray.init(address=cluster.address, namespace="vsa", log_to_driver=False)
    try:
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()
        if transport is None:
            os.environ.pop("VSA_TRANSPORT", None)
        else:
            os.environ["VSA_TRANSPORT"] = transport
        if saved is not None:
            address_file.write_text(saved)
        shutil.rmtree(temp, ignore_errors=True)
