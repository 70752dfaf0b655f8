"""DVK dose maps (TAREDosimetryLib.dose.dvk) and the array backend (TAREDosimetryLib.dose.backend).

Expected values come from conservation (total energy = K sum A), the LDM dose in uniform regions
(D = K A / m), the kernel itself (point source) and scipy.signal.fftconvolve in float64.
"""

import os
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.signal import fftconvolve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(REPO, "TAREDosimetry") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "TAREDosimetry"))

from TAREDosimetryLib.dose import backend, dvk, kernels  # noqa: E402
from TAREDosimetryLib.dose.dosemap import dose_map_gy  # noqa: E402
from TAREDosimetryLib.dose.ldm import ldm_dose_gy  # noqa: E402
from TAREDosimetryLib.errors import GPUUnavailableError, InputError  # noqa: E402
from TAREDosimetryLib.params import DosimetryParams  # noqa: E402
from TAREDosimetryLib.volume import Volume  # noqa: E402

K = 49.67
RHO = 1.03
GPU_OK, GPU_WHY = backend.gpu_status()
needs_gpu = pytest.mark.skipif(not GPU_OK, reason=f"no usable GPU: {GPU_WHY}")


def mass_kg(vol, rho):
    return np.asarray(rho, dtype=np.float64) * vol.voxel_volume_ml * 1e-3


