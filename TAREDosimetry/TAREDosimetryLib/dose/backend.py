"""One switch between the CPU (NumPy + scipy.fft) and an NVIDIA GPU (CuPy + cupyx.scipy.fft).

On the CPU, transforms of up to :data:`NUMPY_FFT_MAX_VOXELS` values go through ``numpy.fft``
(float32 kept, one thread), larger ones through ``scipy.fft`` on every core: importing
scipy.fft costs about 0.2 s, more than a small grid's whole convolution.  The choice depends
on the array sizes alone, so a grid is always transformed the same way.

``get_backend(device)`` returns a :class:`Backend` whose ``xp`` is the array module and whose
methods do the few things the engine needs on either device: move arrays to and from the
device (the only place where transfers happen), real FFTs, matrix products and freeing memory.
The CPU path is the reference; the GPU path must agree with it to float32 tolerance.

CuPy is imported only when a GPU is asked for ('gpu') or allowed ('auto'); the engine runs
without it.
"""

import functools
import re
import shutil
import subprocess

import numpy as np

from ..errors import GPUUnavailableError, InputError
from ..params import DEVICES
from ..threads import cpu_threads

__all__ = [
    "DEVICES", "Backend", "get_backend", "gpu_status", "cpu_workers", "next_fast_len", "reset_gpu_probe", "NUMPY_FFT_MAX_VOXELS",
    "parse_nvidia_smi_cuda_version", "nvidia_driver_cuda_version", "cupy_requirement",
]


#: Largest array (values) transformed by numpy.fft on the CPU; larger ones use scipy.fft.
NUMPY_FFT_MAX_VOXELS = 4_000_000
#: numpy.fft writes into a given array (``out=``) from NumPy 2.0 on, and keeps float32 as complex64.
_NUMPY_FFT_TAKES_OUT = int(np.__version__.split(".")[0]) >= 2
#: Values transformed at a time by :meth:`Backend.fft_in_place` with numpy.fft, and on the GPU.
_NUMPY_BLOCK_VALUES = 1 << 18
_DEVICE_BLOCK_VALUES = 1 << 24


def _same_memory(a, b):
    """True when ``a`` is ``b``'s memory with ``b``'s layout (an in-place result)."""
    return a is b or (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
                      and a.shape == b.shape and a.strides == b.strides)


def _scipy_fft():
    import scipy.fft  # lazy: about 0.2 s, paid only by large transforms

    return scipy.fft


def cpu_workers():
    """Number of CPU threads for scipy.fft (:func:`~TAREDosimetryLib.threads.cpu_threads`)."""
    return cpu_threads()


@functools.lru_cache(maxsize=1)
def _probe_cupy():
    """(cupy module, None) when a CUDA device is usable, else (None, reason)."""
    try:
        import cupy
        import cupyx.scipy.fft  # noqa: F401  (needed by the GPU FFT path)
    except ImportError as exc:
        return None, (
            f"CuPy is not installed ({exc}); install the CuPy wheel matching your CUDA version, "
            "e.g. pip install cupy-cuda12x (the 'gpu' extra)"
        )
    except Exception as exc:  # a broken CUDA installation can raise anything at import
        return None, f"CuPy could not be imported: {type(exc).__name__}: {exc}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"CuPy is installed but no CUDA device is usable ({type(exc).__name__}: {exc})"
    if count < 1:
        return None, "CuPy is installed but no CUDA device was found"
    try:
        probe = cupy.arange(8, dtype=cupy.float32)
        float((probe * probe).sum())
    except Exception as exc:
        return None, f"the CUDA device does not run kernels ({type(exc).__name__}: {exc})"
    return cupy, None


def gpu_status():
    """(available: bool, description: str): the GPU that 'gpu' would use, or why there is none."""
    cupy, reason = _probe_cupy()
    if cupy is None:
        return False, reason
    try:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    except Exception:
        name = "CUDA device"
    return True, f"{name} (CuPy {cupy.__version__})"


