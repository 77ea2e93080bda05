"""Data-parallel training on the engines that exist: tf.distribute (TensorFlow), keras.distribution (JAX).

`resolve_distribution(kind, batch_size)` turns the `--distribute` setting into a `Distribution`:
the strategy or distribution to build, compile and fit the model under, the number of replicas,
and whether this process is the chief (the one that writes the run folder).

    kind            TensorFlow                                   JAX
    "none"          the default strategy (one device)            no distribution (one device)
    "mirrored"      MirroredStrategy over this machine's GPUs    DataParallel over this process's devices
                    (or its CPU)
    "multi-worker"  MultiWorkerMirroredStrategy from TF_CONFIG   keras.distribution.initialize() (from the
                                                                 KERAS_DISTRIBUTION_* variables), then
                                                                 DataParallel over every process's devices

The batch size is global: each step's batch is split evenly over the replicas. Every replica
computes its losses as means over its share and the TensorFlow step divides them by the replica
count before the gradients are summed (`gan_mri.models.backend_steps`), so a step on N replicas
equals a step on one device with the same global batch. Random draws (latent noise, dropout,
image-pool choices) are per replica, so they differ from a one-device run.

See docs/distributed.md for the commands and for what each worker writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os

import keras

from gan_mri.config import DISTRIBUTIONS

logger = logging.getLogger(__name__)

TF_CONFIG = "TF_CONFIG"
JAX_JOB_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How one training process takes part in a (possibly) distributed run.

    Attributes:
        kind: one of `DISTRIBUTIONS`.
        replicas: devices the global batch is split over (all workers together).
        is_chief: whether this process writes the run folder (checkpoints, logs, model.keras).
        worker: this process's name in logs ("worker 1 of 2"; "" when there is one process).
        engine: the `tf.distribute.Strategy` or `keras.distribution.Distribution` (None for "none").
    """

    kind: str
    replicas: int = 1
    is_chief: bool = True
    worker: str = ""
    engine: object = None

    def scope(self):
        """Context manager to build, compile, fit and save the model under."""
        if self.engine is None:
            return contextlib.nullcontext()
        return self.engine.scope()

    def prepare_dataset(self, dataset):
        """The training dataset as this distribution feeds it to `fit`.

        Multi-worker TensorFlow only: each batch (x_a, x_b) becomes one tensor (batch, 2, H, W, C),
        which the models unpack (Keras 3's fit reduces the first batch across workers to build the
        model, and MultiWorkerMirroredStrategy cannot reduce a tuple), and the dataset is sharded by
        data: the prepared arrays are no files to split, so each worker takes its share of every
        global batch (tf.data's default first tries to shard by file, and warns)."""
        if self.kind != "multi-worker" or keras.config.backend() != "tensorflow":
            return dataset
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.map(lambda x_a, x_b: tf.stack([x_a, x_b], axis=1)).with_options(options)


def _tf_config() -> dict:
    """The parsed TF_CONFIG of a multi-worker TensorFlow run.

    Raises:
        ValueError: naming TF_CONFIG, when it is missing, not JSON, or lacks cluster/task.
    """
    raw = os.environ.get(TF_CONFIG)
    if not raw:
        raise ValueError(f"distribute='multi-worker' needs the {TF_CONFIG} environment variable "
                         '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                         '"task": {"type": "worker", "index": 0}}); found none')
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"{TF_CONFIG}: expected JSON, found {raw[:80]!r} ({error.msg})") from None
    cluster, task = config.get("cluster") if isinstance(config, dict) else None, (
        config.get("task") if isinstance(config, dict) else None)
    if not isinstance(cluster, dict) or not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f"{TF_CONFIG}: expected keys 'cluster' and 'task' (with 'type' and 'index'); found {raw[:120]!r}")
    if task["type"] not in ("chief", "worker") or task["type"] not in cluster:
        raise ValueError(f"{TF_CONFIG}: task type must be 'chief' or 'worker' and listed in the cluster "
                         f"{sorted(cluster)}; found {task['type']!r}")
    return config


def _tf_is_chief(config: dict) -> bool:
    """The chief writes: the "chief" task, or worker 0 when the cluster has no chief."""
    task = config["task"]
    if task["type"] == "chief":
        return True
    return "chief" not in config["cluster"] and int(task["index"]) == 0


def _tensorflow(kind: str) -> Distribution:
    import tensorflow as tf

    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        # Without GPUs, every logical CPU device (tests configure two) is a replica.
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        strategy = tf.distribute.MirroredStrategy(devices)
        return Distribution(kind, strategy.num_replicas_in_sync, engine=strategy)
    config = _tf_config()
    # Created before any other TensorFlow op: collective ops are configured at start-up.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = config["task"]
    workers = sum(len(config["cluster"].get(name, [])) for name in ("chief", "worker"))
    return Distribution(kind, strategy.num_replicas_in_sync, is_chief=_tf_is_chief(config),
                        worker=f"{task['type']} {task['index']} of {workers}", engine=strategy)


def _jax(kind: str) -> Distribution:
    import jax

    if kind == "multi-worker" and not jax.distributed.is_initialized():
        # Before any JAX computation: the processes meet at the coordinator (the first address).
        if not os.environ.get(JAX_JOB_ADDRESSES):
            raise ValueError(f"distribute='multi-worker' on JAX needs the {JAX_JOB_ADDRESSES}, "
                             "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID environment "
                             "variables (or jax.distributed.initialize() called first; see docs/distributed.md); "
                             "found none")
        keras.distribution.initialize()
    devices = jax.devices() if kind == "multi-worker" else jax.local_devices()
    engine = keras.distribution.DataParallel(devices=devices)
    worker = f"process {jax.process_index()} of {jax.process_count()}" if jax.process_count() > 1 else ""
    return Distribution(kind, len(devices), is_chief=jax.process_index() == 0, worker=worker, engine=engine)


def resolve_distribution(kind: str, batch_size: int) -> Distribution:
    """The distribution of `--distribute kind` on the active Keras backend.

    Call it before any other TensorFlow op of the process (MultiWorkerMirroredStrategy
    configures collective ops at start-up).

    Args:
        kind: one of `DISTRIBUTIONS`.
        batch_size: the global batch size, split over the replicas.

    Returns:
        A `Distribution`.

    Raises:
        ValueError: for an unknown kind, a backend without data-parallel support, multi-worker
            without its cluster description (TF_CONFIG on TensorFlow), or a batch size that the
            replicas do not divide.
    """
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"distribute must be one of {list(DISTRIBUTIONS)}; found {kind!r}")
    if kind == "none":
        return Distribution(kind)
    backend = keras.config.backend()
    if backend == "tensorflow":
        distribution = _tensorflow(kind)
    elif backend == "jax":
        distribution = _jax(kind)
    else:
        raise ValueError(f"distribute={kind!r} needs the tensorflow or jax Keras backend; found {backend!r}")
    if int(batch_size) % distribution.replicas:
        raise ValueError(f"batch_size: the global batch is split evenly over the {distribution.replicas} replicas "
                         f"of distribute={kind!r}, so it must be a multiple of {distribution.replicas}; "
                         f"found {batch_size}")
    logger.info("distribute=%s: %d replicas%s", kind, distribution.replicas,
                f", this process is {distribution.worker}" if distribution.worker else "")
    return distribution
