"""The contract every translation model family keeps, checked by one function each family's tests call.

As keras-hub's `TestCase.run_layer_test` checks any layer, `check_translation_model` checks any
`TranslationGAN` (UNIT, CycleGAN, a family yet to come) made by a `build(**overrides)` function:

1. Both players update: one train step moves every trainable variable of the generator player and
   of the discriminator player (which together are the model's trainable variables, without
   overlap), advances both optimizers' iteration counts and returns every metric of `metric_names`.
2. `test_step` is stable: two evaluations of one batch give the same metrics and change no variable.
3. Round trips keep the model: a `.keras` file, a `save_weights` file and, on TensorFlow, a
   `tf.train.Checkpoint` restore every weight and both optimizers' state. The model restored from
   either file translates as the original does, and (TensorFlow) one more train step gives it the
   metrics and variables of one more step on the original.
4. The mixed policies ("mixed_float16", "mixed_bfloat16") keep every variable and the translations
   float32, run every layer that is not float32 by design in the policy's compute dtype, translate
   like the float32 model with the same weights (within a tolerance in units of the compute dtype's
   epsilon), loss-scale exactly under float16, and take a finite train step.

Everything goes through Keras's public training API (`compile`, `train_on_batch`, `test_on_batch`,
`save`, `load_model`, `save_weights`), so the checks run on TensorFlow and on JAX
(tests/test_backends.py reruns the families' tests with KERAS_BACKEND=jax). The steps run eagerly
on TensorFlow and compiled on JAX, where the round trips also take no comparison step (see
`_steps_are_cheap`); the families' `fit` tests and the TensorFlow/JAX parity test run the compiled step.

Example:
    >>> def tiny_cyclegan(**overrides):
    ...     return build_model(get_preset("cyclegan", image_shape=(32, 32), base_width=8, **overrides))
    >>> def test_cyclegan_keeps_the_model_contract(tmp_path):
    ...     check_translation_model(tiny_cyclegan, x_a, x_b, tmp_path)   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import keras
import numpy as np

from gan_mri.precision import LOSS_SCALED

MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")
"""The mixed precision policies a model family must support."""

COMPUTE_DTYPE = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}

EPSILON = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
"""Machine epsilon of the compute dtypes (the spacing of numbers at 1)."""

MAX_ERROR_EPS, MEAN_ERROR_EPS = 20, 2
"""A mixed translation's largest and mean difference from the float32 one, in epsilons of the compute
dtype (measured on the tiny UNIT and CycleGAN: largest 5.7e-3 = 5.8 eps in float16 and 5.0e-2 = 6.4
eps in bfloat16; mean 0.8 eps in both)."""

TRANSLATIONS = (("A2B", 0), ("B2A", 1))
"""Each direction and the index of its source images in (x_a, x_b)."""

POLICY_TRANSLATION = {"mixed_float16": TRANSLATIONS[0], "mixed_bfloat16": TRANSLATIONS[1]}
"""The direction each policy's translation is checked in: one each (a traced translation costs 0.5 s
on TensorFlow, a compiled one 1 s on JAX); the two policies cover both generators, and the layer
checks of `check_precision_policy` every network under each policy."""

SEED_STATE = "seed_generator_state"
"""Path suffix of a `keras.random.SeedGenerator`'s state (dropout, latent noise, image pool draws)."""


@dataclass
class ContractRun:
    """What `check_translation_model` leaves for a family's own assertions.

    Attributes:
        logs: metric name -> value of the first train step.
        model: the model after the first train step (and the round trips' comparison step).
        restored: "keras", "weights" (and "checkpoint" on TensorFlow) -> the model restored from that
            kind of file ("keras" and "weights" after the comparison step, where there is one).
    """

    logs: dict
    model: keras.Model
    restored: dict = field(default_factory=dict)


