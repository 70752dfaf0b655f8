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


# -- a proper pipeline stage: errors, geometry, every parameter, progress, abort, device ----------------

def test_the_engines_own_message_arrives_instead_of_an_empty_output():
    """VTK's Python algorithm prints and drops an exception raised in RequestData; the filter keeps it
    and UpdateOrRaise re-raises it, so the caller sees the engine's message, not a None output."""
    from TAREDosimetryLib.errors import InputError

    a = activity_array()
    f = vtkfilter.TAREDoseFilter(method="dvk", device="cpu")
    f.SetInputData(0, make_image(a))
    f.SetInputData(1, make_image(np.ones((3, 3, 3), np.float32)))
    with pytest.raises(InputError, match=r"density image dimensions \(3, 3, 3\) differ"):
        f.UpdateOrRaise()
    assert isinstance(f.GetLastError(), InputError)
    f.SetInputData(1, make_image(np.full(a.shape, 1.03, np.float32)))
    f.UpdateOrRaise()  # fixed input: runs again, error cleared
    assert f.GetLastError() is None


def test_gpu_without_cupy_says_what_is_missing():
    from TAREDosimetryLib.dose.backend import gpu_status
    from TAREDosimetryLib.errors import GPUUnavailableError

    if gpu_status()[0]:
        pytest.skip("a GPU is usable here: the 'no GPU' message cannot be produced")
    f = vtkfilter.TAREDoseFilter(method="dvk", device="gpu")
    f.SetInputData(make_image(activity_array()))
    with pytest.raises(GPUUnavailableError, match="no GPU is usable"):
        f.UpdateOrRaise()


def test_full_geometry_in_and_out():
    """Direction matrix and an extent that does not start at 0 survive the filter; the engine sees
    the physical position of the first voxel as its origin."""
    a = activity_array(4)
    image = make_image(a)
    image.SetDirectionMatrix(0, 1, 0, 1, 0, 0, 0, 0, -1)
    nz, ny, nx = a.shape
    image.SetExtent(2, 2 + nx - 1, -1, ny - 2, 5, 5 + nz - 1)
    vol = vtkfilter.image_to_volume(image)
    expected_origin = np.asarray(ORIGIN) + np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]]) @ (np.array([2, -1, 5]) * SPACING)
    np.testing.assert_allclose(vol.origin_mm, expected_origin)
    assert vol.direction == (0, 1, 0, 1, 0, 0, 0, 0, -1)
    f = vtkfilter.TAREDoseFilter(method="ldm", k_gy_kg_per_gbq=K)
    f.SetInputData(image)
    out = f.UpdateOrRaise()
    assert out.GetExtent() == image.GetExtent() and out.GetOrigin() == image.GetOrigin()
    assert out.GetSpacing() == image.GetSpacing()
    m = out.GetDirectionMatrix()
    assert [m.GetElement(r, c) for r in range(3) for c in range(3)] == [0, 1, 0, 1, 0, 0, 0, 0, -1]
    dose = vtkfilter.image_to_volume(out, "dose")
    assert dose.grid.same_as(vol.grid)


def test_volume_to_image_round_trip_keeps_the_grid():
    vol = Volume(activity_array(5), SPACING, ORIGIN, (0, -1, 0, 1, 0, 0, 0, 0, 1))
    back = vtkfilter.image_to_volume(vtkfilter.volume_to_image(vol))
    assert back.grid.same_as(vol.grid) and np.shares_memory(back.array, vol.array)


def test_kernel_radius_is_honoured():
    a = activity_array(6)
    vol = Volume(a, SPACING, ORIGIN)
    f = vtkfilter.TAREDoseFilter(method="dvk", device="cpu", k_gy_kg_per_gbq=K, radius_mm=6.0)
    f.SetInputData(make_image(a))
    f.UpdateOrRaise()
    dose, _ = output_array(f)
    expected = dvk_dose_gy(vol, density_g_ml=1.03, k_gy_kg_per_gbq=K, device="cpu", radius_mm=6.0).array
    default = dvk_dose_gy(vol, density_g_ml=1.03, k_gy_kg_per_gbq=K, device="cpu").array
    assert np.array_equal(dose, expected) and not np.array_equal(dose, default)
    assert f.GetRadius() == 6.0
    with pytest.raises(Exception, match="radius_mm"):
        f.SetRadius(0)


def test_set_parameters_takes_every_dose_setting():
    from TAREDosimetryLib.params import DosimetryParams

    p = DosimetryParams(method="dvk", device="cpu", k_gy_kg_per_gbq=50.0, tissue_density_g_ml=1.06,
                        dvk_lung_mode="ldm", dvk_radius_mm=9.0)
    f = vtkfilter.TAREDoseFilter()
    f.SetParameters(p)
    assert (f.GetMethod(), f.GetDevice(), f.GetK(), f.GetTissueDensity(), f.GetLungMode(), f.GetRadius()) == \
        ("dvk", "cpu", 50.0, 1.06, "ldm", 9.0)


def test_progress_events_and_device_used():
    from vtkmodules.vtkCommonCore import vtkCommand

    from TAREDosimetryLib.dose.backend import get_backend

    f = vtkfilter.TAREDoseFilter(method="dvk", device="cpu")
    f.SetInputData(make_image(activity_array()))
    seen = []
    f.AddObserver(vtkCommand.ProgressEvent, lambda obj, event: seen.append((obj.GetProgress(), obj.GetProgressText())))
    f.UpdateOrRaise()
    fractions = [p for p, _ in seen]
    assert len(seen) >= 5 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("FFT" in (text or "") for _, text in seen)
    assert f.GetDeviceUsed() == get_backend("cpu").description
    f.SetMethod("ldm")
    f.UpdateOrRaise()
    assert f.GetDeviceUsed() == vtkfilter.LDM_DEVICE


def test_abort_from_a_progress_observer_stops_with_cancelled_error():
    from vtkmodules.vtkCommonCore import vtkCommand

    from TAREDosimetryLib.errors import CancelledError

    f = vtkfilter.TAREDoseFilter(method="dvk", device="cpu")
    f.SetInputData(make_image(activity_array()))
    seen = []

    def observer(obj, event):
        seen.append(obj.GetProgressText() or "")
        if obj.GetProgress() >= 0.2:
            obj.AbortExecuteOn()

    tag = f.AddObserver(vtkCommand.ProgressEvent, observer)
    with pytest.raises(CancelledError, match="stopped"):
        f.UpdateOrRaise()
    assert not any("inverse FFT" in text for text in seen)  # stopped at the first stage after the request
    f.RemoveObserver(tag)
    f.Modified()
    f.UpdateOrRaise()  # the abort flag does not stick to later runs
    assert f.GetLastError() is None
