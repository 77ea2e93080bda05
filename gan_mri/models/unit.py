"""UNIT (Liu et al. 2017) as a `keras.Model`: shared latent space, two domains, one train step.

Domain A is T1-weighted, domain B T2-weighted. Each domain d has an encoder E_d, a generator G_d
and a multi-scale discriminator D_d; the shared encoder and shared decoder hold one set of weights
used by both domains. With z_d the shared latent code of x_d:

    x_dd  = G_d(dec(z_d))                    image reconstruction
    x_do  = G_o(dec(z_d))                    translation into the other domain o
    x_dod = G_d(dec(shared(E_o(x_do))))      cycle reconstruction

`fit` runs one discriminator update, then one generator update, per batch.

Example:
    >>> from gan_mri.config import get_preset
    >>> from gan_mri.models import build_model
    >>> model = build_model(get_preset("unit", image_shape=(32, 32), base_width=8))
    >>> model.compile()
    >>> history = model.fit(dataset_of_xa_xb_tuples, epochs=1)   # doctest: +SKIP
    >>> t2w = model.translate(t1w_batch, "A2B")                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import keras
import tensorflow as tf
from keras import ops

from gan_mri import DIRECTIONS, DOMAINS
from gan_mri import losses as L
from gan_mri import networks
from gan_mri.config import UNITConfig
from gan_mri.precision import precision_scope

logger = logging.getLogger(__name__)

METRIC_NAMES = ("g_loss", "d_loss", "gan_loss", "recon_loss", "cycle_loss", "kl_loss", "d_loss_a", "d_loss_b")
_OTHER = {"A": "B", "B": "A"}


class _DomainNetworks(NamedTuple):
    encoder: keras.Model
    generator: keras.Model
    discriminator: keras.Model


@keras.saving.register_keras_serializable(package="gan_mri")
class UNIT(keras.Model):
    """UNIT image-to-image translation model, configured by a `UNITConfig`.

    Attributes:
        config: the `UNITConfig`.
        image_shape: (H, W) of the images.
        channels: image channels.
        precision_policy: the concrete Keras dtype policy of the networks.
        encoder_a, encoder_b, shared_encoder, shared_decoder, generator_a, generator_b,
        discriminator_a, discriminator_b: the functional sub-networks.
        g_optimizer, d_optimizer: the two players' optimizers (after `compile`).

    Args:
        config: a `UNITConfig` or its dict form.
        **kwargs: `keras.Model` arguments (e.g. name).
    """

    def __init__(self, config: UNITConfig | dict, **kwargs):
        if isinstance(config, dict):
            config = UNITConfig.from_dict(config)
        if not kwargs.get("name"):
            kwargs["name"] = config.name.replace("-", "_")
        super().__init__(**kwargs)
        self.config = config
        self.image_shape = tuple(config.image_shape)
        self.channels = config.channels
        self.g_optimizer = None
        self.d_optimizer = None
        with precision_scope(config.precision) as policy:
            self.precision_policy = policy
            self._build_networks(config)
        self._recon = L.reconstruction_loss(config.recon_loss, config.charbonnier_epsilon)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in METRIC_NAMES}
        self._translate_fn = None
        # Every sub-network is a built functional model, so the model's variables all exist.
        self.built = True

    # ----------------------------------------------------------------------------- networks
    def _build_networks(self, config: UNITConfig) -> None:
        sn = set(config.spectral_norm)
        latent = config.latent_shape
        block = dict(norm=config.norm, dropout=config.dropout)
        for domain in DOMAINS:
            d = domain.lower()
            setattr(self, f"encoder_{d}", networks.build_encoder(
                self.image_shape, config.channels, config.base_width, config.encoder_res_blocks,
                attention=config.attention == "encoder", use_spectral_norm="encoder" in sn,
                name=f"encoder_{d}", **block))
            setattr(self, f"generator_{d}", networks.build_generator(
                latent, config.channels, config.base_width, config.generator_res_blocks,
                attention=config.attention == "generator", use_spectral_norm="generator" in sn,
                name=f"generator_{d}", **block))
            setattr(self, f"discriminator_{d}", networks.build_discriminator(
                self.image_shape, config.channels, config.base_width,
                use_spectral_norm="discriminator" in sn, name=f"discriminator_{d}"))
        # One set of weights for both domains: the shared latent space.
        self.shared_encoder = networks.build_shared_encoder(
            latent, config.shared_res_blocks, noise_std=config.latent_noise_std,
            use_spectral_norm="encoder" in sn, **block)
        self.shared_decoder = networks.build_shared_decoder(
            latent, config.shared_res_blocks, use_spectral_norm="generator" in sn, **block)

    def domain_networks(self, domain: str) -> _DomainNetworks:
        """Returns (encoder, generator, discriminator) of domain "A" or "B"."""
        d = domain.lower()
        return _DomainNetworks(
            getattr(self, f"encoder_{d}"), getattr(self, f"generator_{d}"), getattr(self, f"discriminator_{d}")
        )

    @property
    def generator_variables(self) -> list:
        """Trainable variables of the generator player: encoders, shared parts, generators."""
        nets = [self.encoder_a, self.encoder_b, self.shared_encoder, self.shared_decoder,
                self.generator_a, self.generator_b]
        return [v for net in nets for v in net.trainable_variables]

    @property
    def discriminator_variables(self) -> list:
        """Trainable variables of the discriminator player."""
        return self.discriminator_a.trainable_variables + self.discriminator_b.trainable_variables

    def encode(self, x, domain: str, training=False):
        """Encodes images of a domain into the shared latent space.

        Returns:
            (mu, z): the latent mean and the latent code (mu plus noise while training).
        """
        mu, z = self.shared_encoder(self.domain_networks(domain).encoder(x, training=training), training=training)
        return mu, z

    def decode(self, z, domain: str, training=False):
        """Decodes a shared latent code into an image of `domain` (float32, in [-1, 1])."""
        return self.domain_networks(domain).generator(self.shared_decoder(z, training=training), training=training)

    def call(self, inputs, training=False):
        """Translates a pair of batches: (x_a, x_b) -> (x_ab, x_ba)."""
        x_a, x_b = inputs
        return (self.decode(self.encode(x_a, "A", training)[1], "B", training),
                self.decode(self.encode(x_b, "B", training)[1], "A", training))

    # ------------------------------------------------------------------------------ compile
    def compile(self, g_optimizer=None, d_optimizer=None, **kwargs):
        """Sets the two players' optimizers.

        Args:
            g_optimizer: optimizer of encoders, shared parts and generators; default
                Adam(config.g_learning_rate, config.beta_1, config.beta_2).
            d_optimizer: optimizer of the discriminators; default Adam(config.d_learning_rate, ...).
            **kwargs: `keras.Model.compile` arguments (e.g. `jit_compile`, `steps_per_execution`);
                `optimizer` and `loss` are not accepted (the losses come from the config).

        Under the mixed_float16 policy both optimizers are wrapped in `LossScaleOptimizer`.
        Both are built at once so checkpoints can restore their state before the first step.
        """
        for forbidden in ("optimizer", "loss"):
            if forbidden in kwargs:
                raise ValueError(f"UNIT.compile takes g_optimizer/d_optimizer and no {forbidden!r}")
        cfg = self.config
        if g_optimizer is None:
            g_optimizer = keras.optimizers.Adam(cfg.g_learning_rate, cfg.beta_1, cfg.beta_2, name="g_adam")
        if d_optimizer is None:
            d_optimizer = keras.optimizers.Adam(cfg.d_learning_rate, cfg.beta_1, cfg.beta_2, name="d_adam")
        if self.precision_policy == "mixed_float16":
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

    # ------------------------------------------------------------------------------- losses
    def _generator_terms(self, x, domain, training):
        """Loss terms (unweighted) of the generator player for images `x` of `domain`."""
        other = _OTHER[domain]
        mu, z = self.encode(x, domain, training)
        x_rec = self.decode(z, domain, training)
        x_trans = self.decode(z, other, training)
        mu_cycle, z_cycle = self.encode(x_trans, other, training)
        x_cycle = self.decode(z_cycle, domain, training)
        fake_logits = self.domain_networks(other).discriminator(x_trans, training=training)
        return {
            "gan": L.generator_gan_loss(fake_logits),
            "recon": self._recon(x, x_rec),
            "cycle": self._recon(x, x_cycle),
            "kl": L.kl_loss(mu),
            "cycle_kl": L.kl_loss(mu_cycle),
        }

    def _generator_loss(self, x_a, x_b, training):
        cfg = self.config
        terms = [self._generator_terms(x, d, training) for x, d in ((x_a, "A"), (x_b, "B"))]
        total = {key: terms[0][key] + terms[1][key] for key in terms[0]}
        g_loss = (cfg.gan_weight * total["gan"] + cfg.recon_weight * total["recon"]
                  + cfg.cycle_weight * total["cycle"] + cfg.kl_weight * total["kl"]
                  + cfg.cycle_kl_weight * total["cycle_kl"])
        return g_loss, total

    def _discriminator_loss(self, x_a, x_b, training):
        """Weighted discriminator loss per domain, on real images and on translations into it."""
        images = {"A": x_a, "B": x_b}
        per_domain = {}
        for domain in DOMAINS:
            other = _OTHER[domain]
            fake = self.decode(self.encode(images[other], other, training)[1], domain, training)
            fake = ops.stop_gradient(fake)
            disc = self.domain_networks(domain).discriminator
            per_domain[domain] = self.config.gan_weight * L.discriminator_gan_loss(
                disc(images[domain], training=training), disc(fake, training=training))
        return per_domain

    def _record(self, g_loss, terms, d_losses):
        values = {
            "g_loss": g_loss,
            "d_loss": d_losses["A"] + d_losses["B"],
            "gan_loss": terms["gan"],
            "recon_loss": terms["recon"],
            "cycle_loss": terms["cycle"],
            "kl_loss": terms["kl"] + terms["cycle_kl"],
            "d_loss_a": d_losses["A"],
            "d_loss_b": d_losses["B"],
        }
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    @property
    def metrics(self):
        return list(self._trackers.values())

    # ---------------------------------------------------------------------------- training
    @staticmethod
    def _unpack(data):
        x_a, x_b = (data["a"], data["b"]) if isinstance(data, dict) else (data[0], data[1])
        return ops.cast(x_a, "float32"), ops.cast(x_b, "float32")

    @staticmethod
    def _scaled(optimizer, loss):
        """The loss to differentiate: per replica over the global batch (gradients are summed
        across replicas), times the loss scale under mixed precision. Must run inside the tape."""
        return optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)

    @staticmethod
    def _apply(optimizer, tape, scaled_loss, variables):
        # LossScaleOptimizer unscales the gradients and skips steps with non-finite ones.
        grads = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(zip(grads, variables))

    def train_step(self, data):
        """One discriminator update, then one generator update (with the updated D).

        Args:
            data: a tuple (x_a, x_b) of unpaired batches (B, H, W, C) in [-1, 1].

        Returns:
            Running means of g_loss, d_loss (weighted totals), gan_loss, recon_loss,
            cycle_loss, kl_loss (unweighted, summed over both domains; kl includes the cycle
            codes), d_loss_a, d_loss_b.
        """
        if self.g_optimizer is None:
            raise ValueError("UNIT must be compiled (model.compile()) before fit/train_step")
        x_a, x_b = self._unpack(data)
        with tf.GradientTape() as tape:
            d_losses = self._discriminator_loss(x_a, x_b, training=True)
            d_scaled = self._scaled(self.d_optimizer, d_losses["A"] + d_losses["B"])
        self._apply(self.d_optimizer, tape, d_scaled, self.discriminator_variables)
        with tf.GradientTape() as tape:
            g_loss, terms = self._generator_loss(x_a, x_b, training=True)
            g_scaled = self._scaled(self.g_optimizer, g_loss)
        self._apply(self.g_optimizer, tape, g_scaled, self.generator_variables)
        return self._record(g_loss, terms, d_losses)

    def test_step(self, data):
        """The train step's metrics without updates, noise or dropout."""
        x_a, x_b = self._unpack(data)
        d_losses = self._discriminator_loss(x_a, x_b, training=False)
        g_loss, terms = self._generator_loss(x_a, x_b, training=False)
        return self._record(g_loss, terms, d_losses)

    # --------------------------------------------------------------------------- inference
    def _check_images(self, x, what: str):
        shape = tuple(x.shape)
        expected = (*self.image_shape, self.channels)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise ValueError(
                f"{what}: images must have shape (batch, {expected[0]}, {expected[1]}, {expected[2]}) "
                f"for this model (image_shape={self.image_shape}, channels={self.channels}); found {shape}"
            )
        return tf.convert_to_tensor(x, dtype=tf.float32)

    def _inference(self, x, source, target):
        return self.decode(self.encode(x, source, training=False)[1], target, training=False)

    def _run(self, x, source, target):
        if self._translate_fn is None:
            self._translate_fn = tf.function(self._inference, reduce_retracing=True)
        return self._translate_fn(x, source, target)

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
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {list(DIRECTIONS)}; found {direction!r}")
        x = self._check_images(x, f"translate({direction})")
        return self._run(x, direction[0], direction[2])

    def reconstruct(self, x, domain: str):
        """Self-reconstruction through the shared latent space: G_d(dec(shared(E_d(x)))).

        Raises:
            ValueError: for an unknown domain or images of the wrong shape/channels.
        """
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {list(DOMAINS)}; found {domain!r}")
        x = self._check_images(x, f"reconstruct({domain})")
        return self._run(x, domain, domain)

    # ----------------------------------------------------------------------- serialization
    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(UNITConfig.from_dict(config["config"]), name=config.get("name"))
