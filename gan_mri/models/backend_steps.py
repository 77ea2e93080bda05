"""The parts of a translation GAN's training and inference that differ per Keras backend.

A family describes one train step as an ordered list of player updates, each an objective
`objective(images, record) -> (loss, record)` differentiated with respect to that player's
variables (see `TranslationGAN._updates`); a `StepRecord` passes from one update to the next and
the last one holds the step's metrics. This module runs such a list:

- TensorFlow: a `GradientTape` per player and `optimizer.apply_gradients` (Keras compiles the
  whole step into one `tf.function`); the loss is divided by the replicas of the active
  `tf.distribute` strategy, whose gradients are summed.
- JAX: stateless, as in keras.io's "customizing what happens in fit() with JAX": every variable
  is a value threaded through the step; each player's objective runs in a `keras.StatelessScope`
  under `jax.value_and_grad`, its optimizer applies the gradients with `stateless_apply`, and the
  state the objective changed (spectral-norm vectors, seed generators, image pools) and the metric
  state are carried to what follows, so the step computes what the TensorFlow one computes.

TensorFlow and JAX are imported inside the functions of their backend only, so the model core
imports with either installed alone.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras


class StepRecord(NamedTuple):
    """What one player update hands to the next, and the step's metrics once both have run.

    Each objective returns ``record._replace(...)`` with the fields it computed. A NamedTuple is a
    pytree for JAX and a nest for TensorFlow, so it passes through ``jax.value_and_grad``'s auxiliary
    output and a traced step unchanged.

    Attributes:
        g_loss: the generator's weighted loss.
        terms: loss term name -> unweighted value (each becomes metric ``<name>_loss``).
        translations: target domain -> the generator update's translations (for the discriminator update).
        d_losses: domain -> the discriminator's weighted loss.
        d_accuracy: domain -> the discriminator's accuracy per scale.
    """

    g_loss: Any = None
    terms: Any = None
    translations: Any = None
    d_losses: Any = None
    d_accuracy: Any = None

    def metrics(self) -> dict:
        """The keyword arguments of `TranslationGAN._record`."""
        return {"g_loss": self.g_loss, "terms": self.terms, "d_losses": self.d_losses,
                "d_accuracy": self.d_accuracy}


class PlayerOptimizers:
    """The two players' optimizers seen as one by Keras's JAX trainer.

    The JAX trainer threads `model.optimizer.variables` through the compiled step and writes them
    back after it; this container lists both players' variables (generator's first), so the
    trainer carries both optimizers' state, and `iterations` is the generator optimizer's count.

    Args:
        g_optimizer: the generator player's optimizer.
        d_optimizer: the discriminator player's optimizer.
    """

    built = True

    def __init__(self, g_optimizer, d_optimizer):
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    @property
    def variables(self) -> list:
        return list(self.g_optimizer.variables) + list(self.d_optimizer.variables)

    @property
    def iterations(self):
        return self.g_optimizer.iterations

    def scale_loss(self, loss):
        return loss


def tensorflow_train_step(model, data):
    """One train step on the TensorFlow backend (traced by Keras into a `tf.function`)."""
    import tensorflow as tf

    images = model._unpack(data)
    record = StepRecord()
    for player, objective in model._updates():
        optimizer, variables = model._player(player)
        with tf.GradientTape() as tape:
            loss, record = objective(images, record)
            # Per replica over the global batch (gradients are summed across replicas), times the
            # loss scale under mixed precision.
            scaled = optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)
        # LossScaleOptimizer unscales the gradients and skips steps with non-finite ones.
        grads = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(grads, variables))
    logs = model._record(**record.metrics())
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        # Keras averages a multi-worker step's outputs with reduce(MEAN, axis=0), which needs an
        # axis: one-element vectors reduce to the scalars every other strategy returns.
        logs = {name: tf.reshape(value, (1,)) for name, value in logs.items()}
    return logs


def _state_refs(model) -> list:
    """Every variable a JAX train step threads, in the trainer's state order."""
    return (list(model.trainable_variables) + list(model.non_trainable_variables)
            + list(model.optimizer.variables) + list(model.metrics_variables))


