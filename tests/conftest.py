"""Shared test settings: quiet TensorFlow, deterministic seeds, tiny shapes."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# "auto" precision is float32 in every test process and its subprocesses: a CPU with bfloat16 units would
# otherwise train in bfloat16 and end elsewhere than the measured numbers (tests/test_precision.py
# unsets it to test the probe's decision).
os.environ["GAN_MRI_AUTO_PRECISION"] = "float32"

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same random state and float32 policy."""
    import keras

    keras.utils.set_random_seed(1234)
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


# The heaviest test files, heaviest first (seconds of test time on a 2-core machine, `--durations`,
# 2026-12-05: test_cli 462, test_backends 337, test_training 311, test_examples 186, test_recipe 169,
# test_unit 148, test_distributed 120, test_faults 115; every other file under 100). README's test
# command hands whole files to two workers in collection order (`--dist loadfile
# --no-loadscope-reorder`), so starting with the longest lets both finish together; xdist's own order,
# most tests first, left the few-but-slow files to the end and one worker idle for minutes.
HEAVY_FILES = ("test_cli.py", "test_backends.py", "test_training.py", "test_examples.py", "test_recipe.py",
               "test_unit.py", "test_distributed.py", "test_faults.py")


def pytest_collection_modifyitems(items):
    """Runs the files of `HEAVY_FILES` first, in that order; the rest after, in collection order."""
    rank = {name: index for index, name in enumerate(HEAVY_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(HEAVY_FILES)))


TINY_SIZE = (32, 32)


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory):
    """Four simulated phantom subjects (BIDS: T1w, T2w, dseg), written once per session."""
    from gan_mri.data.phantom import simulate

    root = tmp_path_factory.mktemp("phantom") / "bids"
    simulate(4, root, seed=7)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tiny_phantom, tmp_path_factory):
    """The tiny phantom prepared at 32x32 (3 training subjects, 1 paired test subject)."""
    from gan_mri.data.dataset import prepare

    return prepare(tiny_phantom, tmp_path_factory.mktemp("prepared") / "data", image_shape=TINY_SIZE, seed=0)
