"""Packaging for gan-mri: T1w <-> T2w brain MR translation with UNIT and its variants."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="gan-mri",
    version="0.1.0",
    description=(
        "Brain MR contrast translation (T1w <-> T2w) with UNIT, self-attention, spectral "
        "normalization and the Charbonnier penalty, in TensorFlow/Keras 3."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # saved_models/ (the shipped pretrained run folder) installs as gan_mri/pretrained_models/.
    packages=find_packages(include=["gan_mri", "gan_mri.*"]) + ["gan_mri.pretrained_models"],
    package_dir={"gan_mri.pretrained_models": "saved_models"},
    package_data={"gan_mri.pretrained_models": ["README.md", "phantom-sa-enc-cl-sn/*", "phantom-sa-enc-cl-sn/*/*"],
                  # The real ICBM 2009c T1w/T2w pair (gan_mri.data.icbm152) and its McGill notice.
                  # and the real-anatomy phantom's label maps (gan_mri.data.anatomy) with SynthSeg's licence.
                  "gan_mri.data": ["icbm152/*.nii.xz", "icbm152/COPYING", "synthseg/*.nii.xz", "synthseg/LICENSE.txt",
                                   "synthseg/NOTICE"]},
    install_requires=[
        "tensorflow>=2.16",
        "tensorboard",  # TensorFlow 2.21 no longer pulls it in; the TensorBoard callback needs it
        "keras>=3.3",
        "numpy",
        "scipy",
        "nibabel",
        "nilearn",
        "scikit-image",
        "matplotlib",
        "dipy",  # affine registration: brain masks of whole-head scans (gan_mri.data.brain_mask)
    ],
    extras_require={"test": ["pytest", "pytest-xdist", "jax[cpu]"]},
    entry_points={"console_scripts": ["gan-mri=gan_mri.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
