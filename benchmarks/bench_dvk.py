"""CPU benchmark of the DVK dose convolution against SciPy baselines.

Usage::

    PYTHONPATH=TAREDosimetry python3 benchmarks/bench_dvk.py [--grids a,b] [--repeat 2] [--out PATH]

Grids
    a: the MAA SPECT grid, 128 x 128 x 160 voxels (x, y, z) at 4.418 x 4.418 x 2.5 mm
    b: a CT-like grid, 512 x 512 x 300 at 1 mm

Methods (each run in its own subprocess, so that its peak resident memory is its own)
    ours        dvk.dvk_dose_gy on the CPU (float32, zero-padded real FFTs on all cores), in a
                fresh process: the time includes building the kernel for the new spacing.
    fftconvolve scipy.signal.fftconvolve(activity, kernel, mode="same") in float64 (the
                accuracy reference), kernel given.
    ndimage     scipy.ndimage.convolve (direct summation, float64, mode="constant").  On grid b
                it would take hours; it is timed on a 64^3 sub-block of grid b and on grid a.

The phantom is a seeded random activity map: a uniform ellipsoidal "liver", 12 hot spheres and
Poisson-like noise, in GBq per voxel (float32), density 1.03 g/mL.  Accuracy: max |D - D_ref|
/ max D_ref against the float64 fftconvolve result with the same energy-fraction kernel.

Prints one JSON document and writes it to benchmarks/results/dvk_cpu.json.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "TAREDosimetry"))

GRIDS = {
    "a": {"shape_zyx": (160, 128, 128), "spacing_mm_xyz": (4.418, 4.418, 2.5)},
    "b": {"shape_zyx": (300, 512, 512), "spacing_mm_xyz": (1.0, 1.0, 1.0)},
}
K = 49.67
DENSITY = 1.03


def phantom(shape, spacing, seed=0, dtype=np.float32):
    """Seeded activity map (GBq per voxel, total 2 GBq), built slab by slab in float32 so that
    building it does not raise the peak memory above that of the returned array."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    sx, sy, sz = spacing
    y, x = np.ogrid[:ny, :nx]
    yy = ((y - (ny - 1) / 2) * sy).astype(np.float32)
    xx = ((x - (nx - 1) / 2) * sx).astype(np.float32)
    ext = np.array([nx * sx, ny * sy, nz * sz], dtype=np.float32) * np.float32(0.35)
    spheres = [(rng.uniform(-0.6, 0.6, 3) * ext, rng.uniform(5.0, 20.0)) for _ in range(12)]
    out = np.empty(shape, dtype=dtype)
    for k in range(nz):
        zz = np.float32((k - (nz - 1) / 2) * sz)
        a = ((xx / ext[0]) ** 2 + (yy / ext[1]) ** 2 + (zz / ext[2]) ** 2 <= 1.0).astype(np.float32)
        for c, r in spheres:
            a += np.float32(4.0) * (((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2) <= r * r)
        a *= rng.gamma(20.0, 1 / 20.0, size=(ny, nx)).astype(np.float32)
        out[k] = a
    out *= 2.0 / float(out.sum(dtype=np.float64))
    return out


def _kernel(spacing):
    from TAREDosimetryLib.dose import kernels

    return np.array(kernels.voxel_energy_fractions(spacing, DENSITY))


def _maxrss_mb():
    """Peak resident memory of this process so far (high-water mark), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mb():
    """Current resident memory, MB (Linux /proc; falls back to the high-water mark)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _maxrss_mb()


def worker(method, grid, result_path, repeat):
    """Run one method on one grid in this (fresh) process; writes a .npy result and JSON."""
    from TAREDosimetryLib.dose import kernels
    from TAREDosimetryLib.volume import Volume

    g = GRIDS[grid]
    shape, spacing = g["shape_zyx"], g["spacing_mm_xyz"]
    sub = method == "ndimage" and grid == "b"
    if sub:
        shape = (64, 64, 64)
    a32 = phantom(shape, spacing) if method == "ours" else None
    voxel_kg = spacing[0] * spacing[1] * spacing[2] * 1e-6 * DENSITY
    info = {"method": method, "grid": grid, "shape_zyx": list(shape), "spacing_mm_xyz": list(spacing)}
    times = []
    if method == "ours":
        from TAREDosimetryLib.dose.dvk import dvk_dose_gy

        vol = Volume(a32, spacing)
        rss0 = _rss_mb()
        for i in range(repeat):
            if i == 0:
                kernels.clear_kernel_cache()
            t = time.perf_counter()
            dose = dvk_dose_gy(vol, density_g_ml=DENSITY, k_gy_kg_per_gbq=K, device="cpu").array
            times.append(time.perf_counter() - t)
        info["note"] = "first run includes kernel generation for the new spacing; later runs use the cached kernel"
    else:
        f = _kernel(spacing)
        a64 = phantom(shape, spacing, dtype=np.float64)
        a64 *= K / voxel_kg  # LDM dose; f (*) it is the DVK dose
        rss0 = _rss_mb()
        for _ in range(repeat):
            t = time.perf_counter()
            if method == "fftconvolve":
                from scipy.signal import fftconvolve

                dose = fftconvolve(a64, f, mode="same")
            else:
                from scipy.ndimage import convolve

                dose = convolve(a64, f, mode="constant", cval=0.0)
            times.append(time.perf_counter() - t)
    info["times_s"] = times
    info["best_s"] = min(times)
    info["peak_rss_mb"] = _maxrss_mb()
    info["rss_before_mb"] = rss0
    info["peak_rss_increase_mb"] = max(0.0, _maxrss_mb() - rss0)
    if sub:
        n_full = int(np.prod(GRIDS["b"]["shape_zyx"]))
        info["note"] = "64^3 sub-block of grid b; full-grid time extrapolated by voxel count"
        info["extrapolated_full_grid_s"] = min(times) * n_full / float(np.prod(shape))
    np.save(result_path, np.asarray(dose))
    return info


def run_worker(method, grid, tmpdir, repeat):
    path = os.path.join(tmpdir, f"{method}_{grid}.npy")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, "--grid", grid, "--result", path, "--repeat", str(repeat)]
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "TAREDosimetry") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1]), path