def point_source(shape, spacing, at=None, gbq=1.0):
    a = np.zeros(shape, np.float32)
    a[tuple(s // 2 for s in shape) if at is None else at] = gbq
    return Volume(a, spacing)


# --------------------------------------------------------------------------- point source, LDM
def test_point_source_reproduces_the_kernel():
    spacing = (4.42, 4.42, 2.5)
    vol = point_source((21, 15, 17), spacing, gbq=2.0)
    dose = dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    f = kernels.voxel_energy_fractions(spacing, RHO)
    nz, ny, nx = (s // 2 for s in f.shape)
    cz, cy, cx = 10, 7, 8
    window = dose[cz - nz : cz + nz + 1, cy - ny : cy + ny + 1, cx - nx : cx + nx + 1]
    expected = K * 2.0 / mass_kg(vol, RHO) * f
    assert_allclose(window, expected, rtol=1e-4, atol=1e-6 * expected.max())
    outside = dose.copy()
    outside[cz - nz : cz + nz + 1, cy - ny : cy + ny + 1, cx - nx : cx + nx + 1] = 0
    assert np.abs(outside).max() < 1e-6 * expected.max()


def test_point_source_in_s_value_units():
    """With K = 1e9 tau E_dpk the kernel dose per cumulated activity is S (mGy/(MBq s))."""
    spacing = (3.0, 3.0, 3.0)
    e_kernel_mev = kernels.kernel_energy_mev(spacing, 1.04)
    k_kernel = e_kernel_mev * 1.602176634e-13 * 1e9  # J per GBq s of cumulated activity
    vol = point_source((15, 15, 15), spacing, gbq=1.0)  # read as 1 GBq s cumulated
    dose = dvk.dvk_dose_gy(vol, density_g_ml=1.04, k_gy_kg_per_gbq=k_kernel, device="cpu").array
    s = kernels.voxel_s_values(spacing, 1.04)
    assert_allclose(dose[7, 7, 7], s[4, 4, 4], rtol=1e-5)  # Gy/(GBq s) = mGy/(MBq s)
    assert_allclose(dose[7, 7, 8], s[4, 4, 5], rtol=1e-5)


def test_no_wrap_around_at_the_image_border():
    vol = point_source((12, 12, 12), (2.0, 2.0, 2.0), at=(0, 0, 0))
    dose = dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    assert dose[0, 0, 0] == dose.max()
    assert np.abs(dose[-3:, :, :]).max() < 1e-6 * dose.max()  # beyond the 12 mm kernel
    assert np.abs(dose[:, :, -3:]).max() < 1e-6 * dose.max()


def test_dose_is_never_negative_for_nonnegative_activity():
    rng = np.random.default_rng(9)
    a = np.zeros((20, 20, 20), np.float32)
    a[5:9, 5:9, 5:9] = rng.random((4, 4, 4))
    dose = dvk.dvk_dose_gy(Volume(a, (2.0, 2.0, 2.0)), density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    assert dose.min() >= 0.0


def test_uniform_region_interior_equals_ldm():
    a = np.zeros((40, 40, 40), np.float32)
    a[4:36, 4:36, 4:36] = 0.01
    vol = Volume(a, (3.0, 3.0, 3.0))
    dose = dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    ldm = ldm_dose_gy(vol, RHO, K).array
    interior = (slice(10, 30),) * 3  # > 12 mm from the edge of the region
    assert_allclose(dose[interior], ldm[interior], rtol=0.005)
    assert_allclose(dose[interior], ldm[interior], rtol=1e-5)  # in fact float32 round-off only


def test_total_energy_is_conserved():
    rng = np.random.default_rng(1)
    a = np.zeros((30, 34, 32), np.float32)
    a[8:22, 9:25, 8:24] = rng.gamma(2.0, 0.01, size=(14, 16, 16))
    vol = Volume(a, (2.0, 2.5, 3.0))
    dose = dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    deposited = float((dose.astype(np.float64) * mass_kg(vol, RHO)).sum())
    assert_allclose(deposited, K * a.sum(dtype=np.float64), rtol=1e-5)


def test_dose_scales_linearly_with_activity_and_k():
    rng = np.random.default_rng(2)
    vol = Volume(rng.random((16, 18, 20)).astype(np.float32), (4.0, 4.0, 4.0))
    d1 = dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    d2 = dvk.dvk_dose_gy(vol.with_array(vol.array * 3), density_g_ml=RHO, k_gy_kg_per_gbq=2 * K, device="cpu").array
    assert_allclose(d2, 6 * d1, rtol=1e-5, atol=1e-6 * d1.max())


# --------------------------------------------------------------------------- convolution
@pytest.mark.parametrize("spacing", [(4.42, 4.42, 2.5), (2.0, 3.0, 5.0)])
def test_matches_scipy_fftconvolve_in_float64(spacing):
    rng = np.random.default_rng(3)
    a = rng.gamma(1.5, 1.0, size=(23, 29, 31))
    f = np.array(kernels.voxel_energy_fractions(spacing, RHO))
    ref = fftconvolve(a, f, mode="same")
    ours32 = dvk.convolve_fft(a, f, "cpu")
    ours64 = dvk.convolve_fft(a, f, "cpu", dtype=np.float64)
    assert ours32.dtype == np.float32 and ours32.shape == a.shape
    assert np.abs(ours32 - ref).max() / ref.max() < 1e-4
    assert np.abs(ours64 - ref).max() / ref.max() < 1e-12


def test_convolve_fft_with_any_kernel():
    """Non-symmetric kernels (complex spectrum path) and kernels larger than the image."""
    rng = np.random.default_rng(4)
    a = rng.random((9, 10, 11))
    k = rng.random((5, 3, 7))
    assert_allclose(dvk.convolve_fft(a, k, dtype=np.float64), fftconvolve(a, k, mode="same"), atol=1e-12)
    big = rng.random((31, 3, 25))
    big = (big + big[::-1, ::-1, ::-1]) / 2  # even but not mirror-symmetric per axis
    assert_allclose(dvk.convolve_fft(a, big, dtype=np.float64), fftconvolve(a, big, mode="same"), atol=1e-11)


def test_anisotropic_axis_order():
    """spacing (x, y, z) = (4.42, 4.42, 2.5): dose spreads over more voxels along z (axis 0),
    and transposing the image (with its spacing) transposes the dose."""
    spacing = (4.42, 4.42, 2.5)
    vol = point_source((15, 15, 15), spacing)
    dose = dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    c = 7
    assert dose[c + 1, c, c] > dose[c, c, c + 1]
    assert (dose[:, c, c] > 1e-6 * dose.max()).sum() > (dose[c, c, :] > 1e-6 * dose.max()).sum()
    rng = np.random.default_rng(5)
    a = rng.random((12, 14, 16)).astype(np.float32)
    d = dvk.dvk_dose_gy(Volume(a, spacing), density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    at = np.ascontiguousarray(a.transpose(2, 1, 0))
    dt = dvk.dvk_dose_gy(Volume(at, spacing[::-1]), density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    assert_allclose(dt, d.transpose(2, 1, 0), rtol=1e-5, atol=1e-6 * d.max())


def test_direction_matrix_does_not_change_the_dose():
    rng = np.random.default_rng(6)
    a = rng.random((10, 12, 14)).astype(np.float32)
    lps = Volume(a, (4.42, 4.42, 2.5))
    flipped = Volume(a, (4.42, 4.42, 2.5), (10.0, -20.0, 5.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    d1 = dvk.dvk_dose_gy(lps, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu")
    d2 = dvk.dvk_dose_gy(flipped, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu")
    assert np.array_equal(d1.array, d2.array)
    assert d2.grid == flipped.grid and d2.unit == "Gy"


def test_same_input_gives_bit_identical_dose():
    rng = np.random.default_rng(7)
    vol = Volume(rng.random((20, 22, 24)).astype(np.float32), (3.0, 3.0, 3.0))
    d1 = dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    kernels.clear_kernel_cache()
    d2 = dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    assert d1.tobytes() == d2.tobytes()


# --------------------------------------------------------------------------- density, lung
def lung_liver_phantom(lung_activity=0.0):
    """x < 20: liver (1.04 g/mL), x >= 20: lung (0.30 g/mL); 3 mm voxels; activity 0.01 GBq
    per liver voxel away from the image border."""
    shape = (36, 36, 40)
    rho = np.full(shape, 1.04, np.float32)
    rho[:, :, 20:] = 0.30
    a = np.zeros(shape, np.float32)
    a[4:32, 4:32, 4:20] = 0.01
    a[4:32, 4:32, 20:36] = lung_activity
    vol = Volume(a, (3.0, 3.0, 3.0))
    return vol, Volume(rho, grid=vol.grid), (rho < 0.6)


def test_density_map_uniform_regions_give_ldm_and_conserve_energy():
    vol, rho, lung = lung_liver_phantom(lung_activity=0.002)
    dose = dvk.dvk_dose_gy(vol, density_g_ml=rho, k_gy_kg_per_gbq=K, device="cpu").array
    ldm = ldm_dose_gy(vol, rho, K).array
    liver_core = (slice(12, 24), slice(12, 24), slice(6, 12))
    lung_core = (slice(12, 24), slice(12, 24), slice(30, 33))  # > 12/0.3 mm... from the border
    assert_allclose(dose[liver_core], ldm[liver_core], rtol=0.005)
    assert_allclose(dose[lung_core].mean(), ldm[lung_core].mean(), rtol=0.05)
    deposited = float((dose.astype(np.float64) * mass_kg(vol, rho.array)).sum())
    emitted = K * float(vol.array.sum(dtype=np.float64))
    # the lung kernel (0.3 g/mL) reaches 40 mm: some energy leaves the 120 mm image
    assert 0.97 * emitted < deposited <= emitted * (1 + 1e-5)


def test_lung_next_to_liver_gets_interface_dose_only():
    vol, rho, lung = lung_liver_phantom(lung_activity=0.0)
    dose = dvk.dvk_dose_gy(vol, density_g_ml=rho, k_gy_kg_per_gbq=K, device="cpu").array
    profile = dose[18, 18, :]
    assert profile[20] > profile[21] > profile[23] > 0  # falls off into the lung
    assert profile[27] < 1e-3 * profile[10]  # > 12 mm from the interface
    deposited = float((dose.astype(np.float64) * mass_kg(vol, rho.array)).sum())
    assert_allclose(deposited, K * float(vol.array.sum(dtype=np.float64)), rtol=1e-5)


def test_lung_mode_ldm_keeps_local_deposition_in_lung():
    vol, rho, lung = lung_liver_phantom(lung_activity=0.002)
    dose = dvk.dvk_dose_gy(vol, density_g_ml=rho, k_gy_kg_per_gbq=K, device="cpu", lung_mask=lung, lung_mode="ldm").array
    ldm = ldm_dose_gy(vol, rho, K).array
    assert_allclose(dose[lung], ldm[lung], rtol=1e-6)
    kernel_mode = dvk.dvk_dose_gy(vol, density_g_ml=rho, k_gy_kg_per_gbq=K, device="cpu", lung_mask=lung).array
    assert not np.allclose(kernel_mode[lung], ldm[lung], rtol=1e-3)


def uniform_dose_liver_lung():
    """The liver/lung phantom with lung activity in proportion to density: LDM gives one dose everywhere."""
    return lung_liver_phantom(lung_activity=0.01 * 0.30 / 1.04)


def test_kernel_mode_at_the_liver_lung_interface_is_as_documented():
    """docs/dvk.md: on a uniform-dose liver (1.04 g/mL) / lung (0.30 g/mL) phantom with 3 mm voxels,
    the homogeneous, density-scaled kernel gives the last liver voxel -9 % and the first lung
    voxel +32 % against the uniform LDM dose (the tissue kernel's energy in lung is divided by
    the lung mass); 4 voxels (12 mm) away both sides are within 4 %."""
    vol, rho, lung = uniform_dose_liver_lung()
    ldm = ldm_dose_gy(vol, rho, K).array
    dose = dvk.dvk_dose_gy(vol, density_g_ml=rho, k_gy_kg_per_gbq=K, device="cpu", lung_mask=lung).array
    dev = {x: dose[18, 18, x] / ldm[18, 18, x] - 1 for x in (15, 19, 20, 24)}
    assert dev[19] == pytest.approx(-0.094, abs=0.005)
    assert dev[20] == pytest.approx(+0.324, abs=0.005)
    assert abs(dev[15]) < 0.04 and abs(dev[24]) < 0.06


def test_ldm_lung_mode_keeps_the_tissue_energy_that_would_enter_the_lung():
    """lung_mode='ldm': lung voxels keep local deposition, and the energy the tissue kernel would
    carry into them stays in the source voxel.  A uniform liver then keeps its LDM dose up to
    the interface (the boundary voxel lost 19 % before), and energy is conserved."""
    vol, rho, lung = uniform_dose_liver_lung()
    ldm = ldm_dose_gy(vol, rho, K).array
    dose = dvk.dvk_dose_gy(vol, density_g_ml=rho, k_gy_kg_per_gbq=K, device="cpu", lung_mask=lung, lung_mode="ldm").array
    interior = (slice(10, 26), slice(10, 26), slice(10, 30))  # > 12 mm from the edges of the activity
    assert_allclose(dose[interior], ldm[interior], rtol=1e-5)
    for activity_in_lung in (0.0, 0.002):
        vol, rho, lung = lung_liver_phantom(lung_activity=activity_in_lung)
        dose = dvk.dvk_dose_gy(vol, density_g_ml=rho, k_gy_kg_per_gbq=K, device="cpu", lung_mask=lung, lung_mode="ldm").array
        deposited = float((dose.astype(np.float64) * mass_kg(vol, rho.array)).sum())
        assert_allclose(deposited, K * float(vol.array.sum(dtype=np.float64)), rtol=1e-5)
        assert_allclose(dose[18, 18, 19], ldm_dose_gy(vol, rho, K).array[18, 18, 19], rtol=1e-5)  # the last liver voxel


def test_constant_density_map_equals_scalar_density():
    vol, _, _ = lung_liver_phantom()
    rho = Volume(np.full(vol.shape, RHO, np.float32), grid=vol.grid)
    d1 = dvk.dvk_dose_gy(vol, density_g_ml=rho, k_gy_kg_per_gbq=K, device="cpu").array
    d2 = dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="cpu").array
    assert_allclose(d1, d2, rtol=1e-6, atol=1e-7 * d2.max())  # float32 1.03 vs float 1.03


def test_dose_map_gy_dispatches_to_dvk_with_params():
    vol, rho, lung = lung_liver_phantom(lung_activity=0.001)
    params = DosimetryParams(method="dvk", device="cpu", dvk_lung_mode="ldm")
    calls = []
    dose = dose_map_gy(vol, rho, params, lung_mask=lung, progress=lambda f, m: calls.append(f))
    assert dose.unit == "Gy" and dose.array.dtype == np.float32 and dose.shape == vol.shape
    assert calls[0] == 0.0 and calls[-1] == 1.0


# --------------------------------------------------------------------------- bad input, devices
def test_bad_inputs_are_rejected():
    vol, rho, lung = lung_liver_phantom()
    with pytest.raises(InputError, match="lung_mask"):
        dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, lung_mask=lung[:-1], lung_mode="ldm")
    with pytest.raises(InputError, match="lung_mode"):
        dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, lung_mode="monte-carlo")
    with pytest.raises(InputError, match="device"):
        dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="tpu")
    with pytest.raises(InputError, match="k_gy_kg_per_gbq"):
        dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=-1)
    with pytest.raises(InputError, match="density_g_ml"):
        dvk.dvk_dose_gy(vol, density_g_ml=0.0, k_gy_kg_per_gbq=K)
    with pytest.raises(InputError, match="activity grid"):
        dvk.dvk_dose_gy(vol, density_g_ml=Volume(rho.array, (2.0, 2.0, 2.0)), k_gy_kg_per_gbq=K)
    with pytest.raises(InputError, match="Volume"):
        dvk.dvk_dose_gy(vol.array, density_g_ml=RHO, k_gy_kg_per_gbq=K)
    nan = vol.array.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        dvk.dvk_dose_gy(vol.with_array(nan), density_g_ml=RHO, k_gy_kg_per_gbq=K)
    with pytest.raises(InputError, match="odd"):
        dvk.convolve_fft(vol.array, np.ones((2, 3, 3)))
    with pytest.raises(InputError, match="3-D"):
        dvk.convolve_fft(vol.array[0], np.ones((3, 3, 3)))


@pytest.mark.skipif(GPU_OK, reason="a GPU is usable here; the no-GPU error cannot be shown")
def test_gpu_request_without_gpu_raises_a_clear_error():
    with pytest.raises(GPUUnavailableError, match="no GPU is usable"):
        backend.get_backend("gpu")
    vol = point_source((8, 8, 8), (3.0, 3.0, 3.0))
    with pytest.raises(GPUUnavailableError):
        dvk.dvk_dose_gy(vol, density_g_ml=RHO, k_gy_kg_per_gbq=K, device="gpu")
    assert backend.get_backend("auto").name == "cpu"


def test_cpu_backend_uses_all_cores():
    be = backend.get_backend("cpu")
    assert be.name == "cpu" and be.workers == backend.cpu_workers() >= 1
    x = np.arange(5.0)
    assert be.to_numpy(be.asarray(x)) is x  # no copies on the CPU


@needs_gpu
def test_gpu_dose_equals_cpu_dose():
    vol, rho, lung = lung_liver_phantom(lung_activity=0.002)
    for density, lung_mode in ((RHO, "kernel"), (rho, "kernel"), (rho, "ldm")):
        kw = dict(density_g_ml=density, k_gy_kg_per_gbq=K, lung_mask=lung, lung_mode=lung_mode)
        cpu = dvk.dvk_dose_gy(vol, device="cpu", **kw).array
        gpu = dvk.dvk_dose_gy(vol, device="gpu", **kw).array
        assert isinstance(gpu, np.ndarray) and gpu.dtype == np.float32
        assert np.abs(gpu - cpu).max() < 1e-5 * cpu.max()


@needs_gpu
def test_gpu_convolution_matches_fftconvolve():
    rng = np.random.default_rng(8)
    a = rng.random((40, 50, 60))
    f = np.array(kernels.voxel_energy_fractions((1.0, 1.0, 1.0), RHO))
    ref = fftconvolve(a, f, mode="same")
    out = dvk.convolve_fft(a, f, "gpu")
    assert np.abs(out - ref).max() / ref.max() < 1e-4


# -- offering GPU support: which CuPy wheel for which driver ------------------------------------------

def test_cuda_version_is_read_from_nvidia_smi_output():
    from TAREDosimetryLib.dose import backend

    text = "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |"
    assert backend.parse_nvidia_smi_cuda_version(text) == (12, 4)
    assert backend.parse_nvidia_smi_cuda_version("NVIDIA-SMI has failed") is None
    assert backend.cupy_requirement((12, 4)) == "cupy-cuda12x"
    assert backend.cupy_requirement((13, 0)) == "cupy-cuda12x"
    assert backend.cupy_requirement((11, 8)) == "cupy-cuda11x"
    assert backend.cupy_requirement((11, 0)) is None and backend.cupy_requirement(None) is None


def test_no_nvidia_smi_means_no_driver(monkeypatch):
    from TAREDosimetryLib.dose import backend

    monkeypatch.setattr(backend.shutil, "which", lambda name: None)
    backend.nvidia_driver_cuda_version.cache_clear()
    try:
        assert backend.nvidia_driver_cuda_version() is None
    finally:
        backend.nvidia_driver_cuda_version.cache_clear()


def test_small_grids_use_numpy_fft_and_agree_with_scipy_fft(monkeypatch):
    """Below NUMPY_FFT_MAX_VOXELS the CPU transforms go through numpy.fft (no scipy.fft import);
    both paths give the same convolution to float32 round-off."""
    rng = np.random.default_rng(4)
    a = rng.random((20, 24, 28)).astype(np.float32)
    k = kernels.voxel_energy_fractions((2.0, 2.0, 2.0), 1.04)
    small = dvk.convolve_fft(a, k, "cpu")
    monkeypatch.setattr(backend, "NUMPY_FFT_MAX_VOXELS", 0)  # every transform through scipy.fft
    large = dvk.convolve_fft(a, k, "cpu")
    assert small.dtype == large.dtype == np.float32
    assert np.abs(small - large).max() <= 1e-6 * np.abs(large).max()
    assert all(backend.next_fast_len(n) >= n for n in range(1, 300))


# --------------------------------------------------------------------------- density classes, one spectrum
def _two_class_case(shape=(40, 36, 44), spacing=(3.0, 3.0, 3.0)):
    """Random activity; lung (0.3 g/mL) in a corner box, tissue (1.04 g/mL) elsewhere."""
    rng = np.random.default_rng(11)
    a = rng.gamma(1.5, 1.0, size=shape).astype(np.float32)
    rho = np.full(shape, 1.04, np.float32)
    rho[:12, 20:, :15] = 0.3
    return a, rho, spacing


@pytest.mark.parametrize("numpy_fft, spacing", [(True, (3.0, 3.0, 3.0)), (False, (3.0, 3.0, 3.0)), (True, (2.0, 3.5, 4.5))])
def test_density_classes_equal_the_float64_sum_of_class_convolutions(monkeypatch, numpy_fft, spacing):
    """Each class convolved on its own box (the lung class on its corner grown by its kernel's
    reach), the results summed in the whole-grid class's spectrum memory, slab by slab: the same as
    sum_c fftconvolve(A_c, f_c) in float64 on the whole grid, to float32 round-off."""
    a, rho, _ = _two_class_case()
    a[2, 30, 3] = -0.5  # a negative voxel (noise) in the lung class counts as activity
    monkeypatch.setattr(dvk, "_SLAB_VALUES", 3000)  # many slabs of planes
    monkeypatch.setattr(backend, "_NUMPY_BLOCK_VALUES", 2000)
    if not numpy_fft:
        monkeypatch.setattr(backend, "NUMPY_FFT_MAX_VOXELS", 0)
    classes = dvk._source_classes(a, rho, spacing, None)
    assert [c[2]["class"] for c in classes] == ["tissue", "low-density"]
    assert classes[1][3] == (0, 12, 20, 36, 0, 15)  # the lung's extent
    ref = np.zeros(a.shape)
    for name, (_, f, _info, _) in zip(("tissue", "low"), classes):
        low = rho < dvk.LOW_DENSITY_CLASS_G_ML
        ref += fftconvolve(np.where(low if name == "low" else ~low, a, 0).astype(np.float64), f, mode="same")
    ours, _ = dvk._convolved_activity(a, rho, spacing, None, backend.get_backend("cpu"))
    assert ours.dtype == np.float32 and ours.shape == a.shape
    assert np.abs(ours - ref).max() <= 2e-6 * ref.max()


def test_two_density_classes_need_no_more_memory_than_one(monkeypatch):
    """The lung class is convolved on its box first; the tissue class's spectrum then holds the
    output: the peak of the whole DVK dose (numpy allocations, tracemalloc) stays within that of a
    uniform density plus the lung box's share, under one full spectrum plus an output."""
    import tracemalloc

    monkeypatch.setattr(dvk, "_SLAB_VALUES", 4096)  # small slab temporaries: the full-size arrays show
    monkeypatch.setattr(backend, "_NUMPY_BLOCK_VALUES", 4096)
    a, rho, spacing = _two_class_case((64, 64, 64))
    vol = Volume(a, spacing)
    dens = Volume(rho, grid=vol.grid)

    def peak(density):
        dvk.dvk_dose_gy(vol, density_g_ml=density, k_gy_kg_per_gbq=K, device="cpu")  # kernels cached
        tracemalloc.start()
        try:
            dvk.dvk_dose_gy(vol, density_g_ml=density, k_gy_kg_per_gbq=K, device="cpu")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    one, two = peak(1.04), peak(dens)
    full_spectrum = 8 * np.prod([backend.next_fast_len(n + 13) for n in a.shape]) / 2  # the lung kernel's reach: 13 voxels
    assert two <= 1.5 * one  # measured: 1.3
    assert two < full_spectrum + a.nbytes  # two spectra and an output before (about 3x this)


def test_fft_in_place_equals_numpy_fft(monkeypatch):
    rng = np.random.default_rng(5)
    x = (rng.random((12, 10, 9)) + 1j * rng.random((12, 10, 9))).astype(np.complex64)
    monkeypatch.setattr(backend, "_NUMPY_BLOCK_VALUES", 100)  # several blocks
    be = backend.get_backend("cpu")
    for axis in (0, 1, 2):
        for inverse in (False, True):
            y = x.copy()
            got = be.fft_in_place(y, axis, inverse=inverse)
            want = (np.fft.ifft if inverse else np.fft.fft)(x, axis=axis)
            assert np.shares_memory(got, y)
            assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


class _DeviceFFT:
    """Stand-in for cupyx.scipy.fft with CuPy's layout rules (cupy/fft/_fft.py, _exec_fft): a
    transform along a non-last axis swaps that axis last, works on a copy when the array is a view
    or not C-contiguous (so ``overwrite_x`` never reaches the caller's array then), and returns the
    result swapped back (not C-contiguous)."""

    @staticmethod
    def _pad(x, n, axis):
        if n is None or n == x.shape[axis]:
            return x
        shape = list(x.shape)
        shape[axis] = n
        out = np.zeros(shape, x.dtype)
        keep = [slice(None)] * x.ndim
        keep[axis] = slice(0, min(n, x.shape[axis]))
        out[tuple(keep)] = x[tuple(keep)]
        return out

    @classmethod
    def _run(cls, name, x, axis, n=None, overwrite_x=False):
        import scipy.fft

        axis %= x.ndim
        work = x.swapaxes(axis, -1) if axis != x.ndim - 1 else x
        if work.base is not None or not work.flags.c_contiguous:
            work = work.copy()
        if name in ("fft", "ifft"):
            result = getattr(scipy.fft, name)(work, axis=-1)
            if overwrite_x:
                work[...] = result
                result = work
        elif name == "rfft":
            result = scipy.fft.rfft(work, axis=-1).astype(np.complex64 if x.dtype == np.float32 else np.complex128)
        else:
            result = scipy.fft.irfft(work, n=n, axis=-1).astype(np.float32 if x.dtype == np.complex64 else np.float64)
        return result.swapaxes(axis, -1) if axis != x.ndim - 1 else result

    @classmethod
    def fft(cls, x, n=None, axis=-1, norm=None, overwrite_x=False):
        return cls._run("fft", cls._pad(x, n, axis), axis, overwrite_x=overwrite_x)

    @classmethod
    def ifft(cls, x, n=None, axis=-1, norm=None, overwrite_x=False):
        return cls._run("ifft", cls._pad(x, n, axis), axis, overwrite_x=overwrite_x)

    @classmethod
    def rfft(cls, x, n=None, axis=-1, norm=None, overwrite_x=False):
        return cls._run("rfft", cls._pad(x, n, axis), axis)

    @classmethod
    def irfft(cls, x, n=None, axis=-1, norm=None, overwrite_x=False):
        n = 2 * (x.shape[axis] - 1) if n is None else n
        return cls._run("irfft", cls._pad(x, n // 2 + 1, axis), axis, n=n)

    @staticmethod
    def rfftn(x, s=None, axes=None, norm=None, overwrite_x=False):
        import scipy.fft

        return scipy.fft.rfftn(x, s=s).astype(np.complex64 if x.dtype == np.float32 else np.complex128)


def test_device_code_path_with_a_stand_in_array_module():
    """The GPU branch of the backend run with NumPy standing in for CuPy and a stand-in for
    cupyx.scipy.fft that follows CuPy's layout rules (results of non-last-axis transforms are new,
    non-contiguous arrays): the array module offers only the functions CuPy has that the convolution
    may use, so a call outside them fails here before it fails on a GPU; the dose equals the CPU
    path's (a kernel product made on a copy and lost would give the activity back instead)."""
    import types

    xp = types.SimpleNamespace(
        asarray=np.asarray, asnumpy=np.asarray, empty=np.empty, zeros=np.zeros, ascontiguousarray=np.ascontiguousarray,
        multiply=np.multiply,
    )
    device = backend.Backend("gpu", xp, _DeviceFFT, "stand-in device")
    a, rho, spacing = _two_class_case((30, 26, 34))
    vol = Volume(a, spacing)
    dens = Volume(rho, grid=vol.grid)
    on_device = dvk.dvk_dose_gy(vol, density_g_ml=dens, k_gy_kg_per_gbq=K, device=device).array
    on_cpu = dvk.dvk_dose_gy(vol, density_g_ml=dens, k_gy_kg_per_gbq=K, device="cpu").array
    assert np.abs(on_device - on_cpu).max() <= 2e-6 * on_cpu.max()
    f = kernels.voxel_energy_fractions(spacing, RHO)
    ref = fftconvolve(a.astype(np.float64), f, mode="same")
    assert np.abs(dvk.convolve_fft(a, f, device) - ref).max() < 1e-5 * ref.max()
    asymmetric = np.array(f)
    asymmetric[0, 0, 0] += 0.01  # the complex-spectrum path
    ref = fftconvolve(a.astype(np.float64), asymmetric, mode="same")
    assert np.abs(dvk.convolve_fft(a, asymmetric, device) - ref).max() < 1e-5 * ref.max()


def test_the_dose_map_does_not_keep_the_padded_spectrum():
    """The real result is left at the start of the spectrum's buffer, which is then shrunk in place:
    the dose array holds its own bytes, not the padded spectrum (2-3x more with a lung kernel)."""
    a, rho, spacing = _two_class_case((40, 36, 44))
    vol = Volume(a, spacing)
    for density in (1.04, Volume(rho, grid=vol.grid)):
        d = dvk.dvk_dose_gy(vol, density_g_ml=density, k_gy_kg_per_gbq=K, device="cpu").array
        assert d.dtype == np.float32 and d.flags.c_contiguous
        held = d.base.nbytes if d.base is not None else d.nbytes
        assert held <= d.nbytes + 8
