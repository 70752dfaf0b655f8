"""Is an image file complete?  Truncated and damaged files refused before they are read.

ITK reads a truncated ``.nii``/``.nii.gz`` without complaint, filling the missing voxels with
zeros (a SPECT with the top of the liver missing, a label map with a tumour gone), and a
truncated MetaImage with a raw message on stderr.  So, before reading:

* gzip files (``.nii.gz``, or any file starting with the gzip magic bytes) are decompressed once
  as a stream (in 1 MiB pieces, nothing kept): a stream that ends early or fails its CRC-32 or
  length check is refused;
* NIfTI-1 and NIfTI-2 single files (``.nii``, and the content of ``.nii.gz``) must hold the
  ``vox_offset + voxels x bitpix / 8`` bytes their header announces;
* uncompressed MetaImage files (``.mha`` with ``ElementDataFile = LOCAL``, or ``.mhd`` and its
  raw data file) must hold ``DimSize x channels x element size`` bytes of data.

NRRD (including ``.seg.nrrd``) is checked by ITK itself, which refuses a truncated file.
"""

import gzip
import os
import struct
import zlib

from ..errors import InputError

__all__ = ["check_image_file_complete", "nifti_expected_bytes", "metaimage_data_bytes"]

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_MET_SIZES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def _nifti_fields(header):
    """(dims, bitpix, vox_offset, smallest offset) of a NIfTI-1/-2 single-file header, or None."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348 and header[344:348] == b"n+1\x00":
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            return dims, bitpix, int(struct.unpack(endian + "f", header[108:112])[0]), 352
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540 and header[4:8] == b"n+2\x00":
            dims = struct.unpack(endian + "8q", header[16:80])
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            return dims, bitpix, struct.unpack(endian + "q", header[168:176])[0], 544
    return None


def nifti_expected_bytes(header):
    """Bytes a NIfTI-1/-2 single file (``n+1``/``n+2``) must hold, from its first 540 bytes.

    Returns None when ``header`` is not such a header (an Analyze or two-file ``ni1`` pair, or
    not NIfTI at all).
    """
    fields = _nifti_fields(header)
    if fields is None:
        return None
    dims, bitpix, offset, smallest = fields
    n = 1
    for d in dims[1 : max(1, min(int(dims[0]), 7)) + 1]:
        n *= max(int(d), 1)
    return max(int(offset), smallest) + n * max(int(bitpix), 0) // 8


def _gzip_content_size(path, what):
    """(decompressed size, first 540 bytes) of a gzip file; InputError when truncated or damaged."""
    size, head = 0, b""
    try:  # gzip checks the CRC-32 and the length at the end of each member
        with gzip.open(path, "rb") as fh:
            while True:
                block = fh.read(_CHUNK)
                if not block:
                    break
                if len(head) < 540:
                    head += block[: 540 - len(head)]
                size += len(block)
    except EOFError:
        raise InputError(
            f"{what}: {path} is truncated: its gzip stream ends early (an interrupted copy or download?); copy it again"
        ) from None
    except (OSError, zlib.error) as exc:
        raise InputError(f"{what}: {path} is damaged: its gzip stream fails its check ({exc}); copy it again") from None
    return size, head


def _refuse_short(path, what, have, need):
    raise InputError(
        f"{what}: {path} is truncated: it holds {have} of the {need} bytes its header announces "
        "(an interrupted copy or download?); copy it again"
    )


def _metaimage_header(path):
    """({key: value}, header length in bytes) of a MetaImage file; None when unreadable."""
    fields, length = {}, 0
    with open(path, "rb") as fh:
        for raw in iter(lambda: fh.readline(4096), b""):
            length += len(raw)
            key, sep, value = raw.decode("latin-1").partition("=")
            if not sep:
                return None
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":
                return fields, length
            if length > 65536:
                return None
    return None


def metaimage_data_bytes(fields):
    """Bytes of voxel data a MetaImage header announces (None: compressed or unknown type)."""
    if fields.get("CompressedData", "False").lower() == "true":
        return None
    size = _MET_SIZES.get(fields.get("ElementType", ""))
    try:
        dims = [int(v) for v in fields.get("DimSize", "").split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except ValueError:
        return None
    if size is None or not dims:
        return None
    n = channels * size
    for d in dims:
        n *= d
    return n


def _check_metaimage(path, what):
    parsed = _metaimage_header(path)
    if parsed is None:
        return
    fields, header_len = parsed
    need = metaimage_data_bytes(fields)
    data_file = fields["ElementDataFile"]
    if need is None or data_file.upper().startswith("LIST") or "%" in data_file:
        return
    if data_file.upper() == "LOCAL":
        have = os.path.getsize(path) - header_len
        if have < need:
            _refuse_short(path, what, have + header_len, need + header_len)
        return
    raw = os.path.join(os.path.dirname(str(path)), data_file)
    if not os.path.isfile(raw):
        raise InputError(f"{what}: {path} names its voxel data file {data_file}, which is missing next to it")
    if os.path.getsize(raw) < need:
        _refuse_short(raw, what, os.path.getsize(raw), need)


def check_image_file_complete(path, what="image"):
    """Raise InputError when the image file ``path`` is truncated or damaged (see module docstring).

    Parameters
    ----------
    path : str, an image file (not a folder).
    what : str, how the message names the input ('SPECT image', 'segmentation', ...).
    """
    path = str(path)
    if not os.path.isfile(path):
        return
    with open(path, "rb") as fh:
        magic = fh.read(540)
    lower = path.lower()
    if lower.endswith(".gz") and magic[:2] != _GZIP_MAGIC:
        raise InputError(f"{what}: {path} is named .gz but is not gzip-compressed (a damaged or misnamed file)")
    if magic[:2] == _GZIP_MAGIC:
        size, head = _gzip_content_size(path, what)
        need = nifti_expected_bytes(head)
        if need is not None and size < need:
            _refuse_short(path, what, size, need)
    elif lower.endswith(".nii"):
        if len(magic) < 348:
            _refuse_short(path, what, len(magic), 348)
        need = nifti_expected_bytes(magic)
        if need is not None and os.path.getsize(path) < need:
            _refuse_short(path, what, os.path.getsize(path), need)
    elif lower.endswith((".mha", ".mhd")):
        _check_metaimage(path, what)
