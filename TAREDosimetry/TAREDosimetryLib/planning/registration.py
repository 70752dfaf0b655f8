"""Registration of the post-treatment images to the planning ones (SimpleITK), and transforms.

Rigid: Euler 3-D transform, Mattes mutual information (50 bins, 5 % of the voxels sampled with a
fixed seed so a rerun gives the same result), three resolution levels (shrink 4, 2, 1; smoothing
2, 1, 0 mm), regular-step gradient descent with scales from physical shifts, started from the
images' centres of mass (moments).  Optional deformable refinement: a B-spline transform on a
coarse control grid, optimised with L-BFGS-B on the same metric, composed after the rigid one.

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

__all__ = ["rigid_register", "bspline_refine", "read_transform", "write_transform", "resample_onto", "rigid_parameters",
           "transform_error_mm"]


def _float_image(volume):
    return sitk.Cast(volume_to_sitk(volume, dtype=np.float32), sitk.sitkFloat32)


def _method(seed):
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.05, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def rigid_register(fixed, moving, *, seed=7, iterations=200):
    """(Euler3DTransform fixed -> moving, info dict) by multi-resolution mutual information.

    fixed, moving : Volume (planning and post-treatment CT, or the activity images).
    """
    f, m = _float_image(fixed), _float_image(moving)
    init = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = _method(seed)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4, numberOfIterations=iterations,
                                                 relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(init, inPlace=False)
    out = reg.Execute(f, m)
    tfm = sitk.Euler3DTransform(out.GetNthTransform(0) if isinstance(out, sitk.CompositeTransform) else out)
    info = {"method": "rigid (Euler 3-D), Mattes mutual information, 3 levels", "metric_value": reg.GetMetricValue(),
            "iterations": reg.GetOptimizerIteration(), "stop": reg.GetOptimizerStopConditionDescription(),
            **rigid_parameters(tfm)}
    return tfm, info


def bspline_refine(fixed, moving, rigid, *, mesh_size=4, seed=7, iterations=50):
    """(CompositeTransform rigid then B-spline, info): deformable refinement after ``rigid``."""
    f, m = _float_image(fixed), _float_image(moving)
    bs = sitk.BSplineTransformInitializer(f, [int(mesh_size)] * 3, order=3)
    reg = _method(seed)
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
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
