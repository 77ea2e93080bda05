"""Benchmark rigid mutual-information registration of a T2w to its T1w: dipy, SimpleITK and ANTsPy.

Builds the case a scan acquired apart makes (IXI-like): the T2w's head is moved by a known rigid
transform (rotation about an oblique axis through the brain centre, and a shift) and resampled onto
another grid (other voxel size, field of view, origin and axis orientation). Each library then
registers that moving T2w to the T1w (rigid, 6 dof, Mattes/Viola-Wells mutual information, 32 bins,
a multi-resolution pyramid) and the recovered transform is compared with the known one. Prints ONE
JSON line per library; a library that does not import is reported as skipped.

Usage:
    python benchmarks/registration.py --t1w T1w.nii.gz --t2w T2w.nii.gz --brain-mask mask.nii.gz
    python benchmarks/registration.py                  # the shipped ICBM 2009c pair (needs gan_mri)
    python benchmarks/registration.py --static T1w.nii.gz --moving T2w.nii.gz   # a real pair: NMI only
    python benchmarks/registration.py --libraries dipy --cases 5 --threads 2

Per library: `error_max_mm` is the largest displacement between the recovered and the true
transform over the brain mask's voxels (mean and max over the cases), `rotation_error_deg` the angle
of the residual rotation, `translation_error_mm` the residual displacement of the brain centre,
`seconds` the wall time of one registration (reading the two files included), `cpu_seconds` its
CPU time over all threads (steadier than wall time on a shared machine), `nmi_before` /
`nmi_after` / `nmi_truth` the normalized mutual information (H(A)+H(B))/H(A,B), 32 bins, inside the
brain mask, of the T1w and the moving T2w resampled through the scanner affines alone, through the
recovered transform and through the true one. `threads` is what the library was allowed
(ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS, OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""ITK (SimpleITK, ANTs) works in LPS world coordinates, NIfTI and nibabel in RAS; this flips one into the other."""

HISTOGRAM_BINS = 32


# --------------------------------------------------------------------------- the known transform


def rigid_motion(rng: np.random.Generator, rotation_deg: float, shift_mm: float, centre) -> np.ndarray:
    """A 4x4 world (RAS, mm) rigid transform: a rotation of `rotation_deg` about a random axis through
    `centre`, then a shift of `shift_mm` in a random direction.

    Args:
        rng: the random generator (seeded by the caller).
        rotation_deg: rotation angle, degrees.
        shift_mm: length of the translation, mm.
        centre: (3,) world point the rotation axis passes through (the brain centre).

    Returns:
        The 4x4 matrix M, x -> R (x - centre) + centre + t.
    """
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    angle = np.deg2rad(rotation_deg)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross  # Rodrigues
    motion = np.eye(4)
    motion[:3, :3] = rotation
    motion[:3, 3] = centre - rotation @ centre + shift_mm * direction
    return motion


def acquisition_grid(shape, affine, spacing_scale, fov_scale, origin_shift_mm):
    """Another scanner grid over the same head: voxel sizes scaled by `spacing_scale`, field of view by
    `fov_scale`, moved by `origin_shift_mm`, and stored in LPS axis order (x and y flipped), as a
    DICOM-derived T2w often is while its T1w is RAS.

    Returns:
        (shape, affine) of the new grid.
    """
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0)) * np.asarray(spacing_scale)
    extent = np.asarray(shape) * np.sqrt((affine[:3, :3] ** 2).sum(axis=0)) * np.asarray(fov_scale)
    new_shape = tuple(int(n) for n in np.ceil(extent / spacing))
    centre = affine @ np.append((np.asarray(shape) - 1) / 2, 1)
    new_affine = np.diag(np.append(spacing * np.array([-1, -1, 1]), 1.0))
    half = new_affine[:3, :3] @ ((np.asarray(new_shape) - 1) / 2)
    new_affine[:3, 3] = centre[:3] + np.asarray(origin_shift_mm) - half
    return new_shape, new_affine


