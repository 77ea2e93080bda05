"""CycleGAN (Zhu et al. 2017) as a `keras.Model`, as in the GAN-MRI lineage, with UNIT's contract.

Domain A is T1-weighted, domain B T2-weighted. Two ResNet generators translate between the
domains (G_AB: A -> B, G_BA: B -> A) and one PatchGAN discriminator per domain scores images of
that domain with least-squares targets. For images x_d of domain d and o the other domain:

    x_do  = G_do(x_d)            translation
    x_dod = G_od(G_do(x_d))      cycle reconstruction (CycleGAN has no shared latent space, so
                                 `reconstruct` returns this)
    L_G = gan_weight * sum_d (D_o(x_do) - 1)^2 + cycle_weight * sum_d |x_dod - x_d|
          + identity_weight * sum_d |G_od(x_d) - x_d|
    L_D = sum_d 0.5 * [(D_d(x_d) - 1)^2 + D_d(pool_d(x_od))^2]

With a remap prior (`CycleGANConfig.remap_prior`, `gan_mri.remap_prior`), G_do builds on
remap_{d->o}(x_d): it corrects it ("residual") or takes it as an extra input channel ("channel");
`translate_with` applies a generator with its prior.

`fit` runs, per batch, one generator update, then one discriminator update on real images and
on translations from the same forward pass drawn through a pool of past translations (the order
of Zhu et al.'s implementation; one generator forward pass serves both updates). Both learning
rates decay linearly to 0 over the last `1 - config.decay_start` of the steps given to `compile`.

Example:
    >>> from gan_mri.config import get_preset
    >>> from gan_mri.models import build_model
    >>> model = build_model(get_preset("cyclegan", image_shape=(32, 32), base_width=8, res_blocks=1))
    >>> model.compile(total_steps=1000)
    >>> history = model.fit(dataset_of_xa_xb_tuples, epochs=1)   # doctest: +SKIP
    >>> t2w = model.translate(t1w_batch, "A2B")                  # doctest: +SKIP
"""

from __future__ import annotations

import logging

import keras
from keras import ops

from gan_mri import DIRECTIONS, DOMAINS
from gan_mri import losses as L
from gan_mri import networks
from gan_mri.config import CycleGANConfig
from gan_mri.models.base import OTHER_DOMAIN, LinearDecaySchedule, TranslationGAN  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

METRIC_NAMES = ("g_loss", "d_loss", "gan_loss", "cycle_loss", "identity_loss", "d_loss_a", "d_loss_b")


@keras.saving.register_keras_serializable(package="gan_mri")
class ImagePool(keras.layers.Layer):
    """Pool of past translations for the discriminator (Shrivastava et al. 2017).

    Each image of a batch, in order: while the pool holds fewer than `pool_size` images it is
    stored and returned; once the pool is full, with probability 0.5 a random stored image is
    returned and the new one takes its place, otherwise the new image is returned and the pool
    is unchanged. The pool lives in non-trainable variables (`images`, `count`), so it works
    inside a compiled train step and travels with checkpoints; the random draws come from a
    seed generator whose state the training checkpoints save.

    Args:
        pool_size: images kept (0: the layer returns its input).
        **kwargs: base `Layer` arguments.

    Input and output shape: (batch, H, W, C), float32.
    """

    def __init__(self, pool_size: int = 50, **kwargs):
        kwargs.setdefault("dtype", "float32")  # never autocast the images to float16
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)
        self.seed_generator = keras.random.SeedGenerator(name=f"{self.name}_seed")

    def build(self, input_shape):
        if self.pool_size > 0:
            # "only_first_replica": under a distribution strategy one replica's pool is kept.
            self.images = self.add_weight(
                name="images", shape=(self.pool_size, *input_shape[1:]), initializer="zeros",
                trainable=False, dtype="float32", aggregation="only_first_replica")
            self.count = self.add_weight(name="count", shape=(), initializer="zeros", trainable=False,
                                         dtype="int32", aggregation="only_first_replica")

    def call(self, new_images):
        if self.pool_size == 0:
            return new_images
        batch = ops.shape(new_images)[0]
        draws = keras.random.uniform((batch,), seed=self.seed_generator)
        slots = keras.random.randint((batch,), 0, self.pool_size, seed=self.seed_generator)

        # A loop over tensors (not variables) keeps the per-image order without stateful ops.
        def push(i, state):
            pool, count, returned = state
            image = ops.take(new_images, i, axis=0)
            full = count >= self.pool_size
            swap = ops.logical_and(full, ops.take(draws, i) < 0.5)
            slot = ops.where(full, ops.take(slots, i), count)
            stored = ops.take(pool, slot, axis=0)
            kept = ops.where(ops.logical_and(full, ops.logical_not(swap)), stored, image)
            pool = ops.scatter_update(pool, ops.reshape(slot, (1, 1)), ops.expand_dims(kept, 0))
            returned = ops.scatter_update(returned, ops.reshape(i, (1, 1)),
                                          ops.expand_dims(ops.where(swap, stored, image), 0))
            return pool, ops.minimum(count + 1, self.pool_size), returned

        pool, count, returned = ops.fori_loop(
            0, batch, push,
            (ops.convert_to_tensor(self.images), ops.convert_to_tensor(self.count), ops.zeros_like(new_images)))
        self.images.assign(pool)
        self.count.assign(count)
        return returned

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size)
        return config


