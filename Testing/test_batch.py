"""Batches: manifest mistakes as one-line errors, resume by content hash, summaries that are never
replaced or incomplete-looking, warnings, progress, and cases run on local worker processes."""

import csv
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import box_case
from TAREDosimetryLib.batch import BatchInterrupted, run_files_and_write, run_manifest
from TAREDosimetryLib.batch.progress import BatchProgress, duration_text
from TAREDosimetryLib.cli import main
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.imaging.images import write_image
from TAREDosimetryLib.reproduce import VARYING_KEYS


def _case_files(folder, uptake=5.0, name="spect.nrrd"):
    act, seg = box_case(tumour_uptake=uptake)
    spect = os.path.join(folder, name)
    write_image(act, spect)
    lab = seg.mask("liver").astype(np.uint8)
    lab[seg.mask("tumour")] = 2
    labels = os.path.join(folder, "labels.nii.gz")
    if not os.path.exists(labels):
        img = sitk.GetImageFromArray(lab)
        img.SetSpacing(act.spacing_mm)
        sitk.WriteImage(img, labels)
    return spect, labels


def _manifest(tmp_path, n=3, extra_cols="", extra_vals=None):
    """A manifest of n cases on the box phantom (tumour uptake 3, 4, 5 ...)."""
    rows = ["case_id,spect,segmentation,labels,administered_activity_gbq,lung_shunt_fraction" + extra_cols]
    for i in range(n):
        spect, labels = _case_files(str(tmp_path), uptake=3.0 + i, name=f"spect{i}.nrrd")
        extra = (extra_vals or {}).get(i, "," * extra_cols.count(","))
        rows.append(f'p{i},{os.path.basename(spect)},{os.path.basename(labels)},"1=liver,2=tumour",1.5,0.05{extra}')
    path = tmp_path / "cases.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _rows(path):
    with open(path, newline="") as fh:
        return {r["case_id"]: r for r in csv.DictReader(fh)}


def _metrics(folder):
    m = json.loads((folder / "metrics.json").read_text())
    for key in VARYING_KEYS:  # the date and the computing times
        m.pop(key)
    return m


def _batch(manifest, out, *extra):
    return main(["batch", "--manifest", str(manifest), "--out", str(out), "--quiet", "--no-report", *extra])


# -- user mistakes: exit 2 with one line -----------------------------------------------------------
def test_manifest_row_with_a_decimal_comma_is_exit_2_naming_the_line(tmp_path, capsys):
    spect, labels = _case_files(str(tmp_path))
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case_id,spect,segmentation,labels,administered_activity_gbq\n"
                        'p1,spect.nrrd,labels.nii.gz,"1=liver,2=tumour",1,5\n')
    assert _batch(manifest, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error" not in err
    assert "line 2" in err and "6 fields but the header has 5" in err and "decimal comma" in err


def test_batch_out_pointing_to_a_file_is_exit_2(tmp_path, capsys):
    manifest = _manifest(tmp_path, n=1)
    afile = tmp_path / "results.txt"
    afile.write_text("not a folder")
    assert _batch(manifest, afile) == 2
    err = capsys.readouterr().err.strip()
    assert "exists and is not a folder" in err and str(afile) in err and len(err.splitlines()) == 1
    assert afile.read_text() == "not a folder"


@pytest.mark.parametrize("cid", ["batch_summary.csv", "Batch_Summary-2.csv", ".hidden"])
def test_case_id_that_is_a_batch_file_name_is_exit_2(tmp_path, capsys, cid):
    spect, labels = _case_files(str(tmp_path))
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case_id,spect,segmentation,labels,administered_activity_gbq\n"
                        f'{cid},spect.nrrd,labels.nii.gz,"1=liver,2=tumour",1.5\n')
    assert _batch(manifest, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "belong to the batch's own files" in err and cid in err
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_empty_batch_out_is_exit_2(tmp_path, capsys, monkeypatch):
    manifest = _manifest(tmp_path, n=1)
    monkeypatch.chdir(tmp_path)
    assert _batch(manifest, "  ") == 2
    assert "--out is empty" in capsys.readouterr().err
    assert not (tmp_path / "p0").exists()


def test_case_ids_differing_only_in_letter_case_are_refused(tmp_path):
    spect, labels = _case_files(str(tmp_path))
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case_id,spect,segmentation\nP1,spect.nrrd,labels.nii.gz\np1,spect.nrrd,labels.nii.gz\n")
    with pytest.raises(InputError, match="repeated"):
        run_manifest(str(manifest), str(tmp_path / "out"))


@pytest.mark.parametrize("flags, match", [
    (["--workers", "0"], "--workers must be"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "omit --workers"),
    (["--retries", "-1"], "--retries"),
    (["--max-memory-gb", "0"], "--max-memory-gb"),
    (["--scheduler", " "], "--scheduler is empty"),
])
def test_bad_parallel_options_are_exit_2(tmp_path, capsys, flags, match):
    manifest = _manifest(tmp_path, n=1)
    assert _batch(manifest, tmp_path / "out", *flags) == 2
    assert match in capsys.readouterr().err


def test_a_second_batch_into_the_same_folder_is_refused_while_the_first_runs(tmp_path, capsys):
    manifest = _manifest(tmp_path, n=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".batch.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": os.getppid()}))
    assert _batch(manifest, out) == 2
    assert "another batch is writing to it" in capsys.readouterr().err
    # A lock left by a process that no longer runs is taken over.
    (out / ".batch.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": 2**22 + 12345}))
    assert _batch(manifest, out) == 0 and not (out / ".batch.lock").exists()


