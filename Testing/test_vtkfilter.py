"""The VTK pipeline stage (TAREDosimetryLib.dose.vtkfilter) gives the engine's NumPy result."""

import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(REPO, "TAREDosimetry") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "TAREDosimetry"))

pytest.importorskip("vtkmodules.util.vtkAlgorithm", reason="vtk is not installed")

from vtkmodules.util import numpy_support  # noqa: E402
from vtkmodules.vtkCommonDataModel import vtkImageData  # noqa: E402

from TAREDosimetryLib.dose import vtkfilter  # noqa: E402
from TAREDosimetryLib.dose.ldm import ldm_dose_gy  # noqa: E402
from TAREDosimetryLib.dose.dvk import dvk_dose_gy  # noqa: E402
from TAREDosimetryLib.volume import Volume  # noqa: E402

SPACING = (4.42, 4.42, 2.5)
ORIGIN = (-10.0, 20.0, 5.0)
K = 49.67


def make_image(array, spacing=SPACING, origin=ORIGIN):
    """vtkImageData sharing memory with a (z, y, x) array."""
    nz, ny, nx = array.shape
    image = vtkImageData()
    image.SetDimensions(nx, ny, nz)
    image.SetSpacing(*spacing)
    image.SetOrigin(*origin)
    image.GetPointData().SetScalars(vtkfilter.array_to_image_scalars(array, "values"))
    return image


def activity_array(seed=0):
    rng = np.random.default_rng(seed)
    a = np.zeros((14, 12, 16), np.float32)
    a[3:11, 3:9, 4:12] = rng.random((8, 6, 8)).astype(np.float32) * 0.01
    return a


def output_array(f):
    out = f.GetOutput()
    nx, ny, nz = out.GetDimensions()
    return numpy_support.vtk_to_numpy(out.GetPointData().GetScalars()).reshape(nz, ny, nx), out


def test_image_to_volume_is_a_zyx_view():
    a = activity_array()
    image = make_image(a)
    vol = vtkfilter.image_to_volume(image)
    assert vol.shape == a.shape and vol.spacing_mm == SPACING and vol.origin_mm == ORIGIN
    assert np.shares_memory(vol.array, a)
    assert vol.array[2, 5, 7] == image.GetScalarComponentAsDouble(7, 5, 2, 0)


@pytest.mark.parametrize("method", ["ldm", "dvk"])
def test_filter_output_equals_engine_result(method):
    a = activity_array()
    f = vtkfilter.TAREDoseFilter(method=method, device="cpu", k_gy_kg_per_gbq=K, tissue_density_g_ml=1.03)
    f.SetInputData(make_image(a))
    f.Update()
    dose, out = output_array(f)
    vol = Volume(a, SPACING, ORIGIN)
    if method == "ldm":
        expected = ldm_dose_gy(vol, 1.03, K).array
    else:
        expected = dvk_dose_gy(vol, density_g_ml=1.03, k_gy_kg_per_gbq=K, device="cpu").array
    assert np.array_equal(dose, expected)
    assert out.GetSpacing() == SPACING and out.GetOrigin() == ORIGIN and out.GetDimensions() == (16, 12, 14)
    assert out.GetPointData().GetScalars().GetName() == "dose_Gy"


def test_filter_uses_the_density_port():
    a = activity_array(1)
    rho = np.full(a.shape, 1.04, np.float32)
    rho[:, :, 8:] = 0.3
    f = vtkfilter.TAREDoseFilter(method="dvk", device="cpu", k_gy_kg_per_gbq=K)
    f.SetInputData(0, make_image(a))
    f.SetInputData(1, make_image(rho))
    f.Update()
    dose, _ = output_array(f)
    vol = Volume(a, SPACING, ORIGIN)
    expected = dvk_dose_gy(vol, density_g_ml=Volume(rho, grid=vol.grid), k_gy_kg_per_gbq=K, device="cpu").array
    assert np.array_equal(dose, expected)


def test_filter_lung_mask_port_keeps_local_deposition_in_lung():
    a = activity_array(3)
    rho = np.full(a.shape, 1.04, np.float32)
    rho[:, :, 8:] = 0.3
    lung = np.zeros(a.shape, np.uint8)
    lung[:, :, 8:] = 1
    f = vtkfilter.TAREDoseFilter(method="dvk", device="cpu", k_gy_kg_per_gbq=K, lung_mode="ldm")
    f.SetInputData(0, make_image(a))
    f.SetInputData(1, make_image(rho))
    f.SetInputData(2, make_image(lung))
    f.Update()
    dose, _ = output_array(f)
    vol = Volume(a, SPACING, ORIGIN)
    expected = dvk_dose_gy(vol, density_g_ml=Volume(rho, grid=vol.grid), k_gy_kg_per_gbq=K, device="cpu",
                           lung_mask=lung.astype(bool), lung_mode="ldm").array
    assert np.array_equal(dose, expected)
    kernel_everywhere = dvk_dose_gy(vol, density_g_ml=Volume(rho, grid=vol.grid), k_gy_kg_per_gbq=K, device="cpu").array
    assert not np.array_equal(dose, kernel_everywhere)  # the mask port is really used
    assert f.GetLungMode() == "ldm"
    with pytest.raises(Exception, match="lung_mode"):
        f.SetLungMode("air")


def test_changing_an_option_reexecutes():
    a = activity_array(2)
    f = vtkfilter.TAREDoseFilter(method="ldm", k_gy_kg_per_gbq=K)
    f.SetInputData(make_image(a))
    f.Update()
    d1 = output_array(f)[0].copy()
    f.SetK(2 * K)
    f.Update()
    d2 = output_array(f)[0]
    np.testing.assert_allclose(d2, 2 * d1, rtol=1e-6)
    assert f.GetK() == 2 * K and f.GetMethod() == "ldm"


def test_bad_options_are_rejected():
    from TAREDosimetryLib.errors import InputError

    with pytest.raises(InputError, match="method"):
        vtkfilter.TAREDoseFilter(method="mc")
    with pytest.raises(InputError, match="device"):
        vtkfilter.TAREDoseFilter(device="tpu")