class Backend:
    """Array module and FFT functions of one device.

    Attributes
    ----------
    name : str, 'cpu' or 'gpu'
    xp : module, numpy or cupy
    description : str, human-readable device (recorded with results)
    workers : int, CPU threads used by scipy.fft (CPU backend only)
    """

    def __init__(self, name, xp, fft, description, workers=None):
        self.name = name
        self.xp = xp
        self._fft = fft
        self.description = description
        self.workers = workers

    def __repr__(self):
        return f"Backend({self.name!r}, {self.description!r})"

    # -- transfers: the only place where data moves between host and device -----------------
    def asarray(self, array, dtype=None):
        """Host (or device) array -> array on this device; no copy when already there."""
        if self.name == "cpu":
            return np.asarray(array, dtype=dtype)
        return self.xp.asarray(array, dtype=dtype)

    def to_numpy(self, array):
        """Array on this device -> NumPy array on the host."""
        if self.name == "cpu":
            return np.asarray(array)
        return self.xp.asnumpy(array)

    # -- computation ------------------------------------------------------------------------
    def rfftn(self, array, shape):
        """Real N-D FFT of ``array`` zero-padded to ``shape``."""
        if self.name == "cpu":
            if int(np.prod(shape)) <= NUMPY_FFT_MAX_VOXELS:
                return np.fft.rfftn(array, s=shape, axes=tuple(range(len(shape))))
            return _scipy_fft().rfftn(array, s=shape, workers=self.workers)
        return self._fft.rfftn(array, s=shape)

    def irfftn(self, spectrum, shape):
        """Inverse of :meth:`rfftn` (real output of ``shape``); may overwrite ``spectrum``."""
        if self.name == "cpu":
            if int(np.prod(shape)) <= NUMPY_FFT_MAX_VOXELS:
                return np.fft.irfftn(spectrum, s=shape, axes=tuple(range(len(shape))))
            return _scipy_fft().irfftn(spectrum, s=shape, workers=self.workers, overwrite_x=True)
        return self._fft.irfftn(spectrum, s=shape, overwrite_x=True)

    def _transform(self, name, array, size=None, out=None, **kw):
        """``name`` ('rfft', 'fft', 'ifft', 'irfft') of the module for this array: numpy.fft for
        a small CPU array, else scipy.fft on every core (or cupyx on the GPU).  ``size``: choose
        as for an array of that many values (a slab of a larger grid goes the grid's way).
        ``out``: an array of the result's shape and dtype that numpy.fft (2.0 and later) writes the
        result into instead of new memory; the other libraries ignore it (the caller copies)."""
        extra = {} if name == "rfft" else {"overwrite_x": True}  # the input of rfft is the caller's
        if self.name != "cpu":
            return getattr(self._fft, name)(array, **kw, **extra)
        if (array.size if size is None else size) <= NUMPY_FFT_MAX_VOXELS:
            if out is not None and _NUMPY_FFT_TAKES_OUT:
                kw["out"] = out
            return getattr(np.fft, name)(array, **kw)
        return getattr(_scipy_fft(), name)(array, workers=self.workers, **kw, **extra)

    def takes_out(self, size):
        """True when the transforms of an array of ``size`` values write into a given ``out``."""
        return self.name == "cpu" and int(size) <= NUMPY_FFT_MAX_VOXELS and _NUMPY_FFT_TAKES_OUT

    def rfft(self, array, n, axis, size=None, out=None):
        """1-D real FFT along ``axis``, zero-padded to ``n`` (into ``out`` where the library can)."""
        return self._transform("rfft", array, size, out, n=n, axis=axis)

    def fft(self, array, n, axis, size=None, out=None):
        """1-D complex FFT along ``axis``, zero-padded to ``n`` (into ``out`` where the library
        can); may overwrite ``array``."""
        return self._transform("fft", array, size, out, n=n, axis=axis)

    def ifft(self, array, axis, size=None):
        """1-D inverse complex FFT along ``axis``; may overwrite ``array``."""
        return self._transform("ifft", array, size, axis=axis)

    def irfft(self, array, n, axis, size=None):
        """1-D inverse real FFT along ``axis`` with real output length ``n``."""
        return self._transform("irfft", array, size, n=n, axis=axis)

    def fft_in_place(self, array, axis, inverse=False, size=None):
        """Complex FFT (or inverse) of ``array`` along ``axis``, written into ``array``, which is
        returned.  ``size``: choose the library as for an array of that many values (the padded
        grid of a convolution, so that every axis of one grid goes the same way).

        scipy.fft (large CPU arrays) overwrites its input in place.  numpy.fft (small CPU arrays:
        its ``out=`` copies an input that overlaps the output) and cupyx on the GPU (a transform
        along a non-last axis works on a swapped copy and returns a new, non-contiguous array) go
        a block of another axis at a time, each block's result assigned back, so the temporaries
        stay a block's size and the result is always in ``array``."""
        name = "ifft" if inverse else "fft"
        n = array.size if size is None else int(size)
        if self.name == "cpu" and n > NUMPY_FFT_MAX_VOXELS:
            result = getattr(_scipy_fft(), name)(array, axis=axis, overwrite_x=True, workers=self.workers)
            if not _same_memory(result, array):
                array[...] = result
            return array
        module, block_values = (np.fft, _NUMPY_BLOCK_VALUES) if self.name == "cpu" else (self._fft, _DEVICE_BLOCK_VALUES)
        other = 1 if axis != 1 else 0
        step = max(1, block_values * array.shape[other] // max(array.size, 1))
        for i in range(0, array.shape[other], step):
            block = (slice(None),) * other + (slice(i, i + step),)
            array[block] = getattr(module, name)(array[block], axis=axis)
        return array

    def synchronize(self):
        """Wait for queued device work (for timing)."""
        if self.name == "gpu":
            self.xp.cuda.Stream.null.synchronize()

    def free_memory(self):
        """Give cached device memory back (CuPy keeps freed blocks in a pool)."""
        if self.name == "gpu":
            self.xp.get_default_memory_pool().free_all_blocks()
            self.xp.get_default_pinned_memory_pool().free_all_blocks()


@functools.lru_cache(maxsize=4096)
def next_fast_len(n):
    """Smallest size >= n for which real FFTs are fast: a product of 2, 3 and 5 (good for cuFFT
    too; the sizes ``scipy.fft.next_fast_len(n, real=True)`` gives)."""
    n = int(n)
    if n <= 6:
        return max(n, 1)
    best = 2 ** int(np.ceil(np.log2(n)))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            quotient = -(-n // p35)  # ceil(n / p35): the smallest power of 2 above it
            p2 = 1 << max(0, (quotient - 1).bit_length())
            best = min(best, p2 * p35)
            p35 *= 3
        p5 *= 5
    return best


@functools.lru_cache(maxsize=1)
def _cpu_backend():
    workers = cpu_workers()
    return Backend("cpu", np, None, f"CPU (NumPy {np.__version__}: numpy.fft up to {NUMPY_FFT_MAX_VOXELS} values, "
                   f"scipy.fft on {workers} workers above)", workers=workers)


@functools.lru_cache(maxsize=1)
def _gpu_backend():
    cupy, reason = _probe_cupy()
    if cupy is None:
        return None
    import cupyx.scipy.fft

    return Backend("gpu", cupy, cupyx.scipy.fft, "GPU: " + gpu_status()[1])


def get_backend(device="auto"):
    """The array backend for ``device``.

    Parameters
    ----------
    device : {'auto', 'cpu', 'gpu'}
        'cpu': NumPy/SciPy on all cores; 'gpu': CuPy on the current CUDA device, raising
        :class:`GPUUnavailableError` (saying what is missing) when there is none; 'auto': the
        GPU when usable, else the CPU.  A :class:`Backend` is passed through unchanged.

    Returns
    -------
    Backend
    """
    if isinstance(device, Backend):
        return device
    if device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "cpu":
        return _cpu_backend()
    gpu = _gpu_backend()
    if gpu is not None:
        return gpu
    if device == "gpu":
        raise GPUUnavailableError(f"device='gpu' was asked for but no GPU is usable: {_probe_cupy()[1]}. Use device='cpu' or 'auto'.")
    return _cpu_backend()


def reset_gpu_probe():
    """Forget the cached GPU probe (after CuPy was installed in this session)."""
    _probe_cupy.cache_clear()
    _gpu_backend.cache_clear()
    nvidia_driver_cuda_version.cache_clear()


def parse_nvidia_smi_cuda_version(text):
    """(major, minor) of the CUDA version the NVIDIA driver supports, from ``nvidia-smi`` output
    ("... CUDA Version: 12.4 ..."), or None when it does not say."""
    m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", str(text or ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


@functools.lru_cache(maxsize=1)
def nvidia_driver_cuda_version():
    """(major, minor) CUDA version of the installed NVIDIA driver (``nvidia-smi``), or None when
    there is no NVIDIA GPU driver.  Runs nvidia-smi once per session (5 s time-out)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=5, check=False,
                             universal_newlines=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi_cuda_version(out)


def cupy_requirement(cuda_version):
    """The CuPy wheel for a driver's CUDA version: 'cupy-cuda12x' (12.x and later), 'cupy-cuda11x'
    (11.2 to 11.8), or None (no NVIDIA driver, or one too old for current CuPy wheels)."""
    if cuda_version is None:
        return None
    major, minor = cuda_version
    if major >= 12:
        return "cupy-cuda12x"
    if major == 11 and minor >= 2:
        return "cupy-cuda11x"
    return None