def kernel_generation_times():
    from TAREDosimetryLib.dose import kernels

    out = {}
    for spacing in [(1.0, 1.0, 1.0), (4.418, 4.418, 2.5), (3.0, 3.0, 3.0), (0.977, 0.977, 2.5)]:
        kernels.clear_kernel_cache()
        t = time.perf_counter()
        k = kernels.voxel_s_values(spacing)
        out["x".join(f"{s:g}" for s in spacing)] = {"seconds": time.perf_counter() - t, "shape_zyx": list(k.shape)}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grids", default="a,b")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--out", default=os.path.join(HERE, "results", "dvk_cpu.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--grid", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.grid, args.result, args.repeat)))
        return
    from TAREDosimetryLib.dose.backend import cpu_workers

    report = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpu_workers": cpu_workers(), "numpy": np.__version__},
        "kernel_generation": kernel_generation_times(),
        "grids": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for grid in args.grids.split(","):
            res = {}
            methods = ["ours", "fftconvolve", "ndimage"]
            for m in methods:
                res[m], path = run_worker(m, grid, tmp, 1 if m == "ndimage" else args.repeat)
                res[m]["_path"] = path
            ref = np.load(res["fftconvolve"]["_path"])
            ours = np.load(res["ours"]["_path"])
            res["ours"]["max_rel_error_vs_fftconvolve64"] = float(np.abs(ours.astype(np.float64) - ref).max() / np.abs(ref).max())
            if res["ndimage"]["shape_zyx"] == res["fftconvolve"]["shape_zyx"]:
                nd = np.load(res["ndimage"]["_path"])
                res["ndimage"]["max_rel_error_vs_fftconvolve64"] = float(np.abs(nd - ref).max() / np.abs(ref).max())
            for m in methods:
                os.remove(res[m].pop("_path"))
            base = res["fftconvolve"]
            res["summary"] = {
                "speedup_vs_fftconvolve": base["best_s"] / res["ours"]["best_s"],
                "speedup_vs_fftconvolve_first_run_incl_kernel": base["best_s"] / res["ours"]["times_s"][0],
                "peak_rss_ratio_vs_fftconvolve": res["ours"]["peak_rss_mb"] / base["peak_rss_mb"],
                "peak_rss_increase_ratio_vs_fftconvolve": res["ours"]["peak_rss_increase_mb"] / base["peak_rss_increase_mb"],
            }
            report["grids"][grid] = res
    text = json.dumps(report, indent=2)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