def check_translation_model(build: Callable[..., keras.Model], x_a, x_b, tmp_path, *,
                            precisions=MIXED_POLICIES,
                            after_train_step: Callable[[keras.Model, dict], None] | None = None) -> ContractRun:
    """Checks the four parts of the translation-model contract (see the module docstring).

    Args:
        build: `build(**overrides)` returns a new, uncompiled model of the family; `build()` a
            float32 one, `build(precision=policy)` the same model under `policy`. Its first train
            step must reach every trainable variable (UNIT's tests start the attention's gamma,
            initialised to 0, at 0.5).
        x_a, x_b: one batch of images of domain A and of domain B (float32, (batch, H, W, C)).
        tmp_path: a folder for the saved files.
        precisions: the mixed policies to check (default both); a family may pass () and check
            each policy in a test of its own with `check_precision_policy`.
        after_train_step: called as `after_train_step(model, logs)` right after the first train
            step, for the family's own assertions on that state (e.g. CycleGAN's image pools).

    Returns:
        A `ContractRun`.

    Raises:
        AssertionError: naming the part of the contract that failed.
    """
    model = build()
    model.compile(run_eagerly=_steps_are_cheap())
    logs = check_players_update(model, x_a, x_b)
    if after_train_step is not None:
        after_train_step(model, logs)
    check_test_step_is_stable(model, x_a, x_b)
    restored = check_round_trips(model, build, x_a, x_b, tmp_path)
    for policy in precisions:
        check_precision_policy(build, x_a, x_b, policy, reference=model)
    return ContractRun(logs=logs, model=model, restored=restored)


def _steps_are_cheap() -> bool:
    """Whether a new model's train step costs seconds here, so steps run eagerly and the round trips
    take their comparison step.

    On TensorFlow an eager step takes 1 to 3 s and tracing one 10 to 17 s (2 busy CPU cores). On JAX
    every model's first step costs 14 to 19 s compiled; eagerly the first float32 step costs 32 s (each
    operation is compiled once per shape and dtype) and later ones 3 s. There the steps are compiled
    and the comparison steps (28 s more) left out: the restored models run the same `compile` as the
    original, and their state is compared variable by variable.
    """
    return keras.config.backend() != "jax"


# ----------------------------------------------------------------------------- 1. both players
def check_players_update(model, x_a, x_b) -> dict:
    """One train step on a compiled model moves every variable of both players.

    Returns:
        The step's metrics, name -> float.
    """
    generator, discriminator = model.generator_variables, model.discriminator_variables
    g_ids, d_ids = {id(v) for v in generator}, {id(v) for v in discriminator}
    assert not g_ids & d_ids, f"variables of both players: {[v.path for v in generator if id(v) in d_ids]}"
    assert g_ids | d_ids == {id(v) for v in model.trainable_variables}, (
        "trainable variables of neither player: "
        f"{[v.path for v in model.trainable_variables if id(v) not in g_ids | d_ids]}")
    before = {player: [np.array(v) for v in variables] for player, variables in
              (("generator", generator), ("discriminator", discriminator))}
    logs = train_step(model, x_a, x_b)
    assert set(logs) == set(model.metric_names), (sorted(logs), model.metric_names)
    assert all(np.isfinite(value) for value in logs.values()), logs
    for player, variables in (("generator", generator), ("discriminator", discriminator)):
        unchanged = [v.path for v, old in zip(variables, before[player]) if np.array_equal(np.asarray(v), old)]
        assert unchanged == [], f"the train step left {len(unchanged)} {player} variables unchanged: {unchanged}"
    assert (int(model.g_optimizer.iterations), int(model.d_optimizer.iterations)) == (1, 1)
    return logs


def train_step(model, x_a, x_b) -> dict:
    """One train step on (x_a, x_b); returns that step's metrics (the running means start anew)."""
    _reset_metrics(model)
    return {name: float(value) for name, value in model.train_on_batch(x_a, x_b, return_dict=True).items()}


def _reset_metrics(model) -> None:
    for tracker in model.metrics:
        tracker.reset_state()