def moved_scan(t2w, motion, grid):
    """The T2w as the scanner would record it after the head moved by `motion`, on `grid`.

    The image is resampled through the affines (nibabel.processing, cubic spline); its header carries
    the new grid's affine only, so the motion is unknown to the registration.
    """
    import nibabel as nib
    from nibabel.processing import resample_from_to

    moved_head = nib.Nifti1Image(np.asanyarray(t2w.dataobj, dtype=np.float32), motion @ t2w.affine)
    scan = resample_from_to(moved_head, grid, order=3, mode="constant", cval=0.0)
    return nib.Nifti1Image(np.clip(scan.get_fdata(dtype=np.float32), 0, None), grid[1])


# --------------------------------------------------------------------------- errors and similarity


def transform_errors(estimated: np.ndarray, true: np.ndarray, brain_points: np.ndarray, centre) -> dict:
    """How far a recovered world transform is from the true one.

    Args:
        estimated, true: 4x4 world transforms (static world point -> moving world point).
        brain_points: (n, 3) world coordinates of the brain mask's voxels.
        centre: (3,) the brain centre.

    Returns:
        error_max_mm (largest |estimated(x) - true(x)| over the brain), error_mean_mm, rotation_error_deg
        (angle of R_true^T R_estimated), translation_error_mm (|estimated(centre) - true(centre)|).
    """
    difference = (estimated - true)[:3]
    displacement = np.linalg.norm(brain_points @ difference[:, :3].T + difference[:, 3], axis=1)
    residual = true[:3, :3].T @ estimated[:3, :3]
    cosine = np.clip((np.trace(residual) - 1) / 2, -1.0, 1.0)
    return {"error_max_mm": float(displacement.max()), "error_mean_mm": float(displacement.mean()),
            "rotation_error_deg": float(np.rad2deg(np.arccos(cosine))),
            "translation_error_mm": float(np.linalg.norm(difference @ np.append(centre, 1.0)))}


def normalized_mutual_information(a: np.ndarray, b: np.ndarray, bins: int = HISTOGRAM_BINS) -> float:
    """Studholme's normalized mutual information, (H(A) + H(B)) / H(A, B): 1 for independent images,
    2 for one image against itself.

    Args:
        a, b: intensities at the same points (1D, same length).
        bins: histogram bins per image.
    """
    joint, _, _ = np.histogram2d(a, b, bins=bins)
    joint = joint / joint.sum()

    def entropy(p):
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    return (entropy(joint.sum(axis=1)) + entropy(joint.sum(axis=0))) / entropy(joint.ravel())


