"""`TranslationGAN`: what every two-domain translation GAN of gan_mri shares (UNIT, CycleGAN).

A family subclasses it and adds only what differs: its networks (`_build_networks`), which
variables each player trains, the losses, the order of the two updates in `train_step`, and one
inference graph (`_inference`). The base class does the rest the same way for every family:
construction from a config (or its dict form) under the config's precision policy, the
two-optimizer `compile` (mixed-precision loss scaling, optional learning-rate schedule),
metric tracking, gradient application, input checks, `translate`/`reconstruct` and
`get_config`/`from_config`.

Attribute names are part of the saved-file format (`.keras` files and checkpoints store weights
under them), so the base class adds no saveable attributes of its own besides the optimizers
and `_trackers`, which both families have always had, and `intensity_remap`, which only models
with a remap prior have (`gan_mri.remap_prior`).
"""

from __future__ import annotations

import logging

import keras
from keras import ops

from gan_mri import DIRECTIONS, DOMAINS, Direction
from gan_mri.models import backend_steps
from gan_mri.models.backend_steps import StepRecord  # noqa: F401 - the objectives' protocol, for families
from gan_mri.precision import LOSS_SCALED, ModelShape, resolve_precision
from gan_mri.remap_prior import QuantileRemap, with_residual
from gan_mri.baseline import IntensityRemap
from gan_mri.standardization import IntensityStandardization

logger = logging.getLogger(__name__)

OTHER_DOMAIN = {"A": "B", "B": "A"}
"""Domain -> the other domain."""


