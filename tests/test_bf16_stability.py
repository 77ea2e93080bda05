"""mixed_bfloat16 trains as float32 does (issue 37): `STEPS` train steps of every preset at 32x32, and of
one preset per set of networks at 64x64 (`_presets`), on phantom slices, each from the same weights on the
same batches in float32 and in bfloat16.

Before the fix, bfloat16 ran into NaN within 2-4 steps at 32x32 (sa-enc-cl-sn, unit-sn: NaN losses;
unit, sa-gen: NaN weights): TensorFlow's oneDNN bfloat16 filter gradient of a strided conv over a
one-pixel-wide input (UNIT's coarsest discriminator scale, conv3 on 1x1) returns undefined values
(`gan_mri.networks.strided_conv_dtype`). oneDNN is what `gan-mri train` runs on a CPU and what
tests/conftest.py turns off for the rest of the suite, so the runs go to a subprocess with it on (this
file run as a script, `_train_all`), one per size.

Cost, measured on 2 shared CPU cores: 9-25 s of CPU per preset and size (both precisions), 241 s at
32x32 and 403 s at 64x64 with every preset there (a CPU without AVX-512, 2026-12-08). Most of it is
tracing: each of the 32 train steps is a ~10,000-op graph that takes 3-10 s to trace and 1-5 s to start,
against 20-180 ms per step. So the networks are as small as each preset
allows (base width 4, UNIT without residual blocks in its encoders and generators, the shared ones with
their instance normalization kept, CycleGAN with one; batch 2), the step runs in a plain `tf.function`
(no `fit`, no autograph), and the subprocess turns off Grappler's rewrites and runs one thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

STEPS = 50
SIZES = (32, 64)
BATCH = 2
WIDTH = 4
SMALLEST = {"unit": dict(encoder_res_blocks=0, generator_res_blocks=0), "cyclegan": dict(res_blocks=1)}
"""Per family: the fewest layers a preset keeps (see the module docstring)."""

MAX_RELATIVE_DISTANCE = 1.0
"""How far the bfloat16 run's weights may end from the float32 run's, relative to how far the float32
run moved them from the common start (L2 over every trainable weight). Both runs move about as far
(bfloat16 0.97-1.04 times float32, measured), so two runs that went unrelated ways end about
sqrt(2) = 1.41 apart and opposite ones 2; below 1 the bfloat16 run followed float32's. Measured:
0.18-0.62 (every preset at both sizes, three runs on two phantom datasets), so 1.0 leaves a 1.6x
margin for other CPUs' rounding; a diverged run has NaN or blown-up weights, far over it."""


def _presets(size: int = SIZES[0]) -> tuple[str, ...]:
    """Every preset at the smallest size, where the oneDNN bug lived (a strided conv over a 1x1 input).
    At 64x64, one preset per set of networks: presets that differ only in their reconstruction loss
    (unit-cl, sa-gen-cl) build unit's and sa-gen's networks, and their Charbonnier loss runs at 64x64
    in sa-gen-cl-sn and sa-enc-cl-sn (each of the 32 runs costs 10-25 s of CPU, mostly tracing)."""
    from gan_mri.config import all_preset_names, get_preset

    names = tuple(all_preset_names())
    if size == SIZES[0]:
        return names
    networks = {}
    for name in names:
        config = get_preset(name)
        key = (config.model, getattr(config, "attention", None), getattr(config, "spectral_norm", None), config.channels)
        networks.setdefault(key, name)
    return tuple(networks.values())


def _train(preset: str, size: int, batches: list, steps: int) -> dict:
    """`steps` traced train steps of `preset` at `size` in float32 and in mixed_bfloat16 from the same
    weights on the same batches; returns per-step losses, the weights' distances and the time taken."""
    import keras
    import tensorflow as tf

    from gan_mri.config import get_preset
    from gan_mri.models import build_model

    start, cpu = time.perf_counter(), time.process_time()
    runs, start_weights = {}, None
    for policy in ("float32", "mixed_bfloat16"):
        config = get_preset(preset, image_shape=(size, size), base_width=WIDTH, precision=policy,
                            **SMALLEST[get_preset(preset).model])
        keras.utils.set_random_seed(0)
        model = build_model(config)
        if start_weights is None:
            start_weights = model.get_weights()
            initial = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        model.set_weights(start_weights)
        model.compile()
        # No autograph: the step has no tensor-dependent Python control flow, and converting it costs ~1 s.
        step = tf.function(model.train_step, autograph=False)
        losses = []
        for i in range(steps):
            logs = step(batches[i % len(batches)])
            losses.append({name: float(value) for name, value in logs.items() if name.endswith("loss")})
        runs[policy] = dict(losses=losses, weights=[keras.ops.convert_to_numpy(w) for w in model.trainable_weights])

    def distance(left, right):
        return float(np.sqrt(sum(np.sum((a.astype(np.float64) - b) ** 2) for a, b in zip(left, right))))

    bfloat16, float32 = runs["mixed_bfloat16"]["weights"], runs["float32"]["weights"]
    finite = all(bool(np.all(np.isfinite(w))) for w in bfloat16)
    return {
        "losses": {policy: run["losses"] for policy, run in runs.items()},
        "bfloat16_weights_finite": finite,
        "float32_moved": distance(float32, initial),
        "bfloat16_moved": distance(bfloat16, initial) if finite else float("nan"),
        "apart": distance(bfloat16, float32) if finite else float("nan"),
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
    }


