"""UNIT (Liu et al. 2017) as a `keras.Model`: shared latent space, two domains, one train step.

Domain A is T1-weighted, domain B T2-weighted. Each domain d has an encoder E_d, a generator G_d
and a multi-scale discriminator D_d; the shared encoder and shared decoder hold one set of weights
used by both domains. With z_d the shared latent code of x_d:

    x_dd  = G_d(dec(z_d))                    image reconstruction
    x_do  = G_o(dec(z_d))                    translation into the other domain o
    x_dod = G_d(dec(shared(E_o(x_do))))      cycle reconstruction

With a remap prior (`UNITConfig.remap_prior`, `gan_mri.remap_prior`), G_o also gets the prior image
of each decoding: remap_{d->o}(x_d) for a translation, remap_{o->d}(x_do) for the cycle, x_d itself
for the reconstruction; it corrects it ("residual") or takes it as an extra channel ("channel").

The generator's loss weighs the adversarial, reconstruction, cycle and KL terms, the structure term
(local correlation of x_do with x_d) and, when `contrast_weight` > 0, the lesion-aware term (the
local contrast of x_d that x_do loses; `gan_mri.losses.local_contrast_loss`).

`fit` runs one generator update, then one discriminator update on the generator's own
translations, per batch (`update_order="g_then_d"`, the default recipe's), or the lineage's order,
a discriminator update on fresh translations first (`update_order="d_then_g"`).

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
from keras import ops

from gan_mri import DOMAINS
from gan_mri import losses as L
from gan_mri import networks
from gan_mri.config import UNITConfig
from gan_mri.models.base import OTHER_DOMAIN, TranslationGAN

logger = logging.getLogger(__name__)

METRIC_NAMES = ("g_loss", "d_loss", "gan_loss", "recon_loss", "cycle_loss", "kl_loss", "structure_loss", "d_loss_a",
                "d_loss_b")


class _DomainNetworks(NamedTuple):
    encoder: keras.Model
    generator: keras.Model
    discriminator: keras.Model


@keras.saving.register_keras_serializable(package="gan_mri")
class UNIT(TranslationGAN):
    """UNIT image-to-image translation model, configured by a `UNITConfig`.

    Construction, `compile`, `translate`, metrics and serialization come from `TranslationGAN`.
    `compile(g_optimizer=None, d_optimizer=None, total_steps=None, **kwargs)`: with `total_steps`
    (the planned run's length, as `gan_mri.training.train` passes it) both default Adam learning
    rates decay linearly to 0 after `config.decay_start` of the run; without it they stay constant.

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

    config_class = UNITConfig
    METRIC_NAMES = METRIC_NAMES
    discriminator_scales = networks.DISCRIMINATOR_SCALES

    def __init__(self, config: UNITConfig | dict, **kwargs):
        super().__init__(config, **kwargs)
        self._recon = L.reconstruction_loss(self.config.recon_loss, self.config.charbonnier_epsilon)

    # ----------------------------------------------------------------------------- networks
    def _build_networks(self, config: UNITConfig) -> None:
        sn = set(config.spectral_norm)
        latent = config.latent_shape
        block = dict(norm=config.norm, dropout=config.dropout, dtype=self.precision_policy)
        for domain in DOMAINS:
            d = domain.lower()
            setattr(self, f"encoder_{d}", networks.build_encoder(
                self.image_shape, config.channels, config.base_width, config.encoder_res_blocks,
                attention=config.attention == "encoder", use_spectral_norm="encoder" in sn,
                conv_norm=config.conv_norm, downsampling=config.downsampling_steps,
                attention_pool=config.attention_pool_size, name=f"encoder_{d}", **block))
            setattr(self, f"generator_{d}", networks.build_generator(
                latent, config.channels, config.base_width, config.generator_res_blocks,
                attention=config.attention == "generator", use_spectral_norm="generator" in sn,
                conv_norm=config.conv_norm, upsample=config.upsample, downsampling=config.downsampling_steps,
                attention_pool=config.attention_pool_size,
                prior_channels=config.channels if config.remap_prior == "channel" else 0,
                name=f"generator_{d}", **block))
            setattr(self, f"discriminator_{d}", networks.build_discriminator(
                self.image_shape, config.channels, config.base_width,
                use_spectral_norm="discriminator" in sn, name=f"discriminator_{d}", dtype=self.precision_policy))
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

    def decode(self, z, domain: str, training=False, prior=None):
        """Decodes a shared latent code into an image of `domain` (float32, in [-1, 1]).

        Args:
            prior: for a model with a remap prior, the prior image of the decoding
                (`prior_image(x, source, domain)` of the images x of domain `source` that z encodes).

        Raises:
            ValueError: for a model with a remap prior and no ``prior``.
        """
        if self.intensity_remap is not None and prior is None:
            raise ValueError(f"decode: this model has a remap prior ({self.remap_prior!r}); pass "
                             f"prior=model.prior_image(x, source, {domain!r}) of the images x the code encodes")
        return self._generate(self.domain_networks(domain).generator, self.shared_decoder(z, training=training),
                              prior, training)

    def _translate(self, x, source: str, target: str, training):
        """(mu, translation or reconstruction): x of `source` encoded and decoded into `target`."""
        mu, z = self.encode(x, source, training)
        return mu, self.decode(z, target, training, prior=self.prior_image(x, source, target))

    def call(self, inputs, training=False):
        """Translates a pair of batches: (x_a, x_b) -> (x_ab, x_ba)."""
        x_a, x_b = inputs
        return self._translate(x_a, "A", "B", training)[1], self._translate(x_b, "B", "A", training)[1]

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The base's metrics, with ``contrast_loss`` after ``structure_loss`` when the lesion-aware
        term is on (models without it keep the columns they always had)."""
        names = super().metric_names
        if self.config.contrast_weight > 0:
            at = names.index("structure_loss") + 1
            names = names[:at] + ("contrast_loss",) + names[at:]
        return names

    # ------------------------------------------------------------------------------- losses
    def _generator_terms(self, x, domain, training):
        """Loss terms (unweighted) of the generator player for images `x` of `domain`, and the
        translation of `x` into the other domain."""
        other = OTHER_DOMAIN[domain]
        mu, z = self.encode(x, domain, training)
        x_rec = self.decode(z, domain, training, prior=self.prior_image(x, domain, domain))
        x_trans = self.decode(z, other, training, prior=self.prior_image(x, domain, other))
        mu_cycle, x_cycle = self._translate(x_trans, other, domain, training)
        fake_logits = self.domain_networks(other).discriminator(x_trans, training=training)
        terms = {
            "gan": L.adversarial_loss(fake_logits, 1.0, self.config.gan_loss),
            "recon": self._recon(x, x_rec),
            "cycle": self._recon(x, x_cycle),
            "kl": L.kl_loss(mu),
            "cycle_kl": L.kl_loss(mu_cycle),
        }
        if self.config.structure_weight > 0:
            terms["structure"] = L.local_correlation_loss(x, x_trans)
        if self.config.contrast_weight > 0:
            terms["contrast"] = L.local_contrast_loss(x, x_trans)
        return terms, x_trans

    def _generator_loss(self, x_a, x_b, training):
        """(weighted total, unweighted terms summed over both domains, translations by target domain)."""
        cfg = self.config
        (terms_a, x_ab), (terms_b, x_ba) = (self._generator_terms(x, d, training) for x, d in ((x_a, "A"), (x_b, "B")))
        total = {key: terms_a[key] + terms_b[key] for key in terms_a}
        g_loss = (cfg.gan_weight * total["gan"] + cfg.recon_weight * total["recon"]
                  + cfg.cycle_weight * total["cycle"] + cfg.kl_weight * total["kl"]
                  + cfg.cycle_kl_weight * total["cycle_kl"])
        if "structure" in total:
            g_loss = g_loss + cfg.structure_weight * total["structure"]
        if "contrast" in total:
            g_loss = g_loss + cfg.contrast_weight * total["contrast"]
        return g_loss, total, {"A": x_ba, "B": x_ab}

    def _discriminator_loss(self, x_a, x_b, training, fakes=None):
        """Weighted discriminator loss per domain, on real images and on translations into it,
        and the discriminator's accuracy per domain and scale.

        Args:
            fakes: translations by target domain ({"A": x_ba, "B": x_ab}) to score; None
                translates the batch here.
        """
        images = {"A": x_a, "B": x_b}
        losses, accuracy = {}, {}
        for domain in DOMAINS:
            other = OTHER_DOMAIN[domain]
            if fakes is None:
                fake = self._translate(images[other], other, domain, training)[1]
            else:
                fake = fakes[domain]
            fake = ops.stop_gradient(fake)
            disc = self.domain_networks(domain).discriminator
            real_out, fake_out = disc(images[domain], training=training), disc(fake, training=training)
            losses[domain] = self.config.gan_weight * L.discriminator_loss(real_out, fake_out, self.config.gan_loss)
            accuracy[domain] = L.discriminator_accuracy(real_out, fake_out, self.config.gan_loss)
        return losses, accuracy

    # ---------------------------------------------------------------------------- training
    def _updates(self):
        """The step's two player updates, in `config.update_order`:

        - "d_then_g" (the lineage): a discriminator update on translations made for it, then a
          generator update (scored by the updated D);
        - "g_then_d": the generator update, then a discriminator update on the translations that
          update made (one generator forward per step instead of two).

        The step's metrics: running means of g_loss, d_loss (weighted totals), gan_loss,
        recon_loss, cycle_loss, kl_loss, structure_loss (unweighted, summed over both domains;
        kl includes the cycle codes), d_loss_a, d_loss_b and the discriminator accuracies.
        """

        def discriminator(images, record):
            # After the generator update: its translations (None first: fresh ones are made).
            d_losses, d_accuracy = self._discriminator_loss(images["A"], images["B"], training=True,
                                                            fakes=record.translations)
            return d_losses["A"] + d_losses["B"], record._replace(d_losses=d_losses, d_accuracy=d_accuracy)

        def generator(images, record):
            g_loss, terms, fakes = self._generator_loss(images["A"], images["B"], training=True)
            # _discriminator_loss stops the gradient at the fakes it is given.
            return g_loss, record._replace(g_loss=g_loss, terms=self._metric_terms(terms), translations=fakes)

        if self.config.update_order == "g_then_d":
            return [("g", generator), ("d", discriminator)]
        return [("d", discriminator), ("g", generator)]

    def _test_metrics(self, images):
        """The train step's metrics without updates, noise or dropout."""
        x_a, x_b = images["A"], images["B"]
        d_losses, d_accuracy = self._discriminator_loss(x_a, x_b, training=False)
        g_loss, terms, _ = self._generator_loss(x_a, x_b, training=False)
        return self._record(g_loss, self._metric_terms(terms), d_losses, d_accuracy)

    @staticmethod
    def _metric_terms(terms):
        # One kl_loss metric for the codes of the images and of their translations; the
        # structure term is logged as 0 when its weight is 0 (so every run has the same columns).
        logged = {"gan": terms["gan"], "recon": terms["recon"], "cycle": terms["cycle"],
                  "kl": terms["kl"] + terms["cycle_kl"], "structure": terms.get("structure", 0.0)}
        if "contrast" in terms:
            logged["contrast"] = terms["contrast"]
        return logged

    # --------------------------------------------------------------------------- inference
    def _inference(self, x, source, target):
        # source == target: the image decoded back into its own domain (self-reconstruction).
        return self._translate(x, source, target, training=False)[1]

    def reconstruct(self, x, domain: str):
        """Self-reconstruction through the shared latent space: G_d(dec(shared(E_d(x)))).

        Raises:
            ValueError: for an unknown domain or images of the wrong shape/channels.
        """
        return super().reconstruct(x, domain)