@keras.saving.register_keras_serializable(package="gan_mri")
class LinearDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Constant learning rate, then a linear decay to 0 (CycleGAN's schedule).

        lr(step) = lr0                                            for step < decay_start
        lr(step) = lr0 * max(0, 1 - (step - decay_start) / decay_steps)   afterwards

    so lr reaches 0 at step decay_start + decay_steps (the end of training).

    Args:
        initial_learning_rate: lr0.
        decay_start: the step at which the decay begins.
        decay_steps: steps from the start of the decay to lr = 0 (>= 1).

    Raises:
        ValueError: for a negative `decay_start` or `decay_steps` < 1.
    """

    def __init__(self, initial_learning_rate: float, decay_start: int, decay_steps: int):
        if decay_start < 0 or decay_steps < 1:
            raise ValueError(
                f"LinearDecaySchedule needs decay_start >= 0 and decay_steps >= 1; found "
                f"decay_start={decay_start}, decay_steps={decay_steps}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_start = int(decay_start)
        self.decay_steps = int(decay_steps)

    @classmethod
    def over_training(cls, initial_learning_rate: float, total_steps: int, decay_start: float):
        """The schedule that decays over the last `1 - decay_start` of `total_steps` steps."""
        start = int(round(total_steps * decay_start))
        return cls(initial_learning_rate, start, max(1, total_steps - start))

    def __call__(self, step):
        step = ops.cast(step, "float32")
        progress = (step - self.decay_start) / self.decay_steps
        return self.initial_learning_rate * ops.clip(1.0 - progress, 0.0, 1.0)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_start": self.decay_start,
                "decay_steps": self.decay_steps}


class TranslationGAN(keras.Model):
    """Base of the translation GANs: two domains (A = T1w, B = T2w), two players (G and D).

    Subclasses set `config_class` and `METRIC_NAMES` and implement `_build_networks`,
    `generator_variables`, `discriminator_variables`, `_inference`, `_updates` and
    `_test_metrics`; they may override `_learning_rate` to schedule the default optimizers.

    Attributes:
        config: the model config (an instance of `config_class`).
        image_shape: (H, W) of the images.
        channels: image channels.
        precision_policy: the concrete Keras dtype policy of the networks.
        g_optimizer, d_optimizer: the two players' optimizers (None until `compile`).
        standardization: the intensity standardization its inputs went through in training
            (`gan_mri.standardization.IntensityStandardization`; None: none). Saved with the
            model; `gan_mri.inference.translate_volume` applies it to every volume it translates.
        preprocessing: how its training slices were made from volumes (slice grid, normalization,
            slice selection: `gan_mri.data.preprocessing`; None: the library's defaults). Saved with
            the model; `translate_volume` slices with it and `evaluate` checks data against it.
        intensity_remap: with ``config.remap_prior`` other than "none", the `QuantileRemap` layer the
            generators build on (its quantiles saved with the weights; `set_intensity_remap` fits
            it); None otherwise, so models without the prior keep the weights they always had.

    Args:
        config: a `config_class` instance or its dict form.
        standardization: an `IntensityStandardization`, its dict form, or None.
        preprocessing: a preprocessing record (dict) or None.
        training_remap: the unpaired brain-intensity remap of the training split (`gan_mri.baseline.IntensityRemap`
            or its dict form; `train` fits it), kept so that the model's evaluations can show what its training data
            teaches without a network (the fair reference of `gan_mri.sim_to_real`), or None.
        batch_size: the batch it will train on, for "auto" precision's decision on a CPU
            (`gan_mri.precision.ModelShape`; None: 1, as for inference). Not saved.
        **kwargs: `keras.Model` arguments (e.g. name; default: the config's name).
    """

    config_class: type = None
    """The config dataclass of the family (has `from_dict`, `to_dict`, `name`, `precision`...)."""

    METRIC_NAMES: tuple[str, ...] = ()
    """Names of the loss metrics `train_step`/`test_step` return, in order (the discriminator
    accuracies `d_acc_<domain>_s<scale>` follow them, see `metric_names`)."""

    discriminator_scales: int = 1
    """Scales per discriminator (a family may read it from its config)."""

    def __init__(self, config, standardization=None, preprocessing=None, training_remap=None, batch_size=None,
                 **kwargs):
        if isinstance(config, dict):
            config = self.config_class.from_dict(config)
        if isinstance(standardization, dict):
            standardization = IntensityStandardization.from_dict(standardization)
        if isinstance(training_remap, dict):
            training_remap = IntensityRemap.from_dict(training_remap)
        if not kwargs.get("name"):
            kwargs["name"] = config.name.replace("-", "_")
        super().__init__(**kwargs)
        self.config = config
        self.standardization = standardization
        self.preprocessing = dict(preprocessing) if preprocessing else None
        self.training_remap = training_remap
        self.image_shape = tuple(config.image_shape)
        self.channels = config.channels
        self.g_optimizer = None
        self.d_optimizer = None
        self.precision_policy = resolve_precision(config.precision, ModelShape.of(config, batch_size))
        self.intensity_remap = (QuantileRemap(name="intensity_remap")
                                if getattr(config, "remap_prior", "none") != "none" else None)
        # Families pass `dtype=self.precision_policy` to every network builder: Keras's global
        # policy is never touched.
        self._build_networks(config)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}
        self._translate_fn = None
        # Every sub-network is a built functional model, so the model's variables all exist.
        self.built = True

    # ------------------------------------------------------------------ subclass hooks
    def _build_networks(self, config) -> None:
        """Creates the sub-networks as attributes, passing `dtype=self.precision_policy` to the builders."""
        raise NotImplementedError

    @property
    def generator_variables(self) -> list:
        """Trainable variables of the generator player."""
        raise NotImplementedError

    @property
    def discriminator_variables(self) -> list:
        """Trainable variables of the discriminator player."""
        raise NotImplementedError

    def _inference(self, x, source: str, target: str):
        """The deterministic graph of `translate` (source != target) and of `reconstruct`
        (source == target: the family's reconstruction of an image of `source`)."""
        raise NotImplementedError

    def _learning_rate(self, initial: float, total_steps: int | None):
        """Learning rate of a default optimizer: constant, then linear to 0 from step
        `config.decay_start * total_steps` to `total_steps` (constant when `total_steps` is None or
        `config.decay_start` is 1.0)."""
        if total_steps is None or self.config.decay_start >= 1.0:
            return initial
        return LinearDecaySchedule.over_training(initial, total_steps, self.config.decay_start)

    # --------------------------------------------------------------------- remap prior
    @property
    def remap_prior(self) -> str:
        """The config's ``remap_prior``: "none", "residual" or "channel" (`gan_mri.remap_prior`)."""
        return getattr(self.config, "remap_prior", "none")

    def set_intensity_remap(self, remap) -> None:
        """Loads a fitted remap into the model's remap prior (before training).

        Args:
            remap: a `gan_mri.baseline.IntensityRemap` fitted on the training split, with the
                model's standardization (`IntensityRemap.from_dataset(dataset, model.standardization)`).

        Raises:
            ValueError: if the model has no remap prior (``config.remap_prior`` "none") or the remap's
                quantiles do not fit the layer.
        """
        if self.intensity_remap is None:
            raise ValueError(f"{type(self).__name__}: config.remap_prior is 'none'; the model has no intensity "
                             f"remap to set")
        self.intensity_remap.set_quantiles(remap.quantiles)

    def prior_image(self, x, source: str, target: str):
        """The prior image of translating ``x`` from domain ``source`` into ``target``: its remap, or
        ``x`` itself when ``source == target``; None for a model without a remap prior."""
        if self.intensity_remap is None:
            return None
        return self.intensity_remap.prior(x, source, target)

    def _generate(self, generator, inputs, prior, training):
        """Runs a generator with the remap prior of the config: none, its extra input ("channel") or
        the base its output corrects ("residual"); ``prior`` is `prior_image`'s."""
        if self.remap_prior == "channel":
            return generator([inputs, prior], training=training)
        output = generator(inputs, training=training)
        return with_residual(prior, output) if self.remap_prior == "residual" else output

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, refusing a model whose remap prior was never fitted.

        Raises:
            ValueError: if ``config.remap_prior`` is not "none" and `set_intensity_remap` was never
                called (nor fitted quantiles loaded from a saved model or checkpoint).
        """
        if self.intensity_remap is not None and not self.intensity_remap.fitted:
            raise ValueError(
                f"{type(self).__name__}.fit: config.remap_prior is {self.remap_prior!r} but the model's intensity "
                f"remap is not fitted; call model.set_intensity_remap(IntensityRemap.from_dataset(dataset, "
                f"model.standardization)) with the training split first (gan_mri.training.train does)")
        return super().fit(*args, **kwargs)

    # ------------------------------------------------------------------------ compile
    def compile(self, g_optimizer=None, d_optimizer=None, total_steps: int | None = None, **kwargs):
        """Sets the two players' optimizers.

        Args:
            g_optimizer: optimizer of the generator player; default
                Adam(config.g_learning_rate, config.beta_1, config.beta_2).
            d_optimizer: optimizer of the discriminators; default Adam(config.d_learning_rate, ...).
            total_steps: training steps (epochs x steps per epoch), for families that schedule
                the default optimizers' learning rates over the run (`_learning_rate`): UNIT and
                CycleGAN decay them linearly to 0 after ``config.decay_start`` of the run.
                None keeps them constant.
            **kwargs: `keras.Model.compile` arguments (e.g. `jit_compile`, `steps_per_execution`);
                `optimizer` and `loss` are not accepted (the losses come from the config).

        Raises:
            ValueError: for `optimizer`/`loss` arguments or a `total_steps` that is not a
                positive integer or None.
            RuntimeError: on a Keras backend other than TensorFlow or JAX (no train step there).

        Under the mixed_float16 policy both optimizers are wrapped in `LossScaleOptimizer`.
        Both are built at once so checkpoints can restore their state before the first step.
        """
        backend_steps.require_training_backend(f"{type(self).__name__}.compile")
        for forbidden in ("optimizer", "loss"):
            if forbidden in kwargs:
                raise ValueError(f"{type(self).__name__}.compile takes g_optimizer/d_optimizer and no {forbidden!r}")
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)
                                        or total_steps < 1):
            raise ValueError(f"total_steps must be a positive integer or None; found {total_steps!r}")
        cfg = self.config
        if g_optimizer is None:
            g_optimizer = keras.optimizers.Adam(self._learning_rate(cfg.g_learning_rate, total_steps),
                                                cfg.beta_1, cfg.beta_2, name="g_adam")
        if d_optimizer is None:
            d_optimizer = keras.optimizers.Adam(self._learning_rate(cfg.d_learning_rate, total_steps),
                                                cfg.beta_1, cfg.beta_2, name="d_adam")
        if self.precision_policy in LOSS_SCALED:
            g_optimizer, d_optimizer = (
                opt if isinstance(opt, keras.optimizers.LossScaleOptimizer)
                else keras.optimizers.LossScaleOptimizer(opt, name=f"{opt.name}_loss_scale")
                for opt in (g_optimizer, d_optimizer)
            )
        super().compile(optimizer=None, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.g_optimizer.build(self.generator_variables)
        self.d_optimizer.build(self.discriminator_variables)
        if keras.config.backend() == "jax":
            # The JAX trainer threads `self.optimizer.variables` through the step: both players'.
            self.optimizer = backend_steps.PlayerOptimizers(self.g_optimizer, self.d_optimizer)

    def get_compile_config(self):
        if self.g_optimizer is None:
            return {}
        return {
            "g_optimizer": keras.optimizers.serialize(self.g_optimizer),
            "d_optimizer": keras.optimizers.serialize(self.d_optimizer),
        }

    def compile_from_config(self, config):
        if not config:
            return
        self.compile(
            g_optimizer=keras.optimizers.deserialize(config["g_optimizer"]),
            d_optimizer=keras.optimizers.deserialize(config["d_optimizer"]),
        )

    # ----------------------------------------------------------------------- training
    def _require_compiled(self) -> None:
        if self.g_optimizer is None:
            raise ValueError(f"{type(self).__name__} must be compiled (model.compile()) before fit/train_step")

    @staticmethod
    def _unpack(data) -> dict:
        """{"A": x_a, "B": x_b} (float32) from a batch (x_a, x_b), {"a": x_a, "b": x_b} or one
        tensor (batch, 2, H, W, C) holding x_a and x_b on axis 1 (how multi-worker training feeds
        batches, see `gan_mri.distribute`)."""
        if isinstance(data, dict):
            x_a, x_b = data["a"], data["b"]
        elif isinstance(data, (tuple, list)):
            x_a, x_b = data[0], data[1]
        else:
            x_a, x_b = data[:, 0], data[:, 1]
        return {"A": ops.cast(x_a, "float32"), "B": ops.cast(x_b, "float32")}

    def _player(self, player: str):
        """(optimizer, trainable variables) of player "g" or "d"."""
        if player == "g":
            return self.g_optimizer, self.generator_variables
        return self.d_optimizer, self.discriminator_variables

    def _updates(self):
        """The train step as an ordered list of player updates (subclass hook).

        Returns:
            [(player, objective), ...]: player "g" or "d"; `objective(images, record)` returns
            (loss, record), `images` being {"A": x_a, "B": x_b} and `record` the `StepRecord` the
            previous objective returned (an empty one for the first), with the fields it computed
            filled in (`record._replace(...)`); after the last, the record holds the step's metrics.
            Objectives may change non-trainable state (spectral-norm vectors, seeds, pools) but no
            trainable variable.
        """
        raise NotImplementedError

    def train_step(self, *args):
        """One step of every player in `_updates` order, on the active backend.

        Keras calls it as `train_step(data)` on TensorFlow and `train_step(state, data)` on JAX
        (see `gan_mri.models.backend_steps`).

        Returns:
            Running means of `metric_names` (on JAX: and the new state).

        Raises:
            ValueError: if the model is not compiled.
        """
        self._require_compiled()
        if keras.config.backend() == "jax":
            return backend_steps.jax_train_step(self, *args)
        return backend_steps.tensorflow_train_step(self, *args)

    def test_step(self, *args):
        """The train step's metrics without updates (noise, dropout and pools off), on the active backend.

        Keras calls it as `test_step(data)` on TensorFlow and `test_step(state, data)` on JAX;
        the family computes the metrics in `_test_metrics`.

        Returns:
            Running means of `metric_names` (on JAX: and the new state).
        """
        if keras.config.backend() == "jax":
            return backend_steps.jax_test_step(self, *args)
        return self._test_metrics(self._unpack(args[0]))

    def _test_metrics(self, images: dict) -> dict:
        """`_record`'s running means of one evaluation batch {"A": x_a, "B": x_b} (subclass hook)."""
        raise NotImplementedError

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Every metric of `train_step`/`test_step`: the losses of `METRIC_NAMES`, then the
        discriminators' accuracy per domain and scale, `d_acc_a_s0`, ..., `d_acc_b_s<n-1>`
        (0.5 = chance, see `gan_mri.losses.discriminator_accuracy`)."""
        return self.METRIC_NAMES + tuple(
            f"d_acc_{domain.lower()}_s{scale}" for domain in DOMAINS for scale in range(self.discriminator_scales))

    def _record(self, g_loss, terms: dict, d_losses: dict, d_accuracy: dict) -> dict:
        """Updates the metric trackers and returns their running means.

        Args:
            g_loss: the weighted generator loss.
            terms: loss term name -> value; each is recorded as metric "<name>_loss".
            d_losses: domain -> weighted discriminator loss of that domain.
            d_accuracy: domain -> the discriminator's accuracy per scale on real images and
                translations into the domain.
        """
        values = {
            "g_loss": g_loss,
            "d_loss": d_losses["A"] + d_losses["B"],
            **{f"{name}_loss": value for name, value in terms.items()},
            "d_loss_a": d_losses["A"],
            "d_loss_b": d_losses["B"],
            **{f"d_acc_{domain.lower()}_s{scale}": value
               for domain, per_scale in d_accuracy.items() for scale, value in enumerate(per_scale)},
        }
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    @property
    def metrics(self):
        return list(self._trackers.values())

    # ---------------------------------------------------------------------- inference
    def _check_input(self, x, method: str, argument: str, value: str, allowed: tuple):
        """Checks the direction/domain `value` and the images of a `translate`/`reconstruct` call."""
        if value not in allowed:
            raise ValueError(f"{argument} must be one of {list(allowed)}; found {value!r}")
        return self._check_images(x, f"{method}({value})")

    def _check_images(self, x, what: str):
        shape = tuple(x.shape)
        expected = (*self.image_shape, self.channels)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise ValueError(
                f"{what}: images must have shape (batch, {expected[0]}, {expected[1]}, {expected[2]}) "
                f"for this model (image_shape={self.image_shape}, channels={self.channels}); found {shape}"
            )
        return ops.convert_to_tensor(x, dtype="float32")

    def _run(self, x, source: str, target: str):
        # One compiled graph per (source, target) pair with a free batch size, so evaluation
        # batches of any size (the last one is usually smaller) never retrace.
        if self._translate_fn is None:
            self._translate_fn = {}
        key = f"{source}2{target}"  # string keys: Keras/TF track this dict
        if key not in self._translate_fn:
            self._translate_fn[key] = backend_steps.compile_inference(self, source, target)
        return self._translate_fn[key](x)

    def translate(self, x, direction: str):
        """Translates a batch of images, deterministically (no noise, no dropout).

        Args:
            x: numpy array or tensor (batch, H, W, C) in [-1, 1].
            direction: "A2B" (T1w -> T2w) or "B2A" (T2w -> T1w).

        Returns:
            Float32 tensor of the same shape, in [-1, 1].

        Raises:
            ValueError: for an unknown direction or images of the wrong shape/channels.
        """
        x = self._check_input(x, "translate", "direction", direction, DIRECTIONS)
        direction = Direction(direction)
        return self._run(x, direction.source, direction.target)

    def reconstruct(self, x, domain: str):
        """Reconstructs a batch of images of `domain` ("A" or "B"), deterministically.

        What "reconstruction" means is the family's (see the subclass's docstring).

        Returns:
            Float32 tensor of the same shape, in [-1, 1].

        Raises:
            ValueError: for an unknown domain or images of the wrong shape/channels.
        """
        x = self._check_input(x, "reconstruct", "domain", domain, DOMAINS)
        return self._run(x, domain, domain)

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        standardization = self.standardization.to_dict() if self.standardization is not None else None
        remap = self.training_remap.to_dict() if self.training_remap is not None else None
        return {"config": self.config.to_dict(), "name": self.name, "standardization": standardization,
                "preprocessing": self.preprocessing, "training_remap": remap}

    @classmethod
    def from_config(cls, config):
        return cls(cls.config_class.from_saved_dict(config["config"]), name=config.get("name"),
                   standardization=config.get("standardization"), preprocessing=config.get("preprocessing"),
                   training_remap=config.get("training_remap"))
