"""Shared test settings: quiet TensorFlow, deterministic seeds, tiny shapes."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# "auto" precision is float32 in every test process and its subprocesses: a CPU with bfloat16 units would
# otherwise train in bfloat16 and end elsewhere than the measured numbers (tests/test_precision.py
# unsets it to test the probe's decision).
os.environ["GAN_MRI_AUTO_PRECISION"] = "float32"
# The JAX reruns (subprocesses, which inherit this) spend most of their time in XLA's CPU compiler; at
# optimization level 0 it runs fewer LLVM passes over the same programs: test_precision.py's JAX rerun
# took 33 s of CPU instead of 57 s (2-core AMD EPYC), its numbers within the tests' tolerances.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import pytest  # noqa: E402

LONGEST_FIRST = ("test_bf16_stability.py", "test_recipe.py", "test_cli.py", "test_training.py", "test_backends.py",
                 "test_examples.py", "test_unit.py", "test_distributed.py")
"""The test files that take minutes, longest first (pytest --durations of .ci/run, 2-core AMD EPYC,
2026-12-08: 644, 396, 551, 253, 217, 198, 151, 145 s). `--dist loadfile` hands whole files to the workers
in collection order, and xdist's default order (most tests first) started the two longest last, so one
worker ran on alone at the end; started first, they run beside the many short files."""


def pytest_configure(config):
    # xdist's --loadscope-reorder (its default) sorts the files by test count; keep the order below.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """The files of `LONGEST_FIRST` first, in its order; the rest after them as collected."""
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same random state and float32 policy."""
    import keras

    keras.utils.set_random_seed(1234)
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


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
