"""Result folders are replaced whole or not at all: failures part-way, locks, signals, stale
hidden folders of killed runs, and output folders that cannot take a result."""

import errno
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import REPO, box_case
from TAREDosimetryLib.cli import main
from TAREDosimetryLib.imaging.images import write_image
from TAREDosimetryLib.reporting import resultfolder

LIB_PARENT = os.path.join(REPO, "TAREDosimetry")


def case_files(folder):
    """(spect.nrrd, labels.nii.gz) of the box case in ``folder``."""
    act, seg = box_case()
    spect = os.path.join(str(folder), "spect.nrrd")
    write_image(act, spect)
    lab = seg.mask("liver").astype(np.uint8)
    lab[seg.mask("tumour")] = 2
    labels = os.path.join(str(folder), "labels.nii.gz")
    img = sitk.GetImageFromArray(lab)
    img.SetSpacing(act.spacing_mm)
    sitk.WriteImage(img, labels)
    return spect, labels


def run_args(folder, out, *extra, activity="1"):
    spect, labels = case_files(folder)
    return ["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour",
            "--administered-activity-gbq", activity, "--lung-shunt-fraction", "0.05", "--out", str(out), "--quiet", "--no-report", *extra]


def snapshot(folder):
    """{file name: bytes} of a folder (not recursive), to compare before and after."""
    return {n: (open(os.path.join(folder, n), "rb").read() if os.path.isfile(os.path.join(folder, n)) else "<dir>")
            for n in sorted(os.listdir(folder))}


def hidden_left(parent):
    return [n for n in os.listdir(parent) if n.startswith(".")]


@pytest.fixture
def earlier_result(tmp_path):
    """An output folder holding a complete earlier result (activity 1 GBq) and a file of the user."""
    out = tmp_path / "out"
    assert main(run_args(tmp_path, out)) == 0
    (out / "my notes.txt").write_text("keep me")
    return out


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tare-dosimetry: error:"), err
    return err


def test_failure_while_swapping_in_leaves_the_earlier_result_exactly_as_it_was(tmp_path, earlier_result, monkeypatch, capsys):
    before = snapshot(earlier_result)
    real_replace = os.replace
    moved_in = []

    def replace(src, dst):
        if ".partial-" in str(src) and str(dst).startswith(str(earlier_result)):
            moved_in.append(os.path.basename(dst))
            if len(moved_in) == 2:  # dose.nrrd is in, metrics.csv fails: the disk is full
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    code = main(run_args(tmp_path, earlier_result, "--overwrite", activity="2"))
    monkeypatch.setattr(os, "replace", real_replace)
    err = one_line_error(capsys)
    assert code == 2 and "cannot write the results" in err and "No space left" in err
    assert moved_in == ["dose.nrrd", "metrics.csv"]
    assert snapshot(earlier_result) == before
    assert hidden_left(tmp_path) == []


def test_overwrite_replaces_the_result_and_keeps_the_users_files(tmp_path, earlier_result):
    before = snapshot(earlier_result)
    assert main(run_args(tmp_path, earlier_result, "--overwrite", activity="2")) == 0
    after = snapshot(earlier_result)
    assert set(after) == set(before) and after["my notes.txt"] == b"keep me"
    assert after["metrics.json"] != before["metrics.json"] and after["dose.nrrd"] != before["dose.nrrd"]
    assert hidden_left(tmp_path) == []


def test_a_folder_named_like_a_result_file_is_refused_before_any_work(tmp_path, earlier_result, capsys):
    os.remove(earlier_result / "dose.nrrd")
    (earlier_result / "dose.nrrd").mkdir()
    before = snapshot(earlier_result)
    assert main(run_args(tmp_path, earlier_result, "--overwrite")) == 2
    err = one_line_error(capsys)
    assert "dose.nrrd there is a folder" in err
    assert snapshot(earlier_result) == before and hidden_left(tmp_path) == []


def test_a_read_only_result_file_is_refused(tmp_path, earlier_result, capsys):
    os.chmod(earlier_result / "metrics.json", 0o444)
    before = snapshot(earlier_result)
    assert main(run_args(tmp_path, earlier_result, "--overwrite")) == 2
    assert "metrics.json there is read-only" in one_line_error(capsys)
    assert snapshot(earlier_result) == before


