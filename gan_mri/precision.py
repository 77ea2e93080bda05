"""Precision policy: which Keras dtype policy the networks get (passed per layer, never set globally).

Settings (`PRECISIONS`, defined in `gan_mri.config`):

- "float32": every layer computes in float32.
- "mixed_float16": variables in float32, layers compute in float16; both optimizers scale the
  loss (float16's range is narrow). For GPUs with tensor cores.
- "mixed_bfloat16": variables in float32, layers compute in bfloat16, no loss scaling (bfloat16
  has float32's range). For CPUs with bfloat16 matrix units (Intel AMX-BF16) and TPUs.
- "auto": mixed_float16 on a GPU; on a CPU (`choose_precision`, `decide_on_cpu`) float32 unless the
  CPU has an AMX-BF16 unit and bfloat16 is clearly faster there for the model at hand: a probe times
  convolutions at the model's own shapes (`ModelShape`: image size, base width, batch) and decides
  only outside a margin (`PROBE_MARGIN`) either side of `BF16_MIN_SPEEDUP`, repeating up to
  `PROBE_ROUNDS` times (still unclear: float32). The decision is cached per machine (CPU model and flags),
  software (backend and Keras versions) and model shape in the user's cache folder
  (``$XDG_CACHE_HOME/gan-mri/precision``, default ``~/.cache/gan-mri/precision``), so the same model
  on the same machine and software trains in the same precision every time (a seeded rerun gives
  the same numbers), and `gan_mri.training.train` records in run.json why (`PrecisionChoice`). No
  single probe fits every CPU: on a Xeon with AMX a UNIT step ran 1.8-3x faster in bfloat16 and the
  gain grows with the model (issue 37: 1.83x at 128x128, paper width, little for the demo's width-16
  model at 64 px); on an AMD EPYC with AVX512-BF16 but no AMX the probe timed bfloat16 1.76x faster
  at the shipped model's shapes where its step gained 1.25-1.45x, and on CPUs without bfloat16
  instructions the step is 13-15x slower.

``GAN_MRI_AUTO_PRECISION`` (environment) pins what "auto" becomes, e.g. ``float32`` for runs that must
match bit for bit across machines (the test suite sets it).

Under either mixed policy the losses, the attention's softmax, the generators' tanh and the
discriminators' logits stay float32 (see `gan_mri.losses`, `gan_mri.layers.SelfAttention`,
`gan_mri.networks`), spectral normalization's power iteration runs in float32, and so does a
strided conv over a one-pixel-wide input under bfloat16 (`gan_mri.networks.strided_conv_dtype`:
TensorFlow's oneDNN bfloat16 filter gradient of one is undefined).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import time
from pathlib import Path

import keras

from gan_mri.config import PRECISIONS
from gan_mri.fileutil import atomic_write_text

logger = logging.getLogger(__name__)

AUTO_ENV = "GAN_MRI_AUTO_PRECISION"
"""Environment variable that, when set to a concrete precision, is what "auto" resolves to."""

LOSS_SCALED = ("mixed_float16",)
"""Policies whose optimizers scale the loss: float16 underflows small gradients, bfloat16 does not."""

BF16_MIN_SPEEDUP = 1.3
"""How much faster the probe's bfloat16 convolutions must be than float32 for "auto" to pick them."""

PROBE_MARGIN = 0.15
"""A probe decides only outside BF16_MIN_SPEEDUP / (1 + margin) .. BF16_MIN_SPEEDUP * (1 + margin)
(1.13x-1.50x): a single probe that hovered around 1.3x picked float32 or bfloat16 from one run to
the next on a Xeon with AMX (issue 37)."""

PROBE_ROUNDS = 3
"""Probe rounds at most (each keeping the fastest time of every dtype so far); still unclear: float32."""

AMX_FLAG = "amx_bf16"
"""The /proc/cpuinfo flag of Intel's AMX-BF16 matrix unit: without it "auto" is float32 on a CPU, unprobed."""

DECISION_RULE = 2
"""Version of the decision rule, part of the cache key: a new rule does not reuse old decisions."""

