"""Training on several devices or machines, on the engines the backends ship: no home-made all-reduce.

- Several GPUs of one machine: `tf.distribute.MirroredStrategy` on TensorFlow, `keras.distribution.DataParallel` on
  JAX (`--gpus N`).
- Several machines: `tf.distribute.MultiWorkerMirroredStrategy`, configured by the standard `TF_CONFIG` variable
  (`--strategy multi_worker`). Every worker runs the same command; the chief (task `chief`, else worker 0) writes the
  run directory, the others train into a scratch copy of it that is deleted at the end.

`train()` only needs the object returned here: it builds and fits inside its `scope()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DistributionError(ValueError):
    """A distribution that cannot be set up as asked (too few GPUs, no TF_CONFIG, wrong backend)."""


def for_gpus(gpus: int | None) -> Any:
    """Data parallelism over the first `gpus` GPUs, on the active backend's own engine (None: one device)."""
    from capsnet import backend

    if not gpus or gpus == 1 and backend.name() != "tensorflow":
        return None
    found = len(backend.accelerators())
    if gpus > found:
        raise DistributionError(f"--gpus {gpus}: the {backend.name()} backend sees {found} GPU(s)")
    if backend.name() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy([g.name for g in tf.config.list_logical_devices("GPU")[:gpus]])
    if backend.name() == "jax":
        import jax
        import keras

        return keras.distribution.DataParallel(devices=[d for d in jax.devices() if d.platform == "gpu"][:gpus])
    raise DistributionError(f"--gpus {gpus}: several GPUs need the tensorflow or jax backend")


def multi_worker() -> Any:
    """The `MultiWorkerMirroredStrategy` of the cluster in `TF_CONFIG`: each worker's GPUs, else its CPU.

    Must run before TensorFlow's first operation (its collectives are configured when the runtime starts); the
    call blocks until every worker of the cluster has started.
    """
    from capsnet import backend

    if backend.name() != "tensorflow":
        raise DistributionError(f"--strategy multi_worker needs the tensorflow backend, not {backend.name()}")
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", ""))["cluster"]
    except (ValueError, KeyError, TypeError):
        raise DistributionError("--strategy multi_worker needs TF_CONFIG: a JSON object with the 'cluster' of "
                                "workers and this process's 'task' (see the README)") from None
    if not isinstance(cluster, dict) or not cluster:
        raise DistributionError("TF_CONFIG's 'cluster' must name the workers, e.g. {\"worker\": [\"host:port\", ...]}")
    return _multi_worker_strategy_class()()


def _multi_worker_strategy_class() -> type:
    import tensorflow as tf

    class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """`MultiWorkerMirroredStrategy` whose `reduce` takes what Keras 3's `fit` passes it (keras-team/keras#20585):
        a nest of per-replica values (the batch it builds the model from) and scalars with `axis=0` (the logs).
        Both reductions are the strategy's own, one leaf at a time."""

        def reduce(self, reduce_op, value, axis):
            def reduce_leaf(leaf):
                rank = self.experimental_local_results(leaf)[0].shape.rank
                return super(KerasMultiWorkerMirroredStrategy, self).reduce(reduce_op, leaf, axis if rank else None)

            return tf.nest.map_structure(reduce_leaf, value)

    return KerasMultiWorkerMirroredStrategy


def is_chief(distribution: Any) -> bool:
    """Whether this process writes the run directory: always, except for the non-chief workers of a cluster."""
    resolver = getattr(distribution, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    cluster = resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster)


@contextlib.contextmanager
def run_directory_for(distribution: Any, save_dir: str | Path) -> Iterator[Path]:
    """The directory this process trains into: `save_dir` on the chief; on another worker a scratch copy of it
    (the checkpoint to resume from included), removed afterwards. Every worker runs the same callbacks, saving
    included, so that all of them take the same steps together, as TensorFlow's multi-worker guide asks."""
    if is_chief(distribution):
        yield Path(save_dir)
        return
    scratch = Path(tempfile.mkdtemp(prefix="capsnet-worker-"))
    try:
        if Path(save_dir).is_dir():
            shutil.copytree(save_dir, scratch, dirs_exist_ok=True)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
