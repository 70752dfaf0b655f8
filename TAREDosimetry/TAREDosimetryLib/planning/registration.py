"""Registration of the post-treatment images to the planning ones (SimpleITK), and transforms.

Rigid: Euler 3-D transform, Mattes mutual information (50 bins), three resolution levels (shrink
4, 2, 1; smoothing 2, 1, 0 mm), conjugate gradient with line search (at most 100 iterations per
level, stopped when the metric changes by less than 1e-5 over 5 iterations) with scales from
physical shifts, started from the images' centres of mass (moments).  The metric is sampled only inside a
mask of the fixed image (its foreground: above 5 % of its range, dilated by 2 voxels, or the
caller's mask), with a fixed number of random points per level (:data:`SAMPLES_PER_LEVEL`, a
fixed seed: a rerun gives the same transform).  This keeps the cost independent of the image
size and of the empty background of a SPECT: the shared MAA SPECT (2.6 M voxels) registers to a
moved copy of itself in a few seconds instead of 74-88 s with 5 % of every voxel sampled and a
regular-step descent running into its 200-iteration limit at every level (``benchmarks/bench_plan.py``);
the accuracy tests (``Testing/test_compare.py``) hold (errors 0.1-0.3 mm where there is activity
or tissue, below 0.3 degree).

Optional deformable refinement: a B-spline transform on a coarse control grid, optimised with
L-BFGS-B on the same metric and mask, composed after the rigid one.

Transforms follow ITK's convention: they map a point of the fixed (planning) space to the moving
(post-treatment) space, so ``resample_onto`` reads the moving image at T(p) for each planning
voxel p.  A user's transform file (.tfm/.h5/.txt, ITK; from Slicer: the transform *to* the
planning frame's parent, exported as ITK) follows the same convention.
"""

import math

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..resample import volume_to_sitk
from ..volume import Volume

__all__ = ["rigid_register", "foreground_mask", "SAMPLES_PER_LEVEL", "bspline_refine", "read_transform", "write_transform", "resample_onto", "rigid_parameters",
           "transform_error_mm", "matrix_lps", "transform_from_matrix_lps"]


def _float_image(volume):
    return sitk.Cast(volume_to_sitk(volume, dtype=np.float32), sitk.sitkFloat32)


#: Random metric samples per resolution level (inside the mask), whatever the image size.
SAMPLES_PER_LEVEL = 20000
MASK_FRACTION_OF_RANGE = 0.05
MASK_DILATION_VOXELS = 2


def foreground_mask(image, fraction=MASK_FRACTION_OF_RANGE, dilation=MASK_DILATION_VOXELS):
    """Binary SimpleITK mask of ``image`` (a SimpleITK image): voxels above min + ``fraction`` of the
    intensity range (SPECT counts above 5 % of the maximum; CT: the body, air excluded), dilated."""
    arr = sitk.GetArrayViewFromImage(image)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not hi > lo:
        raise InputError("registration image is constant: nothing to register")
    mask = sitk.BinaryThreshold(image, lo + fraction * (hi - lo), float(np.finfo(np.float32).max), 1, 0)
    return sitk.BinaryDilate(mask, [int(dilation)] * 3) if dilation else mask


def _sampling_per_level(mask, shrink_factors, samples=SAMPLES_PER_LEVEL):
    """Fraction of each level's voxels to sample so that about ``samples`` points fall inside ``mask``.

    SimpleITK draws (fraction x all voxels of the level) random points and keeps those inside the mask."""
    n_mask = float(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    if n_mask == 0:
        raise InputError("registration mask is empty")
    return [float(min(1.0, samples * s ** 3 / n_mask)) for s in shrink_factors]


def _method(fixed_mask, shrink, sigmas_mm, seed, samples=SAMPLES_PER_LEVEL):
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentagePerLevel(_sampling_per_level(fixed_mask, shrink, samples), seed)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(sigmas_mm))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def _mask_image(mask, like):
    """The caller's mask (Volume on the fixed grid, or a SimpleITK image), or the foreground of ``like``."""
    if mask is None:
        return foreground_mask(like)
    if isinstance(mask, sitk.Image):
        return sitk.Cast(mask > 0, sitk.sitkUInt8)
    img = volume_to_sitk(mask.with_array(np.asarray(mask.array) > 0), dtype=np.uint8)
    return sitk.Cast(img, sitk.sitkUInt8)


def rigid_register(fixed, moving, *, seed=7, iterations=100, mask=None, samples=SAMPLES_PER_LEVEL):
    """(Euler3DTransform fixed -> moving, info dict) by multi-resolution mutual information.

    Parameters
    ----------
    fixed, moving : Volume (planning and post-treatment CT, or the activity images).
    seed : int, seed of the random metric samples (the same seed gives the same transform).
    iterations : int, most optimiser iterations per resolution level.
    mask : Volume on the fixed grid (non-zero: sampled) or a SimpleITK image, optional; default
        the fixed image's foreground (:func:`foreground_mask`).
    samples : int, random metric samples per level inside the mask.
    """
    f, m = _float_image(fixed), _float_image(moving)
    fmask = _mask_image(mask, f)
    init = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = _method(fmask, (4, 2, 1), (2.0, 1.0, 0.0), seed, samples)
    reg.SetOptimizerAsConjugateGradientLineSearch(learningRate=1.0, numberOfIterations=int(iterations), convergenceMinimumValue=1e-5,
                                                  convergenceWindowSize=5)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(init, inPlace=False)
    levels = []
    reg.AddCommand(sitk.sitkIterationEvent, lambda: levels.append(reg.GetCurrentLevel()))
    out = reg.Execute(f, m)
    tfm = sitk.Euler3DTransform(out.GetNthTransform(0) if isinstance(out, sitk.CompositeTransform) else out)
    info = {"method": "rigid (Euler 3-D), Mattes mutual information, 3 levels (shrink 4, 2, 1), masked random sampling",
            "metric_value": reg.GetMetricValue(), "iterations_per_level": [levels.count(k) for k in range(3)],
            "samples_per_level": int(samples), "seed": int(seed), "stop": reg.GetOptimizerStopConditionDescription(),
            **rigid_parameters(tfm)}
    return tfm, info


