"""Writing a Volume as a gzip-compressed NRRD file, slab by slab.

SimpleITK's writer needs an ITK image, i.e. a copy of the whole array (4 bytes per voxel for a
float32 dose map, at the moment memory is highest); this writer streams the array's planes
through zlib instead, so writing adds no more than one plane.  Maps that hardly compress (a
convolved dose) are deflated with run-length matches only: as small, 2-3 times faster.  The
header is the one ITK and 3D Slicer write and read (NRRD0004, LPS space, ``space directions`` = spacing x direction columns,
``key:=value`` lines for metadata), see http://teem.sourceforge.net/nrrd/format.html.
"""

import sys
import zlib

import numpy as np

from ..errors import InputError
from ..threads import cpu_threads

__all__ = ["write_nrrd", "NRRD_TYPES"]

#: NRRD type names of the NumPy dtypes written.
NRRD_TYPES = {
    np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.uint8): "unsigned char",
    np.dtype(np.int16): "short", np.dtype(np.uint16): "unsigned short", np.dtype(np.int32): "int",
}
#: Bytes of voxel data compressed at a time.  Each call of zlib gives its output as new bytes
#: objects: from 256 kB of input they stay small enough for the allocator to reuse the same memory
#: call after call (from 4 MB, a convolved dose's 3 MB outputs took fresh pages every call: 2,500
#: more page faults writing the MAA case's DVK dose).
_CHUNK_BYTES = 1 << 18
#: Bytes of the sample that chooses zlib's strategy, and the compressed fraction of it from which
#: run-length matches only are used (:func:`_strategy`).
_SAMPLE_BYTES = 1 << 18
_RLE_FROM_RATIO = 0.5


def _number(x):
    return repr(float(x)) if float(x) != int(x) or abs(x) >= 1e15 else str(int(x))


def _vector(values):
    return "(" + ",".join(_number(v) for v in values) + ")"


def _header(volume, dtype, metadata):
    grid = volume.grid
    d = np.asarray(grid.direction, dtype=np.float64).reshape(3, 3)
    axes = [d[:, i] * grid.spacing_mm[i] for i in range(3)]  # columns: i, j, k axes in LPS
    meta = dict(metadata or {})
    lines = ["NRRD0004", "# Complete NRRD file format specification at:", "# http://teem.sourceforge.net/nrrd/format.html"]
    if "NRRD_content" in meta:
        lines.append(f"content: {meta.pop('NRRD_content')}")
    lines += [
        f"type: {NRRD_TYPES[dtype]}",
        "dimension: 3",
        "space: left-posterior-superior",
        "sizes: " + " ".join(str(n) for n in grid.shape[::-1]),
        "space directions: " + " ".join(_vector(a) for a in axes),
        "kinds: domain domain domain",
        "endian: little",
        "encoding: gzip",
        "space origin: " + _vector(grid.origin_mm),
    ]
    for key in sorted(meta):
        k, v = str(key), str(meta[key]).replace("\\", "\\\\").replace("\n", "\\n")
        if ":=" in k or "\n" in k:
            raise InputError(f"NRRD metadata key {k!r} must not hold ':=' or a line break")
        lines.append(f"{k}:={v}")
    return ("\n".join(lines) + "\n\n").encode("latin-1", errors="replace")


def write_nrrd(volume, path, *, metadata=None, dtype=np.float32, compress_level=1):
    """Write ``volume`` to ``path`` as a gzip NRRD file, one slab of planes at a time.

    Parameters
    ----------
    volume : Volume, (Z, Y, X); spacing (x, y, z) mm, origin LPS mm, direction.
    path : str
    metadata : dict of str, optional; ``NRRD_content`` becomes the ``content:`` field, other keys
        ``key:=value`` lines (as :func:`~TAREDosimetryLib.imaging.images.write_image` writes them).
    dtype : NumPy dtype of the voxels in the file (float32 default).
    compress_level : int, zlib level 1 (fast) to 9 (small).

    Returns
    -------
    str : ``path``.
    """
    dtype = np.dtype(dtype)
    if dtype not in NRRD_TYPES:
        raise InputError(f"NRRD voxel type {dtype} is not written; use one of {', '.join(str(t) for t in NRRD_TYPES)}")
    array = volume.array
    plane_bytes = max(1, int(np.prod(array.shape[1:])) * dtype.itemsize)
    step = max(1, _CHUNK_BYTES // plane_bytes)
    slabs = [(z0, min(array.shape[0], z0 + step)) for z0 in range(0, array.shape[0], step)]
    # Consecutive runs of slabs are compressed on every core (zlib releases the GIL), each run a
    # gzip member of its own; gzip readers (zlib's gzread in ITK/teem, Python's gzip) read the
    # members one after the other as one stream.  This thread compresses the first run straight
    # into the file; the others' pieces wait in memory for their turn.
    n_parts = max(1, min(len(slabs), _compress_threads()))
    parts = [slabs[i * len(slabs) // n_parts:(i + 1) * len(slabs) // n_parts] for i in range(n_parts)]
    deflate = (compress_level, _strategy(array, dtype, compress_level))
    with open(path, "wb") as fh:
        fh.write(_header(volume, dtype, metadata))
        if n_parts == 1:
            _compress_part(array, parts[0], dtype, deflate, fh.write)
        else:
            from concurrent.futures import ThreadPoolExecutor

            def run(part):
                pieces = []
                _compress_part(array, part, dtype, deflate, pieces.append)
                return pieces

            with ThreadPoolExecutor(max_workers=n_parts - 1) as pool:
                later = [pool.submit(run, part) for part in parts[1:]]
                _compress_part(array, parts[0], dtype, deflate, fh.write)
                for pieces in later:
                    fh.writelines(pieces.result())
    return str(path)


def _compress_threads():
    return cpu_threads()


def _strategy(array, dtype, level):
    """zlib's default strategy, or run-length matches only (``Z_RLE``) when a sample of the voxels
    (the middle planes, up to 256 kB) shrinks to no less than half: maps with few repeated values
    (a convolved dose is smooth float noise, nowhere zero) compress as well with Z_RLE, 2-3 times
    faster; maps with zeros or repeats keep the default's longer matches (half the size)."""
    if array.size == 0:
        return zlib.Z_DEFAULT_STRATEGY
    plane = max(1, int(np.prod(array.shape[1:])))
    n = max(1, min(array.shape[0], _SAMPLE_BYTES // (plane * dtype.itemsize)))
    z0 = (array.shape[0] - n) // 2
    sample = np.ascontiguousarray(array[z0:z0 + n], dtype=dtype).reshape(-1)[: max(1, _SAMPLE_BYTES // dtype.itemsize)]
    raw = memoryview(sample).cast("B")
    packed = zlib.compress(raw, int(level))
    return zlib.Z_RLE if len(packed) >= _RLE_FROM_RATIO * raw.nbytes else zlib.Z_DEFAULT_STRATEGY


def _compress_part(array, slabs, dtype, deflate, emit):
    """One gzip member of the planes ``slabs`` [(z0, z1), ...] of ``array``, given piece by piece to
    ``emit``; ``deflate`` is (zlib level, zlib strategy)."""
    level, strategy = deflate
    packer = zlib.compressobj(int(level), zlib.DEFLATED, 31, 8, strategy)  # wbits 31: a gzip stream
    for z0, z1 in slabs:
        slab = np.ascontiguousarray(array[z0:z1], dtype=dtype)
        if sys.byteorder != "little":
            slab = slab.byteswap()
        emit(packer.compress(memoryview(slab).cast("B")))
    emit(packer.flush())
