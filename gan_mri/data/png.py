"""PNG slices: GAN-MRI folders (trainA/ trainB/ testA/ testB/) in, translated slices out.

Pixels map linearly to [-1, 1]: 8-bit ``p -> p / 127.5 - 1``, 16-bit ``p -> p / 32767.5 - 1``; colour
images are converted to luminance (the GAN-MRI PNGs are gray stored as RGB). Writing is the inverse,
rounded to the nearest level. Uses Pillow (installed with matplotlib).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .resize import fit_plane, plan_plane_fit

logger = logging.getLogger(__name__)

PNG_SUFFIXES = (".png",)


def read_png(path) -> np.ndarray:
    """Read one PNG as a float32 ``(H, W)`` array in [-1, 1].

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if it is not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                pixels = np.asarray(image, dtype=np.float64)
                full_scale = 65535.0
            else:
                pixels = np.asarray(image.convert("L"), dtype=np.float64)
                full_scale = 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path}: not a readable PNG image: {error}") from None
    return (np.clip(pixels / full_scale, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def list_pngs(folder) -> list[Path]:
    """Sorted PNG files of ``folder``.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: if it holds no PNG files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in PNG_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"{folder}: expected PNG files, found none")
    return paths


def read_png_folder(folder, image_shape=None, resize: str = "fit"):
    """Read every PNG of a folder into one array.

    Args:
        folder: folder of PNG files, all of one size.
        image_shape: ``(H, W)`` to fit the images into; ``None`` keeps their size.
        resize: ``"fit"`` or ``"pad"`` (see :mod:`gan_mri.data.resize`).

    Returns:
        ``(images, names)``: float32 ``(N, H, W, 1)`` in [-1, 1] and the file stems.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: if it has no PNGs, unreadable files, or images of different sizes (naming them).
    """
    paths = list_pngs(folder)
    images, problems = [], []
    for path in paths:
        try:
            images.append(read_png(path))
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueError("; ".join(problems))
    sizes = Counter(image.shape for image in images)
    if len(sizes) > 1:
        common = sizes.most_common(1)[0][0]
        odd = [f"{path.name} {image.shape[0]}x{image.shape[1]}" for path, image in zip(paths, images)
               if image.shape != common]
        raise ValueError(
            f"{folder}: expected PNG images of one size ({common[0]}x{common[1]}, the most common), "
            f"found mixed sizes: {', '.join(odd)}"
        )
    stack = np.stack(images)
    if image_shape is not None:
        plan = plan_plane_fit(stack.shape[1:], image_shape, resize)
        stack = np.stack([fit_plane(image, plan, order=1, fill=-1.0) for image in stack])
        np.clip(stack, -1.0, 1.0, out=stack)
    return stack[..., None].astype(np.float32), [path.stem for path in paths]


def write_png_slices(images, folder, names=None, bit_depth: int = 8) -> list[Path]:
    """Write images in [-1, 1] as grayscale PNG files.

    Args:
        images: ``(N, H, W)`` or ``(N, H, W, C)`` (channel mean for C > 1), values clipped to [-1, 1].
        folder: output folder (created).
        names: file stems (default ``slice_0000``...).
        bit_depth: 8 or 16.

    Returns:
        The paths written.

    Raises:
        ValueError: for a bad shape, bit depth or number of names.
    """
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 4:
        array = array.mean(axis=-1)
    if array.ndim != 3:
        raise ValueError(f"images: expected shape (N, H, W) or (N, H, W, C), found {np.shape(images)}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth: expected 8 or 16, found {bit_depth!r}")
    names = [f"slice_{i:04d}" for i in range(len(array))] if names is None else list(names)
    if len(names) != len(array):
        raise ValueError(f"names: expected {len(array)} names (one per image), found {len(names)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    full_scale = 255.0 if bit_depth == 8 else 65535.0
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    paths = []
    for image, name in zip(array, names):
        levels = np.round((np.clip(image, -1.0, 1.0) + 1.0) * 0.5 * full_scale).astype(dtype)
        path = folder / f"{name}.png"
        Image.fromarray(levels).save(path)
        paths.append(path)
    return paths
