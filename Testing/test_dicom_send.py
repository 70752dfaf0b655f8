"""Sending the DICOM exports: against pynetdicom's own storage SCP and a real Orthanc server on 127.0.0.1.

Orthanc (the Debian package ``orthanc``) is started by this module with a temporary configuration
and storage, or taken from ``TARE_DOSIMETRY_ORTHANC`` ("AET@HOST:DICOMPORT,http://HOST:HTTPPORT",
set by ``.ci/run``); the Orthanc tests skip, with the reason, when it cannot start.  "Byte-identical"
means the dataset (everything after the File Meta Information group, which Orthanc writes itself)
retrieved through Orthanc's REST API equals our file's, byte for byte.
"""

import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

pydicom = pytest.importorskip("pydicom")
pynetdicom = pytest.importorskip("pynetdicom")

from test_dicom_in import _pet_case  # noqa: E402
from TAREDosimetryLib import InputError  # noqa: E402
from TAREDosimetryLib.cli import main  # noqa: E402
from TAREDosimetryLib.reporting.dicomsend import DicomSendError, echo, parse_destination, send_files  # noqa: E402

ORTHANC_START_S = 30.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dataset_body(data):
    """The bytes of a DICOM file after its File Meta Information group."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return data[132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength):]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """dose.dcm, segments.dcm and metrics_sr.dcm of a DICOM PET case."""
    pytest.importorskip("highdicom")
    tmp = tmp_path_factory.mktemp("send")
    folder, lab, _ = _pet_case(tmp)
    out = tmp / "out"
    assert main(["run", "--pet", folder, "--segmentation", lab, "--labels", "1=liver,2=tumour", "--out", str(out),
                 "--no-report", "--rtdose", "--dicom-sr", "--quiet"]) == 0
    return {"folder": folder, "labels": lab, "files": [str(out / f) for f in ("dose.dcm", "segments.dcm", "metrics_sr.dcm")]}


# -- pynetdicom's storage SCP --------------------------------------------------------------------
class StorageSCP:
    """A pynetdicom storage SCP on 127.0.0.1 that keeps the raw bytes of what it receives."""

    def __init__(self, ae_title="STORESCP", contexts=None):
        from pynetdicom import AE, StoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        self.received = []
        self.ae = AE(ae_title=ae_title)
        self.ae.require_called_aet = True
        self.ae.add_supported_context(Verification)
        for cx in contexts or StoragePresentationContexts:
            self.ae.add_supported_context(cx.abstract_syntax, pydicom.uid.ExplicitVRLittleEndian)
        self.port = _free_port()
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        self.dest = f"{ae_title}@127.0.0.1:{self.port}"

    def _on_store(self, event):
        self.received.append(event.request.DataSet.getvalue())
        return 0x0000

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def scp():
    server = StorageSCP()
    yield server
    server.stop()


def test_destination_parsing():
    d = parse_destination("PACS_1@pacs.example.org:11112")
    assert (d.ae_title, d.host, d.port) == ("PACS_1", "pacs.example.org", 11112)
    assert parse_destination("ORTHANC@[::1]:4242").host == "::1"
    for bad in ("PACS:104", "PACS@host", "A_TITLE_LONGER_THAN_16@h:1", "PACS@host:0", "PACS@host:70000", "P\\X@h:1"):
        with pytest.raises(InputError, match="--send"):
            parse_destination(bad)


def test_run_sends_every_export_to_a_storage_scp_byte_for_byte(exports, scp, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--pet", exports["folder"], "--segmentation", exports["labels"], "--labels", "1=liver,2=tumour",
                 "--out", str(out), "--no-report", "--rtdose", "--dicom-sr", "--quiet", "--send", scp.dest]) == 0
    assert f"sent 3 DICOM object(s) to {scp.dest}" in capsys.readouterr().out
    sent = sorted(_dataset_body(open(out / f, "rb").read()) for f in ("dose.dcm", "segments.dcm", "metrics_sr.dcm"))
    assert sorted(scp.received) == sent


def test_refused_association_names_the_reason_and_sends_nothing(exports, scp):
    with pytest.raises(DicomSendError, match=r"refused the association \(Called AE title not recognised"):
        send_files(exports["files"], f"NOTME@127.0.0.1:{scp.port}", timeout_s=5)
    assert scp.received == []


def test_connection_refused_is_retried_then_reported(exports):
    port = _free_port()
    t0 = time.perf_counter()
    with pytest.raises(DicomSendError, match=r"3 of 3 .* not sent after 2 attempt\(s\): connection refused"):
        send_files(exports["files"], f"PACS@127.0.0.1:{port}", timeout_s=2, retries=1)
    assert time.perf_counter() - t0 >= 1.0  # one pause before the retry


def test_a_silent_node_times_out(exports):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # accept and never answer
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with pytest.raises(DicomSendError, match="aborted or timed out after 1 s"):
            send_files(exports["files"], f"PACS@127.0.0.1:{listener.getsockname()[1]}", timeout_s=1, retries=0)
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        listener.close()


def test_a_node_that_does_not_store_rt_dose_is_reported(exports):
    from pynetdicom import StoragePresentationContexts

    ct_only = [cx for cx in StoragePresentationContexts if cx.abstract_syntax == "1.2.840.10008.5.1.4.1.1.2"]
    server = StorageSCP(contexts=ct_only)
    try:
        with pytest.raises(DicomSendError, match="does not accept objects of SOP class"):
            send_files(exports["files"], server.dest, timeout_s=5)
    finally:
        server.stop()


def test_send_failure_keeps_the_results_and_exits_2(exports, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["run", "--pet", exports["folder"], "--segmentation", exports["labels"], "--labels", "1=liver,2=tumour",
               "--out", str(out), "--no-report", "--rtdose", "--quiet", "--send", f"PACS@127.0.0.1:{_free_port()}",
               "--send-retries", "0", "--send-timeout", "2"])
    assert rc == 2 and "connection refused" in capsys.readouterr().err
    assert (out / "metrics.json").is_file() and (out / "dose.dcm").is_file()


# -- Orthanc -----------------------------------------------------------------------------------
class Orthanc:
    def __init__(self, dest, http):
        self.dest, self.http = dest, http.rstrip("/")

    def get(self, path, data=None):
        req = urllib.request.Request(self.http + path, data=data, method="POST" if data is not None else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def instance_file(self, sop_instance_uid):
        found = json.loads(self.get("/tools/lookup", data=sop_instance_uid.encode()))
        ids = [f["ID"] for f in found if f["Type"] == "Instance"]
        assert ids, f"Orthanc has no instance {sop_instance_uid}"
        return self.get(f"/instances/{ids[0]}/file")


def _start_orthanc(tmp):
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if os.path.exists("/usr/sbin/Orthanc") else None)
    if binary is None:
        pytest.skip("Orthanc is not installed (Debian: apt-get install orthanc); the Orthanc tests need it")
    dicom_port, http_port = _free_port(), _free_port()
    config = {"Name": "tare-test", "StorageDirectory": str(tmp / "db"), "IndexDirectory": str(tmp / "db"),
              "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True,
              "DicomAlwaysAllowEcho": True, "Plugins": [], "StorageCompression": False, "UnknownSopClassAccepted": True}
    (tmp / "orthanc.json").write_text(json.dumps(config))
    log = open(tmp / "orthanc.log", "wb")
    proc = subprocess.Popen([binary, str(tmp / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp))
    server = Orthanc(f"ORTHANC@127.0.0.1:{dicom_port}", f"http://127.0.0.1:{http_port}")
    deadline = time.monotonic() + ORTHANC_START_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            server.get("/system")
            return proc, server
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    proc.wait(timeout=10)
    tail = (tmp / "orthanc.log").read_text(errors="replace")[-400:]
    pytest.skip(f"Orthanc did not start within {ORTHANC_START_S:g} s: {tail}")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    given = os.environ.get("TARE_DOSIMETRY_ORTHANC")
    if given:
        dest, http = given.split(",", 1)
        yield Orthanc(dest, http)
        return
    proc, server = _start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_orthanc_answers_c_echo_and_refuses_a_wrong_ae_title(orthanc, exports):
    assert echo(orthanc.dest, timeout_s=5)
    host_port = orthanc.dest.split("@", 1)[1]
    with pytest.raises(DicomSendError, match="refused the association"):
        send_files(exports["files"], f"NOTORTHANC@{host_port}", timeout_s=5)


def test_a_series_sent_to_orthanc_comes_back_byte_identical(orthanc, exports):
    report = send_files(exports["files"], orthanc.dest, timeout_s=10)
    assert report["sent"] == 3
    for path in exports["files"]:
        ours = open(path, "rb").read()
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        back = orthanc.instance_file(uid)
        assert _dataset_body(back) == _dataset_body(ours), os.path.basename(path)
    dose = pydicom.dcmread(io.BytesIO(orthanc.instance_file(pydicom.dcmread(exports["files"][0]).SOPInstanceUID)))
    assert dose.Modality == "RTDOSE" and dose.DoseUnits == "GY"