@keras.saving.register_keras_serializable(package="gan_mri")
class CycleGAN(TranslationGAN):
    """CycleGAN image-to-image translation model, configured by a `CycleGANConfig`.

    Construction, `compile`, `translate`, metrics and serialization come from `TranslationGAN`;
    `compile(..., total_steps=n)` gives the default optimizers `LinearDecaySchedule`s over n steps.

    Attributes:
        config: the `CycleGANConfig`.
        image_shape: (H, W) of the images.
        channels: image channels.
        precision_policy: the concrete Keras dtype policy of the networks.
        generator_a2b, generator_b2a: the ResNet generators (A -> B and B -> A).
        discriminator_a, discriminator_b: the PatchGAN discriminators of each domain.
        pool_a, pool_b: `ImagePool`s of translations into A and into B.
        g_optimizer, d_optimizer: the two players' optimizers (after `compile`).

    Args:
        config: a `CycleGANConfig` or its dict form.
        **kwargs: `keras.Model` arguments (e.g. name).
    """

    config_class = CycleGANConfig
    METRIC_NAMES = METRIC_NAMES

    @property
    def discriminator_scales(self) -> int:
        return self.config.discriminator_scales

    def _build_networks(self, config: CycleGANConfig) -> None:
        dtype = self.precision_policy  # per layer, as keras-hub does: no global policy is read
        for direction in DIRECTIONS:
            setattr(self, f"generator_{direction.lower()}", networks.build_resnet_generator(
                self.image_shape, config.channels, config.base_width, config.res_blocks, norm=config.norm,
                prior_channels=config.channels if config.remap_prior == "channel" else 0,
                name=f"generator_{direction.lower()}", dtype=dtype))
        for domain in DOMAINS:
            d = domain.lower()
            setattr(self, f"discriminator_{d}", networks.build_patch_discriminator(
                self.image_shape, config.channels, config.discriminator_width,
                scales=config.discriminator_scales, norm=config.norm, name=f"discriminator_{d}", dtype=dtype))
            pool = ImagePool(config.pool_size, name=f"pool_{d}")
            pool.build((None, *self.image_shape, config.channels))
            setattr(self, f"pool_{d}", pool)

    def generator(self, source: str, target: str) -> keras.Model:
        """Returns the generator translating domain `source` into domain `target`."""
        return getattr(self, f"generator_{source.lower()}2{target.lower()}")

    def translate_with(self, x, source: str, target: str, training=False):
        """G_{source,target}(x) with the config's remap prior (`gan_mri.remap_prior`): the generator's
        output itself, its correction of remap(x) ("residual") or its output with remap(x) as an
        extra input channel ("channel"); differentiable in ``x`` (the cycle's second half)."""
        return self._generate(self.generator(source, target), x, self.prior_image(x, source, target), training)

    def discriminator(self, domain: str) -> keras.Model:
        """Returns the discriminator of domain "A" or "B"."""
        return getattr(self, f"discriminator_{domain.lower()}")

    @property
    def generator_variables(self) -> list:
        """Trainable variables of the generator player (both generators)."""
        return self.generator_a2b.trainable_variables + self.generator_b2a.trainable_variables

    @property
    def discriminator_variables(self) -> list:
        """Trainable variables of the discriminator player (both discriminators)."""
        return self.discriminator_a.trainable_variables + self.discriminator_b.trainable_variables

    def call(self, inputs, training=False):
        """Translates a pair of batches: (x_a, x_b) -> (x_ab, x_ba)."""
        x_a, x_b = inputs
        return self.translate_with(x_a, "A", "B", training), self.translate_with(x_b, "B", "A", training)

    # ------------------------------------------------------------------------------- losses
    def _generator_loss(self, images: dict, training):
        """Weighted generator loss, its unweighted terms and the translations into each domain."""
        cfg = self.config
        terms = {"gan": 0.0, "cycle": 0.0, "identity": 0.0}
        translations = {}
        for domain in DOMAINS:
            other = OTHER_DOMAIN[domain]
            x = images[domain]
            translated = self.translate_with(x, domain, other, training)
            cycled = self.translate_with(translated, other, domain, training)
            translations[other] = translated
            terms["gan"] += L.adversarial_loss(self.discriminator(other)(translated, training=training), 1.0, "lsgan")
            terms["cycle"] += L.mae(x, cycled)
            if cfg.identity_weight > 0:
                # G_od applied to an image already of domain d should leave it unchanged.
                terms["identity"] += L.mae(x, self.translate_with(x, other, domain, training))
        terms = {key: ops.cast(value, "float32") for key, value in terms.items()}
        g_loss = (cfg.gan_weight * terms["gan"] + cfg.cycle_weight * terms["cycle"]
                  + cfg.identity_weight * terms["identity"])
        return g_loss, terms, translations

    def _discriminator_loss(self, images: dict, fakes: dict, training):
        """Discriminator loss per domain on real images and (pooled) translations into it, and the
        discriminator's accuracy per domain and scale.

        The least-squares loss is halved, as in CycleGAN (the lineage's discriminator loss weight
        0.5): it slows the discriminator relative to the generator."""
        losses, accuracy = {}, {}
        for domain in DOMAINS:
            disc = self.discriminator(domain)
            real_out, fake_out = disc(images[domain], training=training), disc(fakes[domain], training=training)
            losses[domain] = 0.5 * L.discriminator_loss(real_out, fake_out, "lsgan")
            accuracy[domain] = L.discriminator_accuracy(real_out, fake_out, "lsgan")
        return losses, accuracy

    # ---------------------------------------------------------------------------- training
    def _updates(self):
        """One generator update, then one discriminator update on pooled translations.

        The step's metrics: running means of g_loss, d_loss (weighted totals), gan_loss,
        cycle_loss, identity_loss (unweighted, summed over both domains; identity 0 when its
        weight is 0), d_loss_a, d_loss_b and the discriminator accuracies.
        """

        def generator(images, record):
            g_loss, terms, translations = self._generator_loss(images, training=True)
            return g_loss, record._replace(g_loss=g_loss, terms=terms, translations=translations)

        def discriminator(images, record):
            # The pools draw from the generator's translations (no gradient reaches G).
            fakes = {domain: getattr(self, f"pool_{domain.lower()}")(ops.stop_gradient(record.translations[domain]))
                     for domain in DOMAINS}
            d_losses, d_accuracy = self._discriminator_loss(images, fakes, training=True)
            return d_losses["A"] + d_losses["B"], record._replace(d_losses=d_losses, d_accuracy=d_accuracy)

        return [("g", generator), ("d", discriminator)]

    def _test_metrics(self, images):
        """The train step's metrics without updates and without the pools."""
        g_loss, terms, translations = self._generator_loss(images, training=False)
        d_losses, d_accuracy = self._discriminator_loss(images, translations, training=False)
        return self._record(g_loss, terms, d_losses, d_accuracy)

    # --------------------------------------------------------------------------- inference
    def _inference(self, x, source, target):
        if source == target:
            # No shared latent space: an image's reconstruction is its round trip through the other domain.
            back_from = OTHER_DOMAIN[source]
            return self.translate_with(self.translate_with(x, source, back_from), back_from, target)
        return self.translate_with(x, source, target)

    def reconstruct(self, x, domain: str):
        """Cycle reconstruction G_od(G_do(x)) of images of `domain` (o the other domain).

        CycleGAN has no shared latent space, so its only reconstruction of an image is the round
        trip through the other domain; evaluation's `recon_*` metrics score this cycle.

        Raises:
            ValueError: for an unknown domain or images of the wrong shape/channels.
        """
        return super().reconstruct(x, domain)
