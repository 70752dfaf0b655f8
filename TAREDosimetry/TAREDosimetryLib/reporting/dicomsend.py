"""Sending the DICOM exports to a PACS or DICOM node (``--send AET@HOST:PORT``), with pynetdicom.

For each destination: a TCP connection is tried first (so that "connection refused", "unknown host"
and "timed out" are told apart), then an association is requested with one presentation context
per SOP class, in the files' own transfer syntax (the files are sent as they are on disk); a C-ECHO
checks the node answers, then every file is sent with C-STORE.  A refused association (wrong AE
title, SOP class not supported) is reported at once with the node's reason; connection failures,
aborted associations and failed C-STOREs are retried ``retries`` times (1 s, 2 s, 4 s ... apart),
re-sending only what has not been stored.  Anything still unsent raises :class:`DicomSendError`,
naming the destination and the files; the result folder is complete either way.
"""

import logging
import os
import re
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import InputError, TAREDosimetryError

__all__ = ["Destination", "DicomSendError", "parse_destination", "echo", "send_files"]

_SPEC = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d{1,5})$")
#: Statuses of C-STORE that mean stored (0x0000 success, 0xB000/0xB006/0xB007 warnings).
_STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class DicomSendError(TAREDosimetryError):
    """The exports could not all be sent (the results are written all the same)."""


@dataclass(frozen=True)
class Destination:
    """A DICOM node: called AE title, host, TCP port."""

    ae_title: str
    host: str
    port: int

    def __str__(self):
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_destination(spec):
    """:class:`Destination` of 'AET@HOST:PORT' ('[::1]' for an IPv6 host)."""
    m = _SPEC.match(str(spec).strip())
    if not m:
        raise InputError(f"--send {spec!r}: expected AET@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242 (AE title of at most 16 characters)")
    aet, host, port = m.group("aet").strip(), m.group("host").strip("[]"), int(m.group("port"))
    if not aet or "\\" in aet or not all(32 <= ord(c) < 127 for c in aet):
        raise InputError(f"--send {spec!r}: the AE title {aet!r} must be 1 to 16 printable ASCII characters, no backslash")
    if not 0 < port < 65536:
        raise InputError(f"--send {spec!r}: port {port} is not between 1 and 65535")
    return Destination(aet, host, port)


def _require_pynetdicom():
    try:
        import pynetdicom
    except ImportError:
        raise InputError("--send needs the Python package pynetdicom: pip install pynetdicom "
                         "(or pip install TAREDosimetry[dicom])") from None
    return pynetdicom


