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
    packages=find_packages(include=["gan_mri", "gan_mri.*"]),
    include_package_data=True,
    package_data={"gan_mri": ["pretrained/**/*"]},
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.3",
        "numpy",
        "scipy",
        "nibabel",
        "nilearn",
        "scikit-image",
        "matplotlib",
    ],
    extras_require={"test": ["pytest", "pytest-xdist"]},
    entry_points={"console_scripts": ["gan-mri=gan_mri.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