# ------------------------------------------------------------------------------ 2. test_step
def check_test_step_is_stable(model, x_a, x_b) -> dict:
    """Two evaluations of one batch give the same metrics (those of `metric_names`) and change no
    variable (no noise, dropout, pool or optimizer step).

    Returns:
        The evaluation's metrics, name -> float.
    """
    before = [np.array(v) for v in model.variables]
    iterations = (int(model.g_optimizer.iterations), int(model.d_optimizer.iterations))

    def evaluate():
        _reset_metrics(model)
        return {name: float(value) for name, value in model.test_on_batch(x_a, x_b, return_dict=True).items()}

    first = evaluate()
    assert set(first) == set(model.metric_names), (sorted(first), model.metric_names)
    assert evaluate() == first, "test_step gave other metrics on the same batch"
    changed = [v.path for v, old in zip(model.variables, before) if not np.array_equal(np.asarray(v), old)]
    assert changed == [], f"test_step changed {changed}"
    assert (int(model.g_optimizer.iterations), int(model.d_optimizer.iterations)) == iterations
    return first


# ---------------------------------------------------------------------------- 3. round trips
def check_round_trips(model, build, x_a, x_b, tmp_path) -> dict:
    """A `.keras` file, a `save_weights` file and (TensorFlow) a `tf.train.Checkpoint` of a trained,
    compiled `model` each restore its weights and both optimizers' state. The model restored from
    either file (the library's `.keras` models and training checkpoints) translates as `model` does,
    and, where steps are cheap (`_steps_are_cheap`), one more train step gives it the metrics and
    variables one more step gives `model`.

    Keras saves no `SeedGenerator` state (dropout, latent noise, image pool draws) in these files:
    the states are compared at neither side of the load, and copied from `model` before the
    comparison step so both models draw the same numbers.

    Returns:
        "keras", "weights" (and "checkpoint") -> the restored model.
    """
    translations = _translations(model, x_a, x_b)
    restored = {}
    model.save(tmp_path / "contract.keras")
    restored["keras"] = keras.models.load_model(tmp_path / "contract.keras")
    assert type(restored["keras"]) is type(model) and restored["keras"].config == model.config
    assert restored["keras"].g_optimizer is not None, "the .keras file did not restore the optimizers"

    model.save_weights(tmp_path / "contract.weights.h5")
    restored["weights"] = build()
    restored["weights"].compile()
    restored["weights"].load_weights(tmp_path / "contract.weights.h5")

    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        def checkpoint(m):
            return tf.train.Checkpoint(model=m, g_optimizer=m.g_optimizer, d_optimizer=m.d_optimizer)

        path = checkpoint(model).save(str(tmp_path / "contract_ckpt"))
        restored["checkpoint"] = build()
        restored["checkpoint"].compile()
        checkpoint(restored["checkpoint"]).restore(path).assert_consumed()

    for kind, other in restored.items():
        _assert_same_state(other, model, f"{kind} round trip", seed_states=False)
    # Every weight is compared above; each file's model translates in one direction (tracing a
    # translation costs about 0.5 s), and the two cover both inference graphs.
    for (direction, source), kind in zip(TRANSLATIONS, ("keras", "weights")):
        np.testing.assert_array_equal(np.asarray(restored[kind].translate((x_a, x_b)[source], direction)),
                                      translations[direction], err_msg=f"{kind} round trip: {direction} translation")

    if not _steps_are_cheap():
        return restored
    seed_states = [np.array(v) if v.path.endswith(SEED_STATE) else None for v in model.variables]
    expected = train_step(model, x_a, x_b)
    for kind in ("keras", "weights"):  # the library's files; a checkpoint's restored state suffices there
        other = restored[kind]
        other.run_eagerly = True
        for variable, state in zip(other.variables, seed_states):
            if state is not None:
                variable.assign(state)  # the draws `model` made in its step (see the docstring)
        logs = train_step(other, x_a, x_b)
        assert set(logs) == set(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(logs[name], value, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{kind} round trip, next train step: {name}")
        _assert_same_state(other, model, f"{kind} round trip, next train step", rtol=1e-5, atol=1e-6)
    return restored


def _translations(model, x_a, x_b) -> dict:
    images = (x_a, x_b)
    return {direction: np.asarray(model.translate(images[source], direction)) for direction, source in TRANSLATIONS}


def _assert_same_state(actual, expected, what: str, seed_states: bool = True, rtol=0.0, atol=0.0) -> None:
    """`actual` holds `expected`'s variables and both its optimizers' variables (iterations included)."""
    for part, ours, theirs in (
        ("model", expected.variables, actual.variables),
        ("g_optimizer", expected.g_optimizer.variables, actual.g_optimizer.variables),
        ("d_optimizer", expected.d_optimizer.variables, actual.d_optimizer.variables),
    ):
        assert [tuple(v.shape) for v in theirs] == [tuple(v.shape) for v in ours], f"{what}: {part} variables differ"
        for mine, restored in zip(ours, theirs):
            if not seed_states and mine.path.endswith(SEED_STATE):
                continue
            np.testing.assert_allclose(np.asarray(restored), np.asarray(mine), rtol=rtol, atol=atol,
                                       err_msg=f"{what}: {part} {mine.path}")


# ------------------------------------------------------------------------- 4. mixed precision
def check_precision_policy(build, x_a, x_b, policy: str, reference) -> keras.Model:
    """The model under a mixed `policy` against the float32 `reference` of the same family:

    - Keras's global policy stays float32 (the policy goes to every layer, never set globally);
    - every floating-point variable is float32;
    - every layer not under `policy` is float32 (inputs, containers, float32 outputs, pools);
      every layer under it computes in its compute dtype; every sub-network has such layers;
    - its translation (in the direction of `POLICY_TRANSLATION`) is float32 and within `MAX_ERROR_EPS`
      (largest) and `MEAN_ERROR_EPS` (mean) epsilons of the compute dtype of `reference`'s, with
      `reference`'s weights;
    - both optimizers scale the loss exactly when the policy needs it (`LOSS_SCALED`);
    - one train step gives finite metrics and leaves every variable finite and float32.

    Returns:
        The model under `policy`, after its train step.
    """
    compute = COMPUTE_DTYPE[policy]
    model = build(precision=policy)
    assert keras.mixed_precision.global_policy().name == "float32", "the model set Keras's global policy"
    assert model.precision_policy == policy
    layers = list(model._flatten_layers(include_self=False))
    elsewhere = sorted({f"{layer.name}: {layer.dtype_policy.name}" for layer in layers
                        if layer.dtype_policy.name not in (policy, "float32")})
    assert elsewhere == [], f"{policy}: layers under other policies: {elsewhere}"
    assert all(layer.compute_dtype == compute and layer.variable_dtype == "float32"
               for layer in layers if layer.dtype_policy.name == policy)
    networks = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert networks, "the model has no sub-networks"
    for network in networks:
        assert any(layer.dtype_policy.name == policy for layer in network.layers), (
            f"{policy}: every layer of {network.name} is float32")
    _assert_float32_variables(model, policy)

    model.set_weights(reference.get_weights())
    direction, source = POLICY_TRANSLATION[policy]
    images = (x_a, x_b)[source]
    translated = model.translate(images, direction)
    assert translated.dtype == "float32", f"{policy}: {direction} translation is {translated.dtype}"
    error = np.abs(np.asarray(translated) - np.asarray(reference.translate(images, direction)))
    assert error.max() <= MAX_ERROR_EPS * EPSILON[compute] and error.mean() <= MEAN_ERROR_EPS * EPSILON[compute], (
        f"{policy}: {direction} translation differs from float32 by up to {error.max():.2e} "
        f"(mean {error.mean():.2e}); the {compute} epsilon is {EPSILON[compute]:.2e}")

    model.compile(run_eagerly=_steps_are_cheap())
    for optimizer in (model.g_optimizer, model.d_optimizer):
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == (policy in LOSS_SCALED), (
            f"{policy}: {type(optimizer).__name__}")
    logs = train_step(model, x_a, x_b)
    assert all(np.isfinite(value) for value in logs.values()), f"{policy}: {logs}"
    _assert_float32_variables(model, policy)
    not_finite = [v.path for v in model.variables
                  if "float" in str(v.dtype) and not np.all(np.isfinite(np.asarray(v)))]
    assert not_finite == [], f"{policy}: not finite after the train step: {not_finite}"
    return model


def _assert_float32_variables(model, policy: str) -> None:
    floats = [v for v in model.variables if "float" in str(v.dtype)]
    assert floats and [v.path for v in floats if v.dtype != "float32"] == [], f"{policy}: variables not float32"