SOURCES = ("setting", "pinned", "gpu", "probe", "cpu_feature", "cache")
"""Why a precision was chosen (`PrecisionChoice.source`)."""


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """The shape of a model's train step that its speed in each precision depends on: the probe's
    convolution shapes and part of the cache key.

    Args:
        height, width: image size.
        channels: image channels.
        base_width: filters of the first layers (2x and 4x after each downsampling).
        batch: images per domain per step.
    """

    height: int = 256
    width: int = 256
    channels: int = 1
    base_width: int = 64
    batch: int = 1

    @classmethod
    def of(cls, config, batch_size: int | None = None) -> "ModelShape":
        """The shape of a model config (any family: ``image_shape``, ``channels``, ``base_width``)
        trained with ``batch_size`` images per domain (None: 1, as inference and a bare model build)."""
        height, width = config.image_shape
        return cls(int(height), int(width), int(config.channels), int(config.base_width), int(batch_size or 1))

    def probe_inputs(self) -> tuple[tuple[int, int, int, int], ...]:
        """The probe's convolution inputs (batch, height, width, channels): the full-resolution layers
        (base width) and the residual blocks, two downsamplings in at 4x the base width (UNIT's
        encoders and generators, CycleGAN's ResNet generator)."""
        return ((self.batch, self.height, self.width, self.base_width),
                (self.batch, max(1, self.height // 4), max(1, self.width // 4), 4 * self.base_width))

    def describe(self) -> str:
        return " + ".join("x".join(map(str, shape)) for shape in self.probe_inputs())


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """A concrete precision and why it was chosen.

    Attributes:
        precision: "float32", "mixed_float16" or "mixed_bfloat16".
        source: one of `SOURCES`: the setting itself, pinned by `AUTO_ENV`, a GPU, the CPU probe, the
            CPU's features (probe unclear), or a cached decision (``details["decision"]`` says which).
        reason: one line for people (the log and run.json).
        details: numbers behind it (JSON-serializable): model shape, probe rounds, cache file...
    """

    precision: str
    source: str
    reason: str
    details: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """The run.json form: precision, source, reason and the details."""
        return {"precision": self.precision, "source": self.source, "reason": self.reason, **self.details}


def resolve_precision(precision: str, shape: ModelShape | None = None) -> str:
    """Maps a precision setting to a concrete Keras dtype policy name (`choose_precision`'s precision).

    Args:
        precision: one of `PRECISIONS`.
        shape: the model's `ModelShape` ("auto" on a CPU probes at it; None: `ModelShape()`).

    Returns:
        "float32", "mixed_float16" or "mixed_bfloat16".

    Raises:
        ValueError: for any other value, or an invalid `AUTO_ENV`.
    """
    return choose_precision(precision, shape).precision


def choose_precision(precision: str, shape: ModelShape | None = None) -> PrecisionChoice:
    """Resolves a precision setting and says why (module docstring), logging it at INFO.

    "auto" on a CPU reads the cached decision for this machine, software and `shape`; without one it
    decides with `decide_on_cpu` (float32 without `AMX_FLAG`; with it, `probe_conv_speed` at `shape`
    until bfloat16 is clearly faster or clearly not), then caches the decision (atomically; a cache
    that cannot be written is logged and the decision kept for this process).

    Args:
        precision: one of `PRECISIONS`.
        shape: the model's `ModelShape` (None: `ModelShape()`, the paper's UNIT at 256x256, batch 1).

    Returns:
        A `PrecisionChoice`.

    Raises:
        ValueError: for a precision not in `PRECISIONS`, or an `AUTO_ENV` that is not a concrete one.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}; found {precision!r}")
    if precision != "auto":
        return PrecisionChoice(precision, "setting", "set explicitly")
    choice = _choose_auto(shape or ModelShape())
    logger.info("precision auto: %s (%s)", choice.precision, choice.reason)
    return choice


_UNCACHED: dict[Path, PrecisionChoice] = {}
"""Decisions this process could not write to the cache, so that it keeps to them."""


def _choose_auto(shape: ModelShape) -> PrecisionChoice:
    pinned = os.environ.get(AUTO_ENV)
    if pinned:
        if pinned not in PRECISIONS[1:]:
            raise ValueError(f"{AUTO_ENV}: expected one of {list(PRECISIONS[1:])}; found {pinned!r}")
        return PrecisionChoice(pinned, "pinned", f"pinned by {AUTO_ENV}")
    if _has_gpu():
        return PrecisionChoice("mixed_float16", "gpu", f"the {keras.config.backend()} backend sees a GPU")
    key = decision_key(shape)
    path = cache_file(key)
    if path in _UNCACHED:
        return _UNCACHED[path]
    cached = _read_cached(path, key)
    if cached is not None:
        return PrecisionChoice(cached["precision"], "cache", f"cached in {path}: {cached['reason']}",
                               {"cache_file": str(path), "decision": cached["decision"]})
    _, flags = cpu_features()
    choice = decide_on_cpu(shape, AMX_FLAG in flags)
    record = {"key": key, "precision": choice.precision, "reason": choice.reason, "decision": choice.to_dict(),
              "decided_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    except OSError as error:
        logger.warning("precision auto: could not cache the decision in %s (%s); deciding again in the next "
                       "process", path, error)
        _UNCACHED[path] = choice
        return choice
    return dataclasses.replace(choice, details={**choice.details, "cache_file": str(path)})


def decide_on_cpu(shape: ModelShape, has_amx: bool) -> PrecisionChoice:
    """The CPU decision for a model of `shape` (no cache): float32 without AMX-BF16; with it, probe
    rounds until bfloat16 is clearly faster or clearly not.

    Without AMX-BF16 no probe runs and float32 stays, as issue 37 asks: on CPUs without bfloat16
    instructions the step is 13-15x slower in bfloat16, and on an AMD EPYC with AVX512-BF16
    (2026-12-07, docs/performance.md) the probe overstated the gain (1.76x at the shipped model's
    shapes, where the step gained 1.25-1.45x; 1.28-1.42x at the demo's, where it gained 1.06-1.24x);
    ``--precision mixed_bfloat16`` takes that gain on such a CPU. With AMX-BF16, each
    round runs `probe_conv_speed(shape)`, and the decision uses the fastest float32 and bfloat16 times
    of all rounds so far: mixed_bfloat16 when their ratio is >= BF16_MIN_SPEEDUP * (1 + PROBE_MARGIN),
    float32 when <= BF16_MIN_SPEEDUP / (1 + PROBE_MARGIN); in between another round, and float32 if
    bfloat16 is still not clearly faster after `PROBE_ROUNDS` rounds.

    Args:
        shape: the model's shape.
        has_amx: whether the CPU has AMX-BF16 (`AMX_FLAG`).

    Returns:
        A `PrecisionChoice`: source "cpu_feature" (no AMX-BF16) or "probe", with the rounds' numbers
        in its details.
    """
    details = {"model_shape": dataclasses.asdict(shape), AMX_FLAG: has_amx}
    if not has_amx:
        return PrecisionChoice("float32", "cpu_feature", f"the CPU has no {AMX_FLAG}: mixed_bfloat16 only with a "
                                                         f"bfloat16 matrix unit", details)
    upper, lower = BF16_MIN_SPEEDUP * (1 + PROBE_MARGIN), BF16_MIN_SPEEDUP / (1 + PROBE_MARGIN)
    rounds = []
    for _ in range(PROBE_ROUNDS):
        rounds.append(probe_conv_speed(shape))
        float32_ms = min(probe["float32_ms"] for probe in rounds)
        bfloat16_ms = min(probe["bfloat16_ms"] for probe in rounds)
        speedup = float32_ms / bfloat16_ms
        if speedup >= upper or speedup <= lower:
            break
    details.update(backend=keras.config.backend(), float32_ms=float32_ms, bfloat16_ms=bfloat16_ms,
                   speedup=round(speedup, 3), threshold=BF16_MIN_SPEEDUP, margin=PROBE_MARGIN,
                   rounds=[probe["speedup"] for probe in rounds])
    measured = (f"the CPU has {AMX_FLAG}; probe, 3x3 conv + conv_transpose at {shape.describe()}, "
                f"{details['backend']} backend: float32 {float32_ms:.3f} ms, bfloat16 {bfloat16_ms:.3f} ms, "
                f"bfloat16 {speedup:.2f}x faster after {len(rounds)} round{'s' if len(rounds) > 1 else ''}")
    clear = f"mixed_bfloat16 from {upper:.3f}x, float32 up to {lower:.3f}x"
    if speedup >= upper:
        return PrecisionChoice("mixed_bfloat16", "probe", f"{measured}; {clear}", details)
    if speedup <= lower:
        return PrecisionChoice("float32", "probe", f"{measured}; {clear}", details)
    return PrecisionChoice("float32", "probe", f"{measured}; still within {lower:.3f}x-{upper:.3f}x: float32 "
                                               f"unless bfloat16 is clearly faster", details)


def probe_conv_speed(shape: ModelShape, repeats: int = 3) -> dict:
    """Times 3x3 convolutions and their transposes at the model's shapes in float32 and bfloat16 on the
    active backend.

    At each of `ModelShape.probe_inputs` a convolution to as many channels and its transpose run; the
    transpose is the convolution's input gradient, a kernel a train step runs as often as the forward
    one: on CPUs without bfloat16 units TensorFlow's bfloat16 gradient kernels are 20x slower than
    float32's while its forward convolution is as fast, so the forward alone would mislead. Each dtype
    runs once to warm up (kernel selection, JAX compilation), then `repeats` times, alternating
    between the dtypes so load from other processes falls on both alike; the fastest run of each
    counts.

    Args:
        shape: the model's shape.
        repeats: timed runs per dtype.

    Returns:
        {"backend", "inputs", "float32_ms", "bfloat16_ms", "speedup"}: the time of every probe input's
        convolution plus transposed convolution per dtype, and speedup = float32 / bfloat16 time.
    """
    import numpy as np

    ops = keras.ops
    rng = np.random.default_rng(0)
    operands = {dtype: [] for dtype in ("float32", "bfloat16")}
    for inputs_shape in shape.probe_inputs():
        inputs = rng.standard_normal(inputs_shape).astype("float32")
        kernel = rng.standard_normal((3, 3, inputs_shape[-1], inputs_shape[-1])).astype("float32")
        for dtype, pairs in operands.items():
            pairs.append((ops.convert_to_tensor(inputs, dtype=dtype), ops.convert_to_tensor(kernel, dtype=dtype)))
    best = {dtype: float("inf") for dtype in operands}
    for run in range(repeats + 1):
        for dtype, pairs in operands.items():
            start = time.perf_counter()
            for x, k in pairs:
                backward = ops.conv_transpose(ops.conv(x, k, padding="same"), k, padding="same")
                # Reading one value back waits for the result (JAX dispatches asynchronously).
                ops.convert_to_numpy(ops.cast(backward[0, 0, 0, 0], "float32"))
            if run:  # run 0 warms up
                best[dtype] = min(best[dtype], time.perf_counter() - start)
    return {"backend": keras.config.backend(), "inputs": [list(s) for s in shape.probe_inputs()],
            "float32_ms": round(best["float32"] * 1e3, 4), "bfloat16_ms": round(best["bfloat16"] * 1e3, 4),
            "speedup": round(best["float32"] / best["bfloat16"], 3)}


def cpu_features() -> tuple[str, frozenset]:
    """(CPU model name, its feature flags), from /proc/cpuinfo on Linux; elsewhere `platform`'s
    processor name and no flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return fields.get("model name", platform.machine()), frozenset(fields.get("flags", "").split())


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def decision_key(shape: ModelShape) -> dict:
    """What a cached CPU decision depends on: the rule, the machine (CPU model, a digest of its flags,
    architecture), the software (Keras backend and versions of Keras, TensorFlow or JAX) and the model
    shape. JSON-serializable."""
    cpu, flags = cpu_features()
    backend = keras.config.backend()
    libraries = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax", "jaxlib")}.get(backend, ())
    return {
        "rule": DECISION_RULE, "threshold": BF16_MIN_SPEEDUP, "margin": PROBE_MARGIN, "rounds": PROBE_ROUNDS,
        "cpu": cpu, "cpu_flags_sha256": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16],
        "machine": platform.machine(), "backend": backend, "keras": keras.__version__,
        **{name: version for name in libraries if (version := _version(name))},
        "model_shape": dataclasses.asdict(shape),
    }


def cache_dir() -> Path:
    """gan-mri's folder in the user's cache: ``$XDG_CACHE_HOME/gan-mri``, default ``~/.cache/gan-mri``."""
    root = os.environ.get("XDG_CACHE_HOME")
    return (Path(root) if root and os.path.isabs(root) else Path.home() / ".cache") / "gan-mri"


def cache_file(key: dict) -> Path:
    """The file of one cached decision: ``cache_dir()/precision/<digest of key>.json``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "precision" / f"{digest}.json"


def _read_cached(path: Path, key: dict) -> dict | None:
    """The cached record at `path` if it is whole and for `key`; None (logged) otherwise."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("precision auto: ignoring the unreadable cache file %s (%s)", path, error)
        return None
    if (not isinstance(record, dict) or record.get("key") != key or record.get("precision") not in PRECISIONS[1:]
            or not isinstance(record.get("decision"), dict)):
        logger.warning("precision auto: ignoring the cache file %s, written for another key or incomplete", path)
        return None
    record.setdefault("reason", record["decision"].get("reason", ""))
    return record


def _has_gpu() -> bool:
    """Whether the active Keras backend sees a GPU (asks only that backend's framework)."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    return False
