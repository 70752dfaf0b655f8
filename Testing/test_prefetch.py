"""Image files read ahead in the background (imaging/prefetch.py): the same image as a plain read,
a file changed or damaged in between read again in the main thread, nothing read ahead for DICOM
or a one-thread case, ITK's warning display restored, and ``tare-dosimetry run`` taking its files
from the background read before the engine's stages are imported."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import REPO, box_case
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.imaging import prefetch
from TAREDosimetryLib.imaging.images import read_image, read_sitk_image, write_image
from TAREDosimetryLib.threads import THREADS_ENV


@pytest.fixture(autouse=True)
def _two_threads(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "2")  # read ahead even on a one-core test machine
    yield
    prefetch.cancel()


def _image(tmp_path, name="spect.nrrd", scale=1.0, compress=True):
    activity, _ = box_case()
    path = str(tmp_path / name)
    write_image(activity.__class__(activity.array * scale, grid=activity.grid), path, compress=compress)
    return path


def test_an_image_read_ahead_is_the_image_a_plain_read_gives(tmp_path):
    path = _image(tmp_path)
    plain = sitk.ReadImage(path)
    assert prefetch.start_reading([path, None]) == 1
    taken = read_sitk_image(path, "SPECT image")
    assert prefetch.pending() == 0
    assert np.array_equal(sitk.GetArrayViewFromImage(taken), sitk.GetArrayViewFromImage(plain))
    assert (taken.GetSpacing(), taken.GetOrigin(), taken.GetDirection()) == (plain.GetSpacing(), plain.GetOrigin(), plain.GetDirection())
    assert {k: taken.GetMetaData(k) for k in taken.GetMetaDataKeys()} == {k: plain.GetMetaData(k) for k in plain.GetMetaDataKeys()}
    assert prefetch.take(path) is None  # taken once: a second read reads the file


def test_a_file_changed_after_the_read_started_is_read_again(tmp_path):
    path = _image(tmp_path)
    assert prefetch.start_reading([path]) == 1
    while prefetch.pending() and not all(r.done.is_set() for r in list(prefetch._READS.values())):
        threading.Event().wait(0.01)
    new = _image(tmp_path, "other.nrrd", scale=3.0)
    os.replace(new, path)  # another file (inode, size or time differ) under the same name
    vol = read_image(path)
    assert np.allclose(vol.array, box_case()[0].array * 3.0)


def test_a_damaged_file_read_ahead_is_refused_in_the_engines_words(tmp_path):
    path = _image(tmp_path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])  # cut short: ITK fails in the background
    assert prefetch.start_reading([path]) == 1
    with pytest.raises(InputError, match=r"SPECT image: .*spect\.nrrd.*(truncated|cannot read)"):
        read_image(path, "SPECT image")
    assert prefetch.pending() == 0


def test_nothing_is_read_ahead_for_dicom_missing_files_or_one_thread(tmp_path, monkeypatch):
    path = _image(tmp_path)
    folder = tmp_path / "dicom"
    folder.mkdir()
    assert prefetch.start_reading([str(folder), path]) == 0  # a DICOM series: everything in the main thread
    assert prefetch.start_reading([str(tmp_path / "missing.nrrd"), path]) == 0
    assert prefetch.start_reading([str(tmp_path / "notes.txt"), path]) == 0
    monkeypatch.setenv(THREADS_ENV, "1")
    assert prefetch.start_reading([path]) == 0
    assert prefetch.pending() == 0


@pytest.mark.parametrize("end", ["take", "cancel"])
def test_itk_warnings_are_off_while_reads_are_pending_and_restored_after(tmp_path, end):
    path = _image(tmp_path)
    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    prefetch.start_reading([path])
    assert sitk.ProcessObject.GetGlobalWarningDisplay() is False
    if end == "take":
        prefetch.take(path)
    else:
        prefetch.cancel()
    assert sitk.ProcessObject.GetGlobalWarningDisplay() == before


def _case(tmp_path):
    from TAREDosimetryLib import Volume

    activity, seg = box_case()
    spect, labels = str(tmp_path / "spect.nrrd"), str(tmp_path / "labels.nrrd")
    write_image(activity, spect)
    lab = seg.mask("liver").astype(np.uint8)
    lab[seg.mask("tumour")] = 2
    write_image(Volume(lab, grid=seg.grid), labels, dtype=np.uint8)
    return spect, labels


def test_run_reads_its_files_ahead_while_the_stages_are_imported(tmp_path):
    """In a fresh process: the background read starts before the pipeline module is imported, the
    files are taken from it (none left pending), and the results equal those of a run without it."""
    spect, labels = _case(tmp_path)
    code = (
        "import sys, json\n"
        "import TAREDosimetryLib.imaging.prefetch as pf\n"
        "seen = {}\n"
        "start, take = pf.start_reading, pf.take\n"
        "def s(paths):\n"
        "    seen['pipeline imported at start'] = 'TAREDosimetryLib.pipeline' in sys.modules\n"
        "    seen['started'] = start(paths)\n"
        "    return seen['started']\n"
        "def t(path):\n"
        "    img = take(path)\n"
        "    seen.setdefault('taken', []).append(img is not None)\n"
        "    return img\n"
        "pf.start_reading, pf.take = s, t\n"
        "from TAREDosimetryLib.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "seen['pending'] = pf.pending()\n"
        "print('SEEN', json.dumps(seen))\n"
        "sys.exit(rc)\n"
    )
    args = ["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour", "--administered-activity-gbq", "1",
            "--lung-shunt-fraction", "0", "--quiet", "--no-report"]
    env = dict(os.environ, **{THREADS_ENV: "2"})
    r = subprocess.run([sys.executable, "-c", code] + args + ["--out", str(tmp_path / "ahead")], capture_output=True, text=True,
                       cwd=os.path.join(REPO, "TAREDosimetry"), env=env)
    assert r.returncode == 0, r.stderr
    seen = __import__("json").loads(next(line for line in r.stdout.splitlines() if line.startswith("SEEN"))[5:])
    assert seen == {"pipeline imported at start": False, "started": 2, "taken": [True, True], "pending": 0}
    env[THREADS_ENV] = "1"  # no read ahead: the same results
    r = subprocess.run([sys.executable, "-m", "TAREDosimetryLib.cli"] + args + ["--out", str(tmp_path / "plain")], capture_output=True,
                       text=True, cwd=os.path.join(REPO, "TAREDosimetry"), env=env)
    assert r.returncode == 0, r.stderr
    for name in ("metrics.csv", "dvh.csv"):
        assert (tmp_path / "ahead" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / d / "dose.nrrd"))) for d in ("ahead", "plain"))
    assert np.array_equal(a, b)


def test_a_run_that_stops_early_leaves_no_read_pending(tmp_path, capsys):
    from TAREDosimetryLib.cli import main

    spect, labels = _case(tmp_path)
    common = ["--administered-activity-gbq", "1", "--lung-shunt-fraction", "0", "--out", str(tmp_path / "o"), "--quiet", "--no-report"]
    code = main(["run", "--spect", spect, "--segmentation", labels + ".missing.nrrd"] + common)
    assert code == 2 and "segmentation: file not found" in capsys.readouterr().err
    assert prefetch.pending() == 0
    code = main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour", "--thresholds", "nope"] + common)
    assert code == 2 and "unknown threshold preset 'nope'" in capsys.readouterr().err
    assert prefetch.pending() == 0 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("delay_s", [0.0, 0.01, 0.05])
def test_a_process_that_ends_while_a_read_is_under_way_exits_cleanly(tmp_path, delay_s):
    """The interpreter waits for the reading thread: ending during the read, or just after it, is a
    normal exit (a daemon thread inside ITK at teardown crashed the process: exit 134 or 139)."""
    from TAREDosimetryLib import Volume
    from TAREDosimetryLib.volume import Grid

    path = str(tmp_path / "big.nrrd")
    rng = np.random.default_rng(0)
    write_image(Volume(rng.random((60, 256, 256), dtype=np.float32), grid=Grid((60, 256, 256), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))), path)
    code = ("import sys, time\n"
            "from TAREDosimetryLib.imaging import prefetch\n"
            "assert prefetch.start_reading([sys.argv[1]]) == 1\n"
            f"time.sleep({delay_s})\n")
    env = dict(os.environ, **{THREADS_ENV: "2"})
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, cwd=os.path.join(REPO, "TAREDosimetry"), env=env)
        assert r.returncode == 0, (r.returncode, r.stderr)


def test_a_bad_option_found_during_the_read_is_one_line_and_exit_2(tmp_path):
    spect, labels = _case(tmp_path)
    r = subprocess.run([sys.executable, "-m", "TAREDosimetryLib.cli", "run", "--spect", spect, "--segmentation", labels,
                        "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0", "--thresholds", "nope",
                        "--out", str(tmp_path / "o"), "--quiet", "--no-report"], capture_output=True, text=True,
                       cwd=os.path.join(REPO, "TAREDosimetry"), env=dict(os.environ, **{THREADS_ENV: "2"}))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "unknown threshold preset 'nope'" in r.stderr


def test_a_truncated_file_is_not_given_to_itk_in_the_background(tmp_path, capfd):
    """ITK's MetaImage reader prints to the console on a truncated file, whatever the warning
    display: the background thread checks the file as the main thread does and leaves it alone,
    so the only output is the engine's one-line error."""
    path = _image(tmp_path, "spect.mha", compress=False)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) * 6 // 10])
    assert prefetch.start_reading([path]) == 1
    for r in list(prefetch._READS.values()):
        r.done.wait()
    with pytest.raises(InputError, match=r"spect\.mha is truncated"):
        read_image(path, "SPECT image")
    assert "MetaImage" not in capfd.readouterr().err