def _train_all(datasets: dict, out: Path, steps: int) -> None:
    """Runs `_train` for every preset and size; writes {"<preset>@<size>": result} to `out`."""
    from gan_mri.data.prepared import PreparedDataset

    results = {}
    for size, path in datasets.items():
        dataset = PreparedDataset.open(path)
        for preset in _presets(int(size)):
            channels = 3 if preset.endswith("rgb") else 1
            batches = [tuple(np.asarray(x) for x in batch) for batch in
                       dataset.train_dataset(BATCH, shuffle=True, seed=0, channels=channels).take(steps)]
            results[f"{preset}@{size}"] = _train(preset, int(size), batches, steps)
            out.write_text(json.dumps(results))


def _failures(results: dict, size: int) -> list[str]:
    """What each preset's runs at `size` got wrong: non-finite losses or weights, or bfloat16 weights
    further than `MAX_RELATIVE_DISTANCE` from float32's."""
    failures = []
    for preset in _presets(size):
        result = results[f"{preset}@{size}"]
        for policy, losses in result["losses"].items():
            not_finite = [(step + 1, name) for step, logs in enumerate(losses) for name, value in logs.items()
                          if not np.isfinite(value)]
            if len(losses) != STEPS or not_finite:
                failures.append(f"{preset} {policy}: {len(losses)} steps, non-finite (step, loss) {not_finite[:3]}")
        if not result["bfloat16_weights_finite"]:
            failures.append(f"{preset} mixed_bfloat16: non-finite weights after {STEPS} steps")
        elif not result["apart"] < MAX_RELATIVE_DISTANCE * result["float32_moved"]:
            failures.append(f"{preset}: bfloat16 ended {result['apart']:.4g} from float32's weights, "
                            f"{result['apart'] / result['float32_moved']:.2f} times float32's move from the start "
                            f"({result['float32_moved']:.4g})")
    return failures


@pytest.mark.parametrize("size", SIZES)
def test_every_preset_trains_in_bfloat16_like_in_float32(size, tiny_phantom, tmp_path):
    """One subprocess per size, every preset of `_presets(size)` in it, all failures at once."""
    from gan_mri.data.dataset import prepare

    dataset = prepare(tiny_phantom, tmp_path / "data", image_shape=(size, size), seed=0)
    out = tmp_path / "results.json"
    # TensorFlow with oneDNN, whatever backend the suite runs under: the kernel that diverged is theirs.
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, __file__, json.dumps({size: str(dataset.path)}), str(out), str(STEPS)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert sorted(results) == sorted(f"{preset}@{size}" for preset in _presets(size))
    assert all(result["float32_moved"] > 0 for result in results.values())
    assert _failures(results, size) == []


def test_the_check_names_non_finite_losses_and_weights_and_a_run_gone_elsewhere():
    """`_failures` on made-up results: what the expensive test would report."""
    steady = [{"g_loss": 1.0, "d_loss": 0.5}] * STEPS
    good = {"losses": {"float32": steady, "mixed_bfloat16": steady}, "bfloat16_weights_finite": True,
            "float32_moved": 2.0, "apart": 0.5}
    results = {f"{preset}@32": good for preset in _presets()}
    assert _failures(results, 32) == []
    diverged = steady[:2] + [{"g_loss": 1.0, "d_loss": float("nan")}] + steady[3:]
    results["unit@32"] = dict(good, losses={"float32": steady, "mixed_bfloat16": diverged})
    results["unit-sn@32"] = dict(good, bfloat16_weights_finite=False)
    results["cyclegan@32"] = dict(good, apart=2.4)
    results["sa-gen@32"] = dict(good, losses={"float32": steady[:10], "mixed_bfloat16": steady})
    assert _failures(results, 32) == [
        "unit mixed_bfloat16: 50 steps, non-finite (step, loss) [(3, 'd_loss')]",
        "unit-sn mixed_bfloat16: non-finite weights after 50 steps",
        "sa-gen float32: 10 steps, non-finite (step, loss) []",
        "cyclegan: bfloat16 ended 2.4 from float32's weights, 1.20 times float32's move from the start (2)",
    ]


if __name__ == "__main__":
    import tensorflow as tf

    # Grappler's graph rewrites cost 1-3 s on each model's first step and leave oneDNN's kernels (and
    # their bfloat16 bug) in place; one thread halves the CPU time of these tiny ops (and leaves the
    # other core to the other test worker).
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    _train_all({int(size): path for size, path in json.loads(sys.argv[1]).items()}, Path(sys.argv[2]),
               int(sys.argv[3]))