@contextmanager
def _quiet_pynetdicom():
    """pynetdicom logs refusals and aborts itself; this module says them in one line instead."""
    logger = logging.getLogger("pynetdicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_reachable(dest, timeout_s):
    """None when a TCP connection opens, else the reason in words."""
    try:
        with socket.create_connection((dest.host, dest.port), timeout=timeout_s):
            return None
    except socket.gaierror:
        return f"unknown host {dest.host}"
    except ConnectionRefusedError:
        return f"connection refused by {dest.host}:{dest.port} (no DICOM node listening there)"
    except socket.timeout:
        return f"no answer from {dest.host}:{dest.port} within {timeout_s:g} s"
    except OSError as exc:
        return f"cannot connect to {dest.host}:{dest.port} ({exc.strerror or exc})"


def _contexts(files):
    """({SOP Class UID: transfer syntax UID}, {file: SOP Class UID}) of the files."""
    import pydicom

    out, classes = {}, {}
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        except Exception as exc:  # not a DICOM file: a user mistake in the list
            raise InputError(f"--send: {f} is not a readable DICOM file ({exc})") from None
        classes[f] = str(ds.file_meta.MediaStorageSOPClassUID)
        out.setdefault(classes[f], str(ds.file_meta.TransferSyntaxUID))
    return out, classes


def _application_entity(calling_aet, timeout_s, contexts):
    pynetdicom = _require_pynetdicom()
    ae = pynetdicom.AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    ae.add_requested_context("1.2.840.10008.1.1")  # Verification (C-ECHO)
    for sop_class, syntax in contexts.items():
        ae.add_requested_context(sop_class, [syntax])
    return ae


def _refusal_text(assoc):
    """The node's reason for refusing an association ('Called AE title not recognised', ...)."""
    primitive = getattr(getattr(assoc, "acceptor", None), "primitive", None)
    reason = getattr(primitive, "reason_str", "") if primitive is not None else ""
    result = getattr(primitive, "result_str", "") if primitive is not None else ""
    return ", ".join(t for t in (reason, result) if t) or "no reason given"


def _associate(ae, dest, calling_aet, timeout_s):
    """An established association, or DicomSendError (refused) / None (try again)."""
    problem = _check_reachable(dest, timeout_s)
    if problem:
        return None, problem
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if assoc.is_established:
        return assoc, None
    if assoc.is_rejected:
        raise DicomSendError(
            f"--send {dest}: the DICOM node refused the association ({_refusal_text(assoc)}); check that "
            f"{dest.ae_title!r} is its AE title and that it accepts our AE title {calling_aet!r}; nothing was sent")
    return None, f"association with {dest} aborted or timed out after {timeout_s:g} s"


def _store_all(assoc, files, classes, dest):
    """(stored files, failures {file: reason}) over one association."""
    accepted = {str(c.abstract_syntax) for c in assoc.accepted_contexts}
    refused = sorted({classes[f] for f in files if classes[f] not in accepted})
    if refused:
        raise DicomSendError(f"--send {dest}: the DICOM node does not accept objects of SOP class(es) {', '.join(refused)} "
                             "(e.g. RT Dose, Segmentation or Comprehensive 3D SR storage); nothing more was sent")
    status = assoc.send_c_echo()
    if not status or status.get("Status") != 0x0000:
        return [], {f: "C-ECHO failed" for f in files}
    stored, failed = [], {}
    for f in files:
        status = assoc.send_c_store(f)
        code = status.get("Status") if status else None
        if code in _STORED:
            stored.append(f)
        else:
            failed[f] = f"C-STORE status 0x{code:04X}" if code is not None else "no answer to C-STORE"
    return stored, failed


def send_files(files, dest, *, calling_aet="TAREDOSIMETRY", timeout_s=30.0, retries=2, progress=None):
    """Send DICOM files to ``dest`` (a :class:`Destination` or 'AET@HOST:PORT').

    Returns
    -------
    dict: destination, sent (count), attempts.

    Raises
    ------
    DicomSendError : the node refused the association, or files were still unsent after the retries.
    """
    dest = parse_destination(dest) if isinstance(dest, str) else dest
    files = [str(f) for f in files]
    if not files:
        raise InputError(f"--send {dest}: no DICOM file to send")
    contexts, classes = _contexts(files)
    ae = _application_entity(calling_aet, timeout_s, contexts)
    pending, problem, attempts = list(files), "", 0
    with _quiet_pynetdicom():
        while pending and attempts <= retries:
            if attempts:
                time.sleep(min(2.0 ** (attempts - 1), 8.0))
            attempts += 1
            if progress:
                progress(0.95, f"sending {len(pending)} DICOM object(s) to {dest} (attempt {attempts})")
            assoc, problem = _associate(ae, dest, calling_aet, timeout_s)
            if assoc is None:
                continue
            try:
                stored, failed = _store_all(assoc, pending, classes, dest)
            finally:
                assoc.release()
            pending = [f for f in pending if f not in stored]
            problem = "; ".join(f"{os.path.basename(f)}: {why}" for f, why in failed.items())
    if pending:
        raise DicomSendError(f"--send {dest}: {len(pending)} of {len(files)} DICOM object(s) not sent after {attempts} "
                             f"attempt(s): {problem}")
    return {"destination": str(dest), "sent": len(files), "attempts": attempts}


def echo(dest, *, calling_aet="TAREDOSIMETRY", timeout_s=10.0):
    """True when ``dest`` answers a C-ECHO; DicomSendError otherwise."""
    dest = parse_destination(dest) if isinstance(dest, str) else dest
    ae = _application_entity(calling_aet, timeout_s, {})
    with _quiet_pynetdicom():
        assoc, problem = _associate(ae, dest, calling_aet, timeout_s)
        if assoc is None:
            raise DicomSendError(f"--send {dest}: {problem}")
        try:
            status = assoc.send_c_echo()
        finally:
            assoc.release()
    if not status or status.get("Status") != 0x0000:
        raise DicomSendError(f"--send {dest}: C-ECHO failed")
    return True
