"""GPU check of the DVK engine: equivalence with the CPU path and a timing on grid (b).

Run by run.sh (or directly: PYTHONPATH=TAREDosimetry python3 benchmarks/gpu_check/gpu_check.py).
Grid (b): 512 x 512 x 300 voxels at 1 mm, the benchmarks/bench_dvk.py phantom.

Measures
    gpu_s        dvk_dose_gy(device='gpu') wall time incl. host->device->host transfers and
                 the kernel (cached after the first run); best of 3 after one warm-up.
    cpu_fft_s    scipy.signal.fftconvolve(float64, mode='same') baseline (one run), the same
                 baseline as bench_dvk.py.
    ours_cpu_s   dvk_dose_gy(device='cpu'), best of 2.
    accuracy     max |D_gpu - D_ref| / max D_ref vs the float64 baseline (goal 1e-4), and vs
                 the CPU float32 result.
Goal: speedup_gpu_vs_fftconvolve >= 30.  Everything finishes in well under 5 minutes on
an H100-class card (the float64 baseline is the slowest part, ~5-10 s on 16 cores).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "TAREDosimetry"))
sys.path.insert(0, os.path.dirname(HERE))

from bench_dvk import DENSITY, GRIDS, K, phantom  # noqa: E402
from TAREDosimetryLib.dose import backend, kernels  # noqa: E402
from TAREDosimetryLib.dose.dvk import dvk_dose_gy  # noqa: E402
from TAREDosimetryLib.errors import GPUUnavailableError  # noqa: E402
from TAREDosimetryLib.volume import Volume  # noqa: E402


def best_of(fn, n):
    times, out = [], None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), times, out


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--tests-rc", type=int, default=None, help="exit status of the GPU pytest run")
    p.add_argument("--grid", default="b", choices=sorted(GRIDS))
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "dvk_gpu.json"))
    args = p.parse_args(argv)
    ok, why = backend.gpu_status()
    g = GRIDS[args.grid]
    shape, spacing = g["shape_zyx"], g["spacing_mm_xyz"]
    report = {
        "grid": args.grid,
        "shape_zyx": list(shape),
        "spacing_mm_xyz": list(spacing),
        "gpu_available": ok,
        "gpu": why,
        "cpu": backend.get_backend("cpu").description,
        "gpu_tests_pytest_rc": args.tests_rc,
    }
    a = phantom(shape, spacing)
    vol = Volume(a, spacing)
    run = lambda dev: dvk_dose_gy(vol, density_g_ml=DENSITY, k_gy_kg_per_gbq=K, device=dev).array  # noqa: E731

    t = time.perf_counter()
    kernels.voxel_s_values(spacing, DENSITY)
    report["kernel_generation_s"] = time.perf_counter() - t
    report["ours_cpu_s"], report["ours_cpu_times_s"], d_cpu = best_of(lambda: run("cpu"), 2)

    if ok:
        be = backend.get_backend("gpu")
        run("gpu")  # warm-up: CUDA context, cuFFT plans, kernel upload
        be.synchronize()
        report["gpu_s"], report["gpu_times_s"], d_gpu = best_of(lambda: run("gpu"), 3)
        report["gpu_vs_cpu_float32_max_rel"] = float(np.abs(d_gpu - d_cpu).max() / np.abs(d_cpu).max())
        be.free_memory()
    else:
        try:
            backend.get_backend("gpu")
        except GPUUnavailableError as exc:
            report["gpu_error"] = str(exc)
        d_gpu = None

    # float64 baseline, the same as benchmarks/bench_dvk.py (kernel = energy fractions)
    from scipy.signal import fftconvolve

    f = np.array(kernels.voxel_energy_fractions(spacing, DENSITY))
    voxel_kg = spacing[0] * spacing[1] * spacing[2] * 1e-6 * DENSITY
    t = time.perf_counter()
    ref = fftconvolve(a.astype(np.float64) * (K / voxel_kg), f, mode="same")
    report["cpu_fftconvolve64_s"] = time.perf_counter() - t
    peak = np.abs(ref).max()
    report["ours_cpu_max_rel_error_vs_fftconvolve64"] = float(np.abs(d_cpu - ref).max() / peak)
    report["speedup_cpu_vs_fftconvolve"] = report["cpu_fftconvolve64_s"] / report["ours_cpu_s"]
    if d_gpu is not None:
        report["gpu_max_rel_error_vs_fftconvolve64"] = float(np.abs(d_gpu - ref).max() / peak)
        report["speedup_gpu_vs_fftconvolve"] = report["cpu_fftconvolve64_s"] / report["gpu_s"]
        report["goal_speedup_30x_met"] = report["speedup_gpu_vs_fftconvolve"] >= 30
        report["goal_accuracy_1e-4_met"] = report["gpu_max_rel_error_vs_fftconvolve64"] < 1e-4
    text = json.dumps(report, indent=2)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