def bspline_refine(fixed, moving, rigid, *, mesh_size=4, seed=7, iterations=50, mask=None, samples=SAMPLES_PER_LEVEL):
    """(CompositeTransform rigid then B-spline, info): deformable refinement after ``rigid``."""
    f, m = _float_image(fixed), _float_image(moving)
    bs = sitk.BSplineTransformInitializer(f, [int(mesh_size)] * 3, order=3)
    reg = _method(_mask_image(mask, f), (2, 1), (1.0, 0.0), seed, samples)
    reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations)
    reg.SetMovingInitialTransform(rigid)
    reg.SetInitialTransform(bs, inPlace=True)
    reg.Execute(f, m)
    comp = sitk.CompositeTransform(3)
    comp.AddTransform(rigid)
    comp.AddTransform(bs)
    return comp, {"method": f"rigid + B-spline (mesh {mesh_size}^3, L-BFGS-B)", "metric_value": reg.GetMetricValue()}


def rigid_parameters(tfm):
    """Rotation angles (degrees), total rotation angle and translation (mm) of a rigid transform."""
    t = sitk.Euler3DTransform(tfm) if not isinstance(tfm, sitk.Euler3DTransform) else tfm
    r = np.asarray(t.GetMatrix()).reshape(3, 3)
    angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(r) - 1) / 2))))
    return {"angles_deg_xyz": [math.degrees(a) for a in (t.GetAngleX(), t.GetAngleY(), t.GetAngleZ())], "rotation_deg": angle,
            "translation_mm_xyz": list(t.GetTranslation()), "center_mm_xyz": list(t.GetCenter())}


def transform_error_mm(tfm_a, tfm_b, grid, n=2000, seed=0):
    """Largest distance (mm) between the images of points of ``grid`` under two transforms."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = grid.shape
    ijk = rng.uniform([0, 0, 0], [nx - 1, ny - 1, nz - 1], size=(n, 3))
    pts = (np.c_[ijk, np.ones(n)] @ grid.ijk_to_lps.T)[:, :3]
    return max(float(np.linalg.norm(np.subtract(tfm_a.TransformPoint(tuple(p)), tfm_b.TransformPoint(tuple(p))))) for p in pts)


def matrix_lps(tfm, tolerance_mm=1e-6):
    """4x4 homogeneous matrix (LPS mm) of a linear SimpleITK transform (Euler, versor, affine, or a
    composite of them): ``T(p) = M @ [p, 1]``.  InputError for a deformable (B-spline) transform."""
    origin = np.asarray(tfm.TransformPoint((0.0, 0.0, 0.0)))
    m = np.eye(4)
    m[:3, 3] = origin
    for i in range(3):
        e = np.zeros(3)
        e[i] = 100.0
        m[:3, i] = (np.asarray(tfm.TransformPoint(tuple(e))) - origin) / 100.0
    rng = np.random.default_rng(0)
    for p in rng.uniform(-300.0, 300.0, size=(8, 3)):
        if np.linalg.norm(np.asarray(tfm.TransformPoint(tuple(p))) - (m[:3, :3] @ p + m[:3, 3])) > tolerance_mm:
            raise InputError("the transform is not linear (deformable): it has no 4x4 matrix; use its .tfm file instead")
    return m


def transform_from_matrix_lps(matrix):
    """SimpleITK AffineTransform of a 4x4 homogeneous matrix (LPS mm); InputError when not 4x4 affine."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)) or not np.allclose(m[3], (0, 0, 0, 1)):
        raise InputError(f"transform matrix must be a finite 4x4 affine matrix, got {m.tolist()}")
    if abs(np.linalg.det(m[:3, :3])) < 1e-9:
        raise InputError("transform matrix is singular")
    t = sitk.AffineTransform(3)
    t.SetMatrix(tuple(float(v) for v in m[:3, :3].ravel()))
    t.SetTranslation(tuple(float(v) for v in m[:3, 3]))
    return t


def read_transform(path):
    """A SimpleITK transform from an ITK transform file; InputError naming the file when unreadable."""
    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        raise InputError(f"--transform {path}: not a readable ITK transform file ({str(exc).strip().splitlines()[-1]})") from None


def write_transform(tfm, path):
    sitk.WriteTransform(tfm, str(path))
    return str(path)


def resample_onto(volume, grid, tfm=None, interpolation="linear", default=0.0):
    """Values of ``volume`` (moving space) at the voxel centres of ``grid`` (fixed space) mapped by ``tfm``
    (interpolation: linear, nearest or bspline, cubic)."""
    ref = sitk.Image(int(grid.shape[2]), int(grid.shape[1]), int(grid.shape[0]), sitk.sitkFloat32)
    ref.SetSpacing(grid.spacing_mm)
    ref.SetOrigin(grid.origin_mm)
    ref.SetDirection(grid.direction)
    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}[interpolation]
    out = sitk.Resample(_float_image(volume), ref, tfm or sitk.Transform(), interp, float(default), sitk.sitkFloat32)
    return Volume(sitk.GetArrayFromImage(out), grid=grid, name=volume.name, unit=volume.unit)
