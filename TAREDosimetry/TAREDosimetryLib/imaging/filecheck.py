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
  raw data file) must hold ``DimSize x channels x element size`` bytes of data;
* uncompressed (``encoding: raw``) NRRD files (``.nrrd``, ``.seg.nrrd``, or a ``.nhdr`` header and
  its data file) must hold ``sizes x type size`` bytes of data after the header (and ``byte skip``).

A gzip-encoded NRRD is refused by ITK itself, whose message names the bytes there and expected;
the raw-NRRD check gives the same words ("truncated: N of the M bytes of voxel data are there").
"""

import gzip
import os
import struct
import zlib

from ..errors import InputError

__all__ = ["check_image_file_complete", "nifti_expected_bytes", "metaimage_data_bytes", "nrrd_data_bytes"]

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
    _check_data_file(path, what, data_file, need, 0, _refuse_short)


def _check_data_file(path, what, data_file, need, skip, refuse):
    """The voxel data file ``data_file`` that the header ``path`` names: present next to it and holding
    ``need`` bytes after ``skip`` (else ``refuse(file, what, have, need)``)."""
    raw = os.path.join(os.path.dirname(str(path)), data_file)
    if not os.path.isfile(raw):
        raise InputError(f"{what}: {path} names its voxel data file {data_file}, which is missing next to it")
    have = os.path.getsize(raw) - skip
    if have < need:
        refuse(raw, what, have, need)


#: Bytes per element of the NRRD types (every spelling the NRRD format allows).
_NRRD_SIZES = {}
for _size, _names in ((1, "signed char,int8,int8_t,uchar,unsigned char,uint8,uint8_t"),
                      (2, "short,short int,signed short,signed short int,int16,int16_t,ushort,unsigned short,"
                          "unsigned short int,uint16,uint16_t"),
                      (4, "int,signed int,int32,int32_t,uint,unsigned int,uint32,uint32_t,float"),
                      (8, "longlong,long long,long long int,signed long long,signed long long int,int64,int64_t,ulonglong,"
                          "unsigned long long,unsigned long long int,uint64,uint64_t,double")):
    _NRRD_SIZES.update({name: _size for name in _names.split(",")})


def _nrrd_header(path):
    """({field: value}, header length in bytes) of a NRRD file (fields lower-case; the header ends at
    the first empty line, or at the end of a detached ``.nhdr``); None when not NRRD."""
    fields, length = {}, 0
    with open(path, "rb") as fh:
        first = fh.readline(256)
        if not first.startswith(b"NRRD"):
            return None
        length = len(first)
        for raw in iter(lambda: fh.readline(65536), b""):
            length += len(raw)
            line = raw.decode("latin-1").rstrip("\r\n")
            if not line:
                break
            if line.startswith("#") or ":=" in line:
                continue
            key, sep, value = line.partition(": ")
            if sep:
                fields[key.strip().lower()] = value.strip()
            if length > 1 << 20:
                return None
    return fields, length


def nrrd_data_bytes(fields):
    """Bytes of voxel data a raw NRRD header announces (None: not raw, or a type or size it cannot tell)."""
    if fields.get("encoding", "").lower() != "raw":
        return None
    size = _NRRD_SIZES.get(" ".join(fields.get("type", "").lower().split()))
    try:
        sizes = [int(v) for v in fields.get("sizes", "").split()]
    except ValueError:
        return None
    if size is None or not sizes:
        return None
    n = size
    for d in sizes:
        n *= d
    return n


def _refuse_short_nrrd(path, what, have, need):
    raise InputError(
        f"{what}: cannot read {path} (truncated: {max(have, 0)} of the {need} bytes of voxel data are there; copy it again)"
    )


def _check_nrrd(path, what):
    parsed = _nrrd_header(path)
    if parsed is None:
        return
    fields, header_len = parsed
    need = nrrd_data_bytes(fields)
    try:
        skip = int(fields.get("byte skip", "0"))
        line_skip = int(fields.get("line skip", "0"))
    except ValueError:
        return
    if need is None or skip < 0 or line_skip:
        return
    data_file = fields.get("data file") or fields.get("datafile")
    if not data_file:
        have = os.path.getsize(path) - header_len - skip
        if have < need:
            _refuse_short_nrrd(path, what, have, need)
        return
    if data_file.upper().startswith("LIST") or len(data_file.split()) > 1:
        return  # several data files: left to ITK
    _check_data_file(path, what, data_file, need, skip, _refuse_short_nrrd)


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
    elif magic.startswith(b"NRRD"):
        _check_nrrd(path, what)