def alignment_nmi(static, moving, transform: np.ndarray, brain_mask: np.ndarray) -> float:
    """NMI inside `brain_mask` between the static image and the moving one resampled onto the static
    grid through `transform` (static world -> moving world; the identity means the affines alone)."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    in_static_world = nib.Nifti1Image(np.asanyarray(moving.dataobj, dtype=np.float32),
                                      np.linalg.inv(transform) @ moving.affine)
    resampled = resample_from_to(in_static_world, static, order=1, mode="constant", cval=0.0).get_fdata()
    return normalized_mutual_information(np.asanyarray(static.dataobj)[brain_mask], resampled[brain_mask])


# --------------------------------------------------------------------------- the libraries


def _itk_to_ras(point_map) -> np.ndarray:
    """The 4x4 RAS matrix of an affine map of LPS points (an ITK transform's TransformPoint)."""
    basis = np.vstack([np.zeros(3), np.eye(3)])
    images = np.array([point_map(tuple(float(c) for c in p)) for p in basis])
    lps = np.eye(4)
    lps[:3, 3] = images[0]
    lps[:3, :3] = (images[1:] - images[0]).T
    return LPS_FROM_RAS @ lps @ LPS_FROM_RAS


def register_dipy(static_path: str, moving_path: str, seed: int) -> tuple[np.ndarray, dict]:
    """dipy.align: centres of mass, then a translation stage, then a rigid stage, each L-BFGS-B on MI
    (32 bins, 25 % of the voxels sampled) over a pyramid at 8 mm and 4 mm.

    A rigid stage straight from the centres of mass stops early (3-4 degrees left of a 6 degree
    rotation, measured): dipy's optimizer needs the translation found first, as dipy's own tutorial does.
    The pyramid stops at 4 mm because a 2 mm level tripled the time for no gain (0.36 vs 0.34 mm).

    Returns:
        (4x4 static world -> moving world, the settings used).
    """
    import nibabel as nib
    from dipy.align.imaffine import AffineRegistration, MutualInformationMetric, transform_centers_of_mass
    from dipy.align.transforms import RigidTransform3D, TranslationTransform3D

    static, moving = nib.load(static_path), nib.load(moving_path)
    voxel_mm = float(min(static.header.get_zooms()[:3]))
    settings = {"initial": "centers of mass", "stages": ["TranslationTransform3D", "RigidTransform3D"],
                "metric": "MutualInformationMetric", "nbins": HISTOGRAM_BINS, "sampling_proportion": 0.25,
                "level_iters": [1000, 100], "sigmas": [3.0, 1.0], "pyramid_mm": [8.0, 4.0],
                "factors": [max(1, round(level / voxel_mm)) for level in (8.0, 4.0)], "method": "L-BFGS-B"}
    static_data, moving_data = static.get_fdata(dtype=np.float32), moving.get_fdata(dtype=np.float32)
    np.random.seed(seed)  # dipy draws its metric's sample points from numpy's global generator
    starting = transform_centers_of_mass(static_data, static.affine, moving_data, moving.affine).affine
    for transform in (TranslationTransform3D(), RigidTransform3D()):
        registration = AffineRegistration(
            metric=MutualInformationMetric(nbins=settings["nbins"], sampling_proportion=settings["sampling_proportion"]),
            level_iters=settings["level_iters"], sigmas=settings["sigmas"], factors=settings["factors"], verbosity=0)
        starting = registration.optimize(static_data, moving_data, transform, None, static_grid2world=static.affine,
                                         moving_grid2world=moving.affine, starting_affine=starting).affine
    return np.asarray(starting), settings


def register_simpleitk(static_path: str, moving_path: str, seed: int) -> tuple[np.ndarray, dict]:
    """SimpleITK: moments initializer, then Euler3D with regular-step gradient descent on Mattes MI."""
    import SimpleITK as sitk

    settings = {"initial": "CenteredTransformInitializer MOMENTS", "metric": "MattesMutualInformation",
                "bins": HISTOGRAM_BINS, "sampling": "RANDOM", "sampling_percentage": 0.1,
                "optimizer": "RegularStepGradientDescent(learningRate=1, minStep=1e-4, iterations=200, "
                             "relaxation=0.5), scales from physical shift",
                "shrink_factors": [4, 2, 1], "smoothing_sigmas_mm": [2.0, 1.0, 0.0], "interpolator": "linear"}
    fixed = sitk.ReadImage(static_path, sitk.sitkFloat32)
    moving = sitk.ReadImage(moving_path, sitk.sitkFloat32)
    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings["bins"])
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(settings["sampling_percentage"], seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=200,
                                                    relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(settings["shrink_factors"])
    method.SetSmoothingSigmasPerLevel(settings["smoothing_sigmas_mm"])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    transform = method.Execute(fixed, moving)
    return _itk_to_ras(transform.TransformPoint), settings


def register_antspy(static_path: str, moving_path: str, seed: int) -> tuple[np.ndarray, dict]:
    """ANTsPy: ants.registration(type_of_transform="Rigid") on Mattes MI, with the iterations and pyramid of
    antsRegistrationSyNQuick's rigid stage (1000x500x250x0 over shrink 8x4x2x1): antspyx's default
    (2100x1200x1200x10 over 6x4x2x1) took 65 s on a 1 mm head for 0.14 mm."""
    import ants

    settings = {"type_of_transform": "Rigid", "initial": "centres of mass ([fixed,moving,1])",
                "aff_metric": "mattes", "aff_sampling": HISTOGRAM_BINS, "aff_random_sampling_rate": 0.2,
                "aff_iterations": [1000, 500, 250, 0], "aff_shrink_factors": [8, 4, 2, 1],
                "aff_smoothing_sigmas_vox": [3, 2, 1, 0], "gradient_step": 0.25}
    fixed, moving = ants.image_read(static_path), ants.image_read(moving_path)
    ants.config._random_seed = seed  # antspyx passes it to antsRegistration as --random-seed
    result = ants.registration(
        fixed, moving, type_of_transform="Rigid", aff_metric=settings["aff_metric"],
        aff_sampling=settings["aff_sampling"], aff_random_sampling_rate=settings["aff_random_sampling_rate"],
        aff_iterations=tuple(settings["aff_iterations"]), aff_shrink_factors=tuple(settings["aff_shrink_factors"]),
        aff_smoothing_sigmas=tuple(settings["aff_smoothing_sigmas_vox"]))
    transform = ants.read_transform(result["fwdtransforms"][0])
    return _itk_to_ras(transform.apply_to_point), settings


REGISTRATIONS = {
    "dipy": ("dipy", register_dipy),
    "simpleitk": ("SimpleITK", register_simpleitk),
    "antspyx": ("ants", register_antspy),
}
"""Library name -> (module to import, function(static_path, moving_path, seed) -> (4x4 RAS transform, settings))."""


def _library_version(module_name: str) -> str | None:
    """The library's version, or None if it does not import."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    if module_name == "SimpleITK":
        return module.Version_VersionString()
    return getattr(module, "__version__", "unknown")


# --------------------------------------------------------------------------- the cases


def _icbm152_files(folder: Path) -> tuple[Path, Path, Path]:
    """Writes the shipped ICBM 2009c whole-head pair and brain mask (gan_mri) into `folder`."""
    import nibabel as nib

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from gan_mri.data.icbm152 import load_icbm152
    except ImportError as error:
        raise SystemExit(f"no --t1w/--t2w given and gan_mri does not import ({error}); "
                         "pass --t1w, --t2w and --brain-mask, e.g. from `gan-mri icbm152 --out DIR`") from error
    pair = load_icbm152()
    paths = tuple(folder / name for name in ("icbm152_T1w.nii.gz", "icbm152_T2w.nii.gz", "icbm152_brain_mask.nii.gz"))
    for path, data in zip(paths, (pair.t1w, pair.t2w, pair.brain_mask.astype(np.uint8))):
        nib.save(nib.Nifti1Image(data, pair.affine), path)
    return paths


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--t1w", help="static T1w NIfTI (default: the ICBM 2009c pair shipped with gan_mri)")
    parser.add_argument("--t2w", help="T2w on the T1w's grid, aligned with it (moved by the benchmark)")
    parser.add_argument("--brain-mask", help="brain mask on the T1w's grid (default: T1w above its 60th percentile)")
    parser.add_argument("--static", help="a real static T1w (with --moving): no known transform, NMI and seconds only")
    parser.add_argument("--moving", help="a real moving T2w acquired apart")
    parser.add_argument("--libraries", nargs="+", default=list(REGISTRATIONS), choices=list(REGISTRATIONS))
    parser.add_argument("--cases", type=int, default=3, help="random transforms (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rotation", type=float, default=6.0, help="degrees, about a random oblique axis")
    parser.add_argument("--shift", type=float, default=5.0, help="mm, in a random direction")
    parser.add_argument("--spacing-scale", type=float, nargs=3, default=[1.2, 1.0, 1.5],
                        help="moving voxel size over the static's, per axis")
    parser.add_argument("--fov-scale", type=float, nargs=3, default=[1.1, 1.05, 0.9],
                        help="moving field of view over the static's, per axis")
    parser.add_argument("--origin-shift", type=float, nargs=3, default=[-12.0, 8.0, 10.0],
                        help="moving grid centre minus static grid centre, mm")
    parser.add_argument("--threads", type=int, default=2, help="threads each library may use")
    return parser.parse_args(argv)


def _summary(values) -> dict:
    return {"mean": round(statistics.fmean(values), 3), "max": round(max(values), 3)}


def main(argv=None) -> None:
    args = _parse_args(argv)
    if (args.static is None) != (args.moving is None):
        raise SystemExit("--static and --moving go together (a real pair); found only one of them")
    if (args.t1w is None) != (args.t2w is None):
        raise SystemExit("--t1w and --t2w go together (the pair the benchmark moves); found only one of them")
    # ITK reads its thread count once, when the first filter runs; dipy's Cython honours OMP_NUM_THREADS.
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import nibabel as nib

    workdir = Path(tempfile.mkdtemp(prefix="registration_benchmark_"))
    cases = []  # (static path, moving path, true transform or None)
    if args.static:
        static_path, mask_path = Path(args.static), None
        cases.append((static_path, Path(args.moving), None))
    else:
        if args.t1w:
            static_path, t2w_path = Path(args.t1w), Path(args.t2w)
            mask_path = Path(args.brain_mask) if args.brain_mask else None
        else:
            static_path, t2w_path, mask_path = _icbm152_files(workdir)
        for path in (static_path, t2w_path):
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such image")
    static = nib.load(static_path)
    static_data = np.asanyarray(static.dataobj)
    if mask_path is not None:
        brain_mask = np.asanyarray(nib.load(mask_path).dataobj) > 0
        if brain_mask.shape != static_data.shape:
            raise ValueError(f"--brain-mask {mask_path}: expected the T1w's shape {static_data.shape}, "
                             f"found {brain_mask.shape}")
    else:
        brain_mask = static_data > np.percentile(static_data, 60)
    brain_points = nib.affines.apply_affine(static.affine, np.argwhere(brain_mask))
    centre = brain_points.mean(axis=0)

    if not args.static:
        t2w = nib.load(t2w_path)
        if t2w.shape != static.shape or not np.allclose(t2w.affine, static.affine, atol=1e-3):
            raise ValueError(f"--t2w {t2w_path}: expected the T1w's grid {static.shape}, found {t2w.shape} "
                             "(the benchmark needs an aligned pair to move by a known transform)")
        grid = acquisition_grid(static.shape, static.affine, args.spacing_scale, args.fov_scale, args.origin_shift)
        rng = np.random.default_rng(args.seed)
        for index in range(args.cases):
            motion = rigid_motion(rng, args.rotation, args.shift, centre)
            moving_path = workdir / f"moving_{index}.nii.gz"
            nib.save(moved_scan(t2w, motion, grid), moving_path)
            cases.append((static_path, moving_path, motion))

    common = {"static": str(static_path), "static_shape": list(static.shape),
              "static_voxel_mm": [round(float(z), 3) for z in static.header.get_zooms()[:3]],
              "moving_shape": list(nib.load(cases[0][1]).shape),
              "moving_voxel_mm": [round(float(z), 3) for z in nib.load(cases[0][1]).header.get_zooms()[:3]],
              "rotation_deg": args.rotation if not args.static else None,
              "shift_mm": args.shift if not args.static else None, "cases": len(cases), "seed": args.seed,
              "threads": args.threads, "python": platform.python_version(), "cores": os.cpu_count()}
    for library in args.libraries:
        module_name, register = REGISTRATIONS[library]
        version = _library_version(module_name)
        if version is None:
            print(json.dumps({"library": library, "skipped": f"{module_name} does not import"}), flush=True)
            continue
        per_case = []
        for index, (case_static, moving_path, motion) in enumerate(cases):
            start, start_cpu = time.perf_counter(), time.process_time()
            estimated, settings = register(str(case_static), str(moving_path), args.seed + index)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            moving = nib.load(moving_path)
            record = {"seconds": seconds, "cpu_seconds": cpu_seconds,
                      "nmi_before": alignment_nmi(static, moving, np.eye(4), brain_mask),
                      "nmi_after": alignment_nmi(static, moving, estimated, brain_mask)}
            if motion is not None:
                record.update(transform_errors(estimated, motion, brain_points, centre))
                record["nmi_truth"] = alignment_nmi(static, moving, motion, brain_mask)
            per_case.append(record)
        result = {"library": library, "version": version, **common,
                  **{key: _summary([case[key] for case in per_case]) for key in per_case[0]},
                  "settings": settings}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