# -- resume, summaries ------------------------------------------------------------------------------
def test_rerun_skips_unchanged_cases_and_keeps_the_earlier_summary(tmp_path, capsys):
    manifest = _manifest(tmp_path, n=3)
    out = tmp_path / "out"
    assert _batch(manifest, out) == 0
    first = (out / "batch_summary.csv").read_text()
    mtimes = {c: (out / c / "metrics.json").stat().st_mtime_ns for c in ("p0", "p1", "p2")}
    record = json.loads((out / "p0" / "batch_record.json").read_text())
    assert len(record["content_sha256"]) == 64 and record["overall"] in ("PASS", "FAIL", "INCOMPLETE")
    capsys.readouterr()
    assert _batch(manifest, out) == 0
    text = capsys.readouterr().out
    assert (out / "batch_summary.csv").read_text() == first  # never replaced without --overwrite
    second = _rows(out / "batch_summary-2.csv")
    assert [r["status"] for r in second.values()] == ["skipped"] * 3
    assert all(r["overall"] and r["content_sha256"] == _rows(out / "batch_summary.csv")[c]["content_sha256"]
               for c, r in second.items())
    assert {c: (out / c / "metrics.json").stat().st_mtime_ns for c in mtimes} == mtimes
    assert "0/3 cases done, 3 skipped" in text and "batch_summary-2.csv" in text
    # --rerun recomputes every case; --overwrite replaces batch_summary.csv itself
    assert _batch(manifest, out, "--rerun", "--overwrite") == 0
    assert [r["status"] for r in _rows(out / "batch_summary.csv").values()] == ["ok"] * 3
    assert all((out / c / "metrics.json").stat().st_mtime_ns != mtimes[c] for c in mtimes)
    assert not (out / "batch_summary-3.csv").exists()


def test_changed_inputs_are_rerun_only_with_overwrite_and_failed_cases_run_again(tmp_path, capsys):
    manifest = _manifest(tmp_path, n=2)
    out = tmp_path / "out"
    text = manifest.read_text().replace("p1,spect1.nrrd", "p1,nope.nrrd")
    manifest.write_text(text)
    assert _batch(manifest, out) == 3
    assert not (out / "p1").exists()
    # p1's input fixed, p0's image changed (same path, other content)
    manifest.write_text(text.replace("p1,nope.nrrd", "p1,spect1.nrrd"))
    _case_files(str(tmp_path), uptake=9.0, name="spect0.nrrd")
    capsys.readouterr()
    assert _batch(manifest, out) == 3
    rows = _rows(out / "batch_summary-2.csv")
    assert rows["p1"]["status"] == "ok"  # the failed case ran again
    assert rows["p0"]["status"] == "failed" and "other inputs or parameters" in rows["p0"]["error"]
    assert "--overwrite" in rows["p0"]["error"]
    before = _metrics(out / "p0")
    assert _batch(manifest, out, "--overwrite") == 0
    rows = _rows(out / "batch_summary.csv")
    assert rows["p0"]["status"] == "ok" and rows["p1"]["status"] == "skipped"
    assert _metrics(out / "p0")["segments"] != before["segments"]


