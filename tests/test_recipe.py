"""The default training recipe reaches the no-learning intensity remap inside the brain.

The demo in miniature: a few minutes of the default recipe on a brain-only phantom (MPRAGE T1w, TSE
T2w, no head) must give translations about as good as a lookup table's. On the realistic phantom the
remap is strong, because MPRAGE and TSE order the tissues in reverse: measured brain SSIM of this test's
budget (4 epochs, 6 subjects, 64 px, 2 CPU cores), model against remap:

    real anatomy, channel prior (this test, the default)     0.858 / 0.865 against 0.887 / 0.871
    MNI152 anatomy, no prior (the recipe before issue 39)     0.871 / 0.874 against 0.871 / 0.859
    MNI152, every subject brain-extracted, no prior           0.815 / 0.831 against 0.885 / 0.884
    MNI152, the demo's cohort (half with the head), no prior  0.723 / 0.534 against 0.883 / 0.882

At the demo's budget (5 epochs, 6 subjects with heads) the default recipe passes the remap (0.837 /
0.855 against 0.811 / 0.819, docs/training_recipe.md, ninth round); at this one, on brain-only slices
where the remap is at its best, it stays within 0.03 of it. The lineage recipe (Adam 1e-4, two
stride-2 convs) was far below the remap (0.316 / 0.476 against 0.770 / 0.785), so a regression of the
recipe shows here first.
"""

import pytest

from gan_mri.baseline import IntensityRemap
from gan_mri.config import get_preset
from gan_mri.data.dataset import prepare
from gan_mri.data.phantom import simulate
from gan_mri.evaluation import evaluate
from gan_mri.training import train

SIZE = (64, 64)


@pytest.fixture(scope="module")
def small_phantom(tmp_path_factory):
    """Six brain-only phantom subjects (the demo's cohort seed) at the demo's 64x64: 5 train, 1 test."""
    root = tmp_path_factory.mktemp("recipe")
    simulate(6, root / "bids", seed=0, head=False)
    return prepare(root / "bids", root / "data", image_shape=SIZE, seed=0)


def test_default_recipe_reaches_the_intensity_remap_in_both_directions(small_phantom, tmp_path):
    config = get_preset("sa-enc-cl-sn", image_shape=SIZE, base_width=16)
    assert config.recipe == "default"
    # 4 epochs of 76 steps: about 300 updates, under 2 minutes on 2 CPU cores.
    model, _ = train(config, small_phantom, tmp_path / "run", epochs=4, batch_size=4, seed=0, verbose=0)

    results = evaluate(model, small_phantom.test_dataset(batch_size=16),
                       baseline=IntensityRemap.from_dataset(small_phantom), structure=False)

    # Measured on 2 CPU cores: brain SSIM 0.858 / 0.865 against the remap's 0.887 / 0.871. Another CPU
    # rounds differently and ends elsewhere; the margin leaves room for that, not for a broken recipe.
    for direction, values in results.items():
        assert values["n_slices"] == small_phantom.counts["test_a"], direction
        margin = values["ssim_brain"] - values["baseline_ssim_brain"]
        assert margin >= -0.05, (direction, values["ssim_brain"], values["baseline_ssim_brain"])
