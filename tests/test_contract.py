"""The translation-model contract (tests/model_contract.py) fails the models that break it."""

import keras
import numpy as np
import pytest

from gan_mri.config import get_preset
from gan_mri.models import build_model
from model_contract import check_players_update, check_precision_policy, check_test_step_is_stable


def tiny_cyclegan(**overrides):
    return build_model(get_preset("cyclegan", **{"image_shape": (32, 32), "base_width": 8, "res_blocks": 1,
                                                 "precision": "float32", **overrides}))


def images(seed):
    return np.random.default_rng(seed).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)


def test_a_frozen_discriminator_and_a_test_step_that_trains_fail_the_contract():
    model = tiny_cyclegan()
    model.compile(d_optimizer=keras.optimizers.SGD(0.0), run_eagerly=True)
    every = len(model.discriminator_variables)  # 26: two PatchGANs
    with pytest.raises(AssertionError, match=f"the train step left {every} discriminator variables unchanged"):
        check_players_update(model, images(1), images(2))
    model.test_step = model.train_step
    with pytest.raises(AssertionError, match="test_step gave other metrics on the same batch"):
        check_test_step_is_stable(model, images(1), images(2))


def test_a_model_that_sets_the_global_policy_fails_the_precision_contract():
    def build(precision="float32"):
        keras.mixed_precision.set_global_policy(precision)  # what a family must not do
        return tiny_cyclegan(precision=precision)

    with pytest.raises(AssertionError, match="the model set Keras's global policy"):
        check_precision_policy(build, images(1), images(2), "mixed_bfloat16", reference=tiny_cyclegan())