def test_a_changed_parameter_counts_as_changed(tmp_path):
    manifest = _manifest(tmp_path, n=1)
    out = tmp_path / "out"
    assert _batch(manifest, out) == 0
    assert _batch(manifest, out, "--k", "50") == 3
    assert _rows(out / "batch_summary-2.csv")["p0"]["status"] == "failed"


def test_each_case_holds_the_lock_of_its_folder_that_run_takes(tmp_path):
    # A run writing into OUT/p0 (it holds OUT/.p0.lock, as write_outputs takes it) makes that case fail
    # alone; a partial folder a killed attempt left behind is cleared before the case runs again.
    import subprocess
    import sys

    manifest = _manifest(tmp_path, n=2)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".p1.partial-999999-abc"
    stale.mkdir()
    (stale / "dose.nrrd").write_text("half written")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(out / ".p0.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        summary = run_manifest(str(manifest), str(out), report=False)
    finally:
        holder.kill()
        holder.wait()
    entries = {e["case_id"]: e for e in summary}
    assert entries["p0"]["status"] == "failed" and "another run is writing to" in entries["p0"]["error"]
    assert entries["p1"]["status"] == "ok" and not stale.exists()
    assert not (out / "p0").exists()
    # the lock released, the next run computes p0 and skips p1
    assert [e["status"] for e in run_manifest(str(manifest), str(out), report=False)] == ["ok", "skipped"]


def test_a_dicom_sender_goes_to_worker_processes_without_its_console():
    import pickle

    from TAREDosimetryLib.cli.common import DicomSender

    lines = []
    sender = DicomSender(["PACS@127.0.0.1:104"], "TAREDOSIMETRY", 5.0, 1, progress=lambda *a: None, echo=lines.append)
    copy = pickle.loads(pickle.dumps(sender))
    assert copy.dests == sender.dests and copy.calling_aet == "TAREDOSIMETRY" and copy.retries == 1
    assert copy.echo is None and copy.progress is None and sender.echo is not None


def test_case_warnings_appear_in_the_summary_and_at_the_end(tmp_path, capsys):
    # relative calibration ignores hours_since_administration: a warning of the case
    manifest = _manifest(tmp_path, n=2, extra_cols=",hours_since_administration", extra_vals={0: ",5", 1: ","})
    out = tmp_path / "out"
    assert _batch(manifest, out) == 0
    rows = _rows(out / "batch_summary.csv")
    assert rows["p0"]["warnings"] == "1" and "ignored with relative calibration" in rows["p0"]["first_warning"]
    assert rows["p1"]["warnings"] == "0" and rows["p1"]["first_warning"] == ""
    text = capsys.readouterr().out
    assert "warnings in 1 case(s):" in text and "p0: 1 warning; first: hours_since_administration" in text


def interrupting_runner(case, params, rules, dest, overwrite, report):
    if case["case_id"] == "p1":
        raise KeyboardInterrupt
    return run_files_and_write(case, params, rules, dest, overwrite, report)


def test_interrupted_batch_writes_the_summary_of_the_finished_cases(tmp_path):
    manifest = _manifest(tmp_path, n=3)
    out = tmp_path / "out"
    with pytest.raises(BatchInterrupted) as info:
        run_manifest(str(manifest), str(out), runner=interrupting_runner, report=False)
    rows = _rows(out / "batch_summary.csv")
    assert info.value.summary.path == str(out / "batch_summary.csv")
    assert rows["p0"]["status"] == "ok"
    assert rows["p1"]["status"] == rows["p2"]["status"] == "not_run"
    assert "interrupted" in rows["p1"]["error"]
    assert not (out / "p1").exists() and not (out / ".batch.lock").exists()
    # the next run resumes: p0 skipped, p1 and p2 computed
    summary = run_manifest(str(manifest), str(out), report=False)
    assert [e["status"] for e in summary] == ["skipped", "ok", "ok"]


def test_sigterm_during_a_batch_ends_it_as_an_interrupt_with_the_summary(tmp_path, monkeypatch, capsys):
    # The command line turns SIGTERM into an interrupt (cli.main): the batch writes the summary of the
    # finished cases, leaves nothing half-written and exits 128 + 15.
    from TAREDosimetryLib.batch import casefiles

    real = casefiles.run_files_and_write

    def terminated_at_p1(case, *args, **kwargs):
        if case["case_id"] == "p1":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        return real(case, *args, **kwargs)

    monkeypatch.setattr(casefiles, "run_files_and_write", terminated_at_p1)
    manifest = _manifest(tmp_path, n=3)
    out = tmp_path / "out"
    before = signal.getsignal(signal.SIGTERM)
    assert _batch(manifest, out) == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before  # restored after the batch
    assert "interrupted (SIGTERM)" in capsys.readouterr().err
    rows = _rows(out / "batch_summary.csv")
    assert rows["p0"]["status"] == "ok" and rows["p1"]["status"] == rows["p2"]["status"] == "not_run"
    assert not (out / "p1").exists() and not [p for p in os.listdir(out) if p.startswith(".")]


def test_progress_counts_and_estimates_the_time_left():
    lines = []
    p = BatchProgress(4, lines.append, width=8)
    p.update({"case_id": "a", "status": "skipped", "overall": "PASS", "seconds": 0.0})
    assert "estimating the time left" in lines[-1]
    p.started()
    p.start -= 10.0  # 10 s ago
    p.update({"case_id": "b", "status": "ok", "overall": "PASS", "seconds": 5.0})
    p.update({"case_id": "c", "status": "failed", "error": "bad\nmore", "seconds": 5.0})
    assert "[######--] 3/4: 1 done, 1 failed, 1 skipped; about 5 s left" in lines[-1]
    assert "c: failed: bad in 5.0 s" in lines[-1]
    assert duration_text(125) == "2 min 05 s" and duration_text(7300) == "2 h 01 min"


# -- local worker processes -------------------------------------------------------------------------
def test_worker_processes_give_the_same_results_as_the_serial_run(tmp_path):
    manifest = _manifest(tmp_path, n=3)
    serial = run_manifest(str(manifest), str(tmp_path / "serial"), report=False)
    pooled = run_manifest(str(manifest), str(tmp_path / "pool"), report=False, workers=2)
    assert [e["status"] for e in pooled] == ["ok"] * 3
    assert len({e["worker"] for e in pooled} | {e["worker"] for e in serial}) >= 2
    for e in pooled:
        assert float(e["peak_rss_mb"]) > 50
        assert _metrics(tmp_path / "pool" / e["case_id"]) == _metrics(tmp_path / "serial" / e["case_id"])
    assert [e["content_sha256"] for e in pooled] == [e["content_sha256"] for e in serial]


def victim_runner(case, params, rules, dest, overwrite, report):
    """Runs the case; its first attempt of case 'p1' waits to be killed by the test."""
    marker = os.path.join(os.path.dirname(dest), f"started-{case['case_id']}.pid")
    if case["case_id"] == "p1" and not os.path.exists(marker):
        with open(marker + ".tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(marker + ".tmp", marker)
        time.sleep(60)
    return run_files_and_write(case, params, rules, dest, overwrite, report)


def _kill_when_started(marker, seen):
    t_end = time.time() + 60
    while time.time() < t_end:
        if os.path.exists(marker):
            pid = int(open(marker).read())
            seen.append(pid)
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.05)


def _run_with_a_killed_worker(tmp_path, **kw):
    manifest = _manifest(tmp_path, n=3)
    out = tmp_path / "out"
    out.mkdir()
    killed = []
    killer = threading.Thread(target=_kill_when_started, args=(str(out / "started-p1.pid"), killed))
    killer.start()
    summary = run_manifest(str(manifest), str(out), report=False, runner=victim_runner, **kw)
    killer.join()
    assert killed, "the test never saw case p1 start"
    return out, summary, killed[0]


def test_a_killed_worker_does_not_lose_its_case(tmp_path):
    out, summary, pid = _run_with_a_killed_worker(tmp_path, workers=2)
    entries = {e["case_id"]: e for e in summary}
    assert [e["status"] for e in summary] == ["ok"] * 3
    assert entries["p1"]["attempts"] == 2 and entries["p1"]["worker"] != f"{os.uname().nodename}:{pid}"
    assert (out / "p1" / "metrics.json").exists()
    assert _rows(out / "batch_summary.csv")["p1"]["attempts"] == "2"


def test_a_case_whose_worker_dies_more_often_than_retries_is_recorded_failed(tmp_path):
    out, summary, _pid = _run_with_a_killed_worker(tmp_path, workers=2, retries=0)
    entries = {e["case_id"]: e for e in summary}
    assert entries["p1"]["status"] == "failed" and "killed by signal SIGKILL" in entries["p1"]["error"]
    assert entries["p0"]["status"] == entries["p2"]["status"] == "ok"
    assert not (out / "p1").exists()


def hungry_runner(case, params, rules, dest, overwrite, report):
    if case["case_id"] == "p1":
        block = np.ones(200 * 2**20 // 8)  # 200 MB on top of the worker's ~150 MB
        time.sleep(2.0)
        del block
    return run_files_and_write(case, params, rules, dest, overwrite, report)


def test_a_case_above_the_worker_memory_limit_is_stopped_and_recorded(tmp_path):
    manifest = _manifest(tmp_path, n=2)
    summary = run_manifest(str(manifest), str(tmp_path / "out"), report=False, runner=hungry_runner, workers=1,
                           max_memory_gb=0.3)
    assert summary[0]["status"] == "ok" and float(summary[0]["peak_rss_mb"]) < 300
    assert summary[1]["status"] == "failed" and "more than the worker's memory limit of 0.30 GB" in summary[1]["error"]
    assert not (tmp_path / "out" / "p1").exists()


def test_runner_defined_in_a_function_cannot_go_to_workers(tmp_path):
    manifest = _manifest(tmp_path, n=1)

    def local_runner(*a):
        return None

    with pytest.raises(InputError, match="run serially"):
        run_manifest(str(manifest), str(tmp_path / "out"), runner=local_runner, workers=2)


# -- Dask ------------------------------------------------------------------------------------------
def test_dask_local_cluster_with_2_workers_gives_the_same_results_as_the_serial_run(tmp_path):
    pytest.importorskip("distributed")
    manifest = _manifest(tmp_path, n=3)
    serial = run_manifest(str(manifest), str(tmp_path / "serial"), report=False)
    environment = dict(os.environ)
    dasked = run_manifest(str(manifest), str(tmp_path / "dask"), report=False, dask=True, workers=2)
    # the nannies' OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_=65536, ... are not left in this process
    # (local workers started next would take them for the user's settings)
    assert dict(os.environ) == environment
    assert [e["status"] for e in dasked] == ["ok"] * 3
    assert not {e["worker"] for e in dasked} & {e["worker"] for e in serial}  # ran elsewhere
    for e in dasked:
        assert _metrics(tmp_path / "dask" / e["case_id"]) == _metrics(tmp_path / "serial" / e["case_id"])
    # resume on the cluster too: nothing left to run
    again = run_manifest(str(manifest), str(tmp_path / "dask"), report=False, dask=True, workers=2)
    assert [e["status"] for e in again] == ["skipped"] * 3


def test_a_killed_dask_worker_does_not_lose_its_case(tmp_path):
    pytest.importorskip("distributed")
    out, summary, pid = _run_with_a_killed_worker(tmp_path, dask=True, workers=2)
    entries = {e["case_id"]: e for e in summary}
    assert [e["status"] for e in summary] == ["ok"] * 3
    assert entries["p1"]["worker"] != f"{os.uname().nodename}:{pid}"
    assert (out / "p1" / "metrics.json").exists()


def test_unreachable_scheduler_is_exit_2(tmp_path, capsys):
    pytest.importorskip("distributed")
    manifest = _manifest(tmp_path, n=1)
    from TAREDosimetryLib.batch import daskcluster

    old = daskcluster.CONNECT_TIMEOUT_S
    daskcluster.CONNECT_TIMEOUT_S = 2
    try:
        assert _batch(manifest, tmp_path / "out", "--scheduler", "tcp://127.0.0.1:9") == 2
    finally:
        daskcluster.CONNECT_TIMEOUT_S = old
    assert "cannot connect to a Dask scheduler" in capsys.readouterr().err
    # README "When an input is wrong": nothing is written, so a corrected rerun writes batch_summary.csv itself
    assert not (tmp_path / "out").exists()


def test_unreachable_scheduler_leaves_an_existing_out_folder_untouched(tmp_path, capsys):
    pytest.importorskip("distributed")
    manifest = _manifest(tmp_path, n=1)
    (tmp_path / "out").mkdir()
    from TAREDosimetryLib.batch import daskcluster

    old = daskcluster.CONNECT_TIMEOUT_S
    daskcluster.CONNECT_TIMEOUT_S = 2
    try:
        assert _batch(manifest, tmp_path / "out", "--scheduler", "tcp://127.0.0.1:9") == 2
    finally:
        daskcluster.CONNECT_TIMEOUT_S = old
    assert os.listdir(tmp_path / "out") == []
    assert capsys.readouterr().err.count("\n") == 1  # one line


# -- the Slicer batch script reuses the engine's batch ---------------------------------------------
def test_slicer_batch_script_runs_the_engine_batch_with_its_runner(tmp_path, monkeypatch):
    # Stand-ins for Slicer and the module's logic: runFromFiles runs the engine, as the real one does
    # through MRML nodes.  What is checked is the script's use of the engine's run_manifest.
    import importlib.util
    import sys
    import types

    from conftest import REPO
    from TAREDosimetryLib.batch import run_case_files
    from TAREDosimetryLib.reporting.outputs import write_outputs

    calls, names = [], []

    class FakeLogic:
        def runFromFiles(self, activityPath, segmentationPath, ctPath=None, params=None, roles=None, rules=None,
                         outDir=None, labelNames=None, report=True, overwrite=False, caseName=""):
            calls.append(activityPath)
            names.append(caseName)
            result, inputs = run_case_files(activityPath, segmentationPath, ct=ctPath, labels=labelNames, roles=roles,
                                            params=params, rules=rules)
            write_outputs(result, outDir, overwrite=overwrite, report=report)
            return result

    slicer = types.SimpleNamespace(app=types.SimpleNamespace(processEvents=lambda: None))
    monkeypatch.setitem(sys.modules, "slicer", slicer)
    monkeypatch.setitem(sys.modules, "TAREDosimetry", types.SimpleNamespace(TAREDosimetryLogic=FakeLogic))
    path = os.path.join(REPO, "TAREDosimetry", "TAREDosimetryScripts", "TAREDosimetryBatch.py")
    spec = importlib.util.spec_from_file_location("TAREDosimetryBatch_under_test", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    manifest = _manifest(tmp_path, n=2)
    out = tmp_path / "out"
    lines = []
    summary = script.run_manifest(str(manifest), str(out), report=False, log=lines.append)
    assert [e["status"] for e in summary] == ["ok", "ok"] and len(calls) == 2 and names == ["p0", "p1"]
    assert any("2/2 cases done" in m for m in lines)
    assert script.main(["--", "--manifest", str(manifest), "--out", str(out), "--no-report"]) == 0
    assert len(calls) == 2  # the second run skipped both unchanged cases
    assert [r["status"] for r in _rows(out / "batch_summary-2.csv").values()] == ["skipped", "skipped"]


def test_worker_processes_cap_the_threads_of_their_cases(monkeypatch):
    """Parallel cases must not each use every core: a worker starts with TARE_DOSIMETRY_THREADS and the BLAS /
    OpenMP thread variables set to its share of the cores, and the engine's thread pools read that cap."""
    from TAREDosimetryLib.batch import pool
    from TAREDosimetryLib.dose import backend
    from TAREDosimetryLib.imaging import nrrdwrite
    from TAREDosimetryLib.threads import THREADS_ENV, cpu_threads

    for v in pool._BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    env = pool._worker_environment(1)
    assert env[THREADS_ENV] == "1" and all(env[v] == "1" for v in pool._BLAS_THREAD_VARIABLES)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")  # the user's own setting is kept
    assert "OPENBLAS_NUM_THREADS" not in pool._worker_environment(1)
    monkeypatch.setenv(THREADS_ENV, "1")
    assert cpu_threads() == 1 and backend.cpu_workers() == 1 and nrrdwrite._compress_threads() == 1