def test_a_place_that_cannot_be_written_is_exit_2_not_an_internal_error(tmp_path, monkeypatch, capsys):
    def refused(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(resultfolder.tempfile, "mkdtemp", refused)
    assert main(run_args(tmp_path, tmp_path / "out")) == 2
    err = one_line_error(capsys)
    assert "cannot write the results: Permission denied" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions that apply (not root)")
def test_a_read_only_parent_folder_is_refused(tmp_path, capsys):
    spect_dir = tmp_path / "in"
    spect_dir.mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    try:
        assert main(run_args(spect_dir, locked / "out")) == 2
    finally:
        os.chmod(locked, 0o755)
    assert "is not writable" in one_line_error(capsys)


@pytest.mark.parametrize("out", ["", "   ", " out"])
def test_an_empty_or_blank_output_name_is_refused(tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    args = run_args(tmp_path, out)
    before = sorted(os.listdir(tmp_path))
    assert main(args) == 2
    err = one_line_error(capsys)
    assert "--out" in err and ("no folder name" in err or "spaces" in err)
    assert sorted(os.listdir(tmp_path)) == before


def _python(script):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=LIB_PARENT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=LIB_PARENT))


def test_a_second_run_into_a_folder_being_written_stops_at_once(tmp_path, capsys):
    out = tmp_path / "out"
    holder = _python(f"""
        import time
        from TAREDosimetryLib.reporting.resultfolder import output_lock
        with output_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(run_args(tmp_path, out)) == 2
        err = one_line_error(capsys)
        assert f"another run is writing to {out}" in err and f"process {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    assert not out.exists()
    assert main(run_args(tmp_path, out)) == 0  # the lock of a killed process is free again
    assert hidden_left(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_stop_signal_while_writing_leaves_no_hidden_folder(tmp_path, signame):
    spect, labels = case_files(tmp_path)
    out = tmp_path / "out"
    child = _python(f"""
        import sys, time
        from TAREDosimetryLib.reporting import outputs
        real = outputs._write_csv
        def slow(*a, **k):
            real(*a, **k)
            print("writing", flush=True)
            time.sleep(60)
        outputs._write_csv = slow
        from TAREDosimetryLib.cli import main
        sys.exit(main(["run", "--spect", {spect!r}, "--segmentation", {labels!r}, "--labels", "1=liver,2=tumour",
                       "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0.05", "--out", {str(out)!r}, "--quiet", "--no-report"]))
    """)
    try:
        assert child.stdout.readline().strip() == "writing"
        assert [n for n in hidden_left(tmp_path) if ".partial-" in n]  # the partial folder exists now
        child.send_signal(getattr(signal, signame))
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
    signum = int(getattr(signal, signame))
    assert child.returncode == 128 + signum, err
    assert f"interrupted ({signame})" in err
    assert hidden_left(tmp_path) == [] and not out.exists()


def test_stale_partial_folders_of_killed_runs_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    stale = tmp_path / ".out.partial-999999-abcd"
    stale.mkdir()
    (stale / "dose.nrrd").write_bytes(b"half")
    other = tmp_path / ".other.partial-999999-abcd"  # another folder's: not ours to remove
    other.mkdir()
    assert main(run_args(tmp_path, out)) == 0
    assert not stale.exists() and other.exists()


def test_a_swap_killed_half_way_is_undone_by_the_next_run(tmp_path, earlier_result):
    before = snapshot(earlier_result)
    backup = tmp_path / ".out.previous-999999-abcd"
    backup.mkdir()
    for n in ("metrics.json", "report.html", "dvh.csv", "metrics.csv", "dose.nrrd"):
        if (earlier_result / n).exists():
            os.replace(earlier_result / n, backup / n)
    (earlier_result / "dose.nrrd").write_bytes(b"new, but the swap was killed")
    with resultfolder.output_lock(earlier_result):
        handled = resultfolder.remove_stale_partials(earlier_result)
    assert handled == [str(backup)]
    assert snapshot(earlier_result) == before and not backup.exists()


def test_a_swap_killed_after_it_completed_drops_the_earlier_result(tmp_path, earlier_result):
    before = snapshot(earlier_result)
    backup = tmp_path / ".out.previous-999999-abcd"
    backup.mkdir()
    (backup / "metrics.json").write_text("{}")
    with resultfolder.output_lock(earlier_result):
        resultfolder.remove_stale_partials(earlier_result)
    assert snapshot(earlier_result) == before and not backup.exists()


def test_the_lock_is_reentrant_within_a_process_and_released_after(tmp_path):
    out = tmp_path / "out"
    with resultfolder.output_lock(out):
        with resultfolder.output_lock(out):
            assert os.path.exists(tmp_path / ".out.lock")
        assert os.path.exists(tmp_path / ".out.lock")
    assert not os.path.exists(tmp_path / ".out.lock")