def jax_train_step(model, state, data):
    """One stateless train step on the JAX backend.

    Args:
        model: the `TranslationGAN`.
        state: (trainable, non_trainable, optimizer, metrics) variable values, as the JAX
            trainer passes them.
        data: the batch.

    Returns:
        (logs, new_state) with new_state in the order of `state`.
    """
    import jax

    groups = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
              model.metrics_variables)
    values = {id(ref): value for refs, vals in zip(groups, state) for ref, value in zip(refs, vals)}
    refs = _state_refs(model)
    images = model._unpack(data)
    record = StepRecord()
    for player, objective in model._updates():
        optimizer, variables = model._player(player)
        own = {id(v) for v in variables}

        def loss_fn(player_values, objective=objective, record=record, optimizer=optimizer, variables=variables,
                    own=own):
            mapping = [(ref, values[id(ref)]) for ref in refs if id(ref) not in own]
            mapping += list(zip(variables, player_values))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                loss, new_record = objective(images, record)
                scaled = optimizer.scale_loss(loss)
            changed = {}
            for ref in refs:
                if id(ref) not in own:
                    value = scope.get_current_value(ref)
                    if value is not None:
                        changed[id(ref)] = value
            return scaled, (new_record, changed)

        player_values = [values[id(v)] for v in variables]
        (_, (record, changed)), grads = jax.value_and_grad(loss_fn, has_aux=True)(player_values)
        values.update(changed)
        new_params, new_optimizer = optimizer.stateless_apply(
            [values[id(v)] for v in optimizer.variables], grads, player_values)
        values.update({id(v): value for v, value in zip(variables, new_params)})
        values.update({id(v): value for v, value in zip(optimizer.variables, new_optimizer)})
    with keras.StatelessScope(state_mapping=[(ref, values[id(ref)]) for ref in refs]) as scope:
        logs = model._record(**record.metrics())
    for ref in model.metrics_variables:
        value = scope.get_current_value(ref)
        if value is not None:
            values[id(ref)] = value
    return logs, tuple([values[id(ref)] for ref in group] for group in groups)


def jax_test_step(model, state, data):
    """One stateless evaluation step on the JAX backend (`model._test_metrics` on the batch).

    Args:
        model: the `TranslationGAN`.
        state: (trainable, non_trainable, metrics) variable values, as the JAX trainer passes them.
        data: the batch.

    Returns:
        (logs, new_state) with new_state in the order of `state`.
    """
    groups = (model.trainable_variables, model.non_trainable_variables, model.metrics_variables)
    mapping = [(ref, value) for refs, values in zip(groups, state) for ref, value in zip(refs, values)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model._test_metrics(model._unpack(data))
    new_state = []
    for refs, values in zip(groups, state):
        current = [scope.get_current_value(ref) for ref in refs]
        new_state.append([value if now is None else now for now, value in zip(current, values)])
    return logs, tuple(new_state)


TRAINING_BACKENDS = ("tensorflow", "jax")
"""Keras backends with a train step here; inference (`compile_inference`) runs on any backend."""


def require_training_backend(owner: str) -> None:
    """Refuses to train on a Keras backend without a train step here.

    Raises:
        RuntimeError: naming the active backend and how to pick a supported one.
    """
    backend = keras.config.backend()
    if backend not in TRAINING_BACKENDS:
        raise RuntimeError(f"{owner}: training runs on the TensorFlow or JAX backend, found KERAS_BACKEND={backend!r}; "
                           "set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax (translation works on any backend)")


def compile_inference(model, source: str, target: str):
    """A compiled `images -> model._inference(images, source, target)` for the backend, with a
    free batch size; it reads the model's current weights at every call."""
    backend = keras.config.backend()

    def infer(images):
        return model._inference(images, source, target)

    if backend == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec((None, *model.image_shape, model.channels), tf.float32)
        return tf.function(infer, input_signature=[spec])
    if backend == "jax":
        import jax

        refs = list(model.trainable_variables) + list(model.non_trainable_variables)

        @jax.jit
        def stateless(values, images):
            with keras.StatelessScope(state_mapping=list(zip(refs, values))):
                return infer(images)

        return lambda images: stateless([ref.value for ref in refs], images)
    return infer
