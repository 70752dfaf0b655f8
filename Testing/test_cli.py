"""The tare-dosimetry command line: outputs and their schema, exit codes, bad input, batch."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import REPO, box_case
from TAREDosimetryLib.cli import main
from TAREDosimetryLib.imaging.images import write_image

SEGMENT_KEYS = {
    "name", "role", "volume_ml", "mass_g", "activity_gbq", "mean_gy", "median_gy", "sd_gy", "min_gy", "max_gy",
    "d2_gy", "d50_gy", "d70_gy", "d90_gy", "d98_gy", "v20_pct", "v100_pct", "v205_pct", "v100_ml", "eud_gy", "bed_gy",
}


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401

        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    args = ["demo", "--out", str(out), "--quiet"]
    if not _have_matplotlib():
        args.append("--no-report")
    assert main(args) == 0
    return out


def test_demo_writes_every_output_with_schema(demo_out):
    files = set(os.listdir(demo_out))
    assert {"dose.nrrd", "metrics.json", "metrics.csv", "dvh.csv"} <= files
    if _have_matplotlib():
        assert {"dvh.png", "report.html"} <= files
    m = json.loads((demo_out / "metrics.json").read_text())
    assert m["parameters"]["administered_activity_gbq"] == 1.8
    assert m["constants"]["k_gy_kg_per_gbq"] == 49.67
    assert m["software"]["name"] == "TAREDosimetry" and m["software"]["version"]
    names = [s["name"] for s in m["segments"]]
    assert {"liver", "tumour 1", "tumour 2", "tumour 3", "normal liver (derived)", "lungs (LSF model)"} <= set(names)
    for s in m["segments"]:
        assert SEGMENT_KEYS <= set(s), s["name"]
    tumours = {s["name"]: s for s in m["segments"] if s["role"] == "tumor"}
    assert all("tn_ratio" in s for s in tumours.values())
    ev = {(e["segment"], e["metric"]): e for e in m["evaluations"]}
    assert ev[("tumour 1", "mean_gy")]["status"] == "PASS"
    assert ev[("tumour 3", "mean_gy")]["status"] == "FAIL"  # uptake 1.2x normal liver: below 79.5 Gy
    assert all(e["source"] for e in m["evaluations"])
    assert m["overall_status"] == "FAIL"


def test_demo_dose_volume_geometry_and_tables(demo_out):
    dose = sitk.ReadImage(str(demo_out / "dose.nrrd"))
    assert dose.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, -1))  # the SPECT's reversed z axis is kept
    assert dose.GetSpacing() == pytest.approx((4.8, 4.8, 4.8))
    arr = sitk.GetArrayFromImage(dose)
    assert arr.dtype == np.float32 and arr.max() > 100
    with open(demo_out / "dvh.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert set(rows[0]) == {"segment", "dose_gy", "volume_pct"}
    first = [r for r in rows if r["segment"] == "liver"]
    assert float(first[0]["volume_pct"]) == 100.0 and float(first[-1]["volume_pct"]) == 0.0
    with open(demo_out / "metrics.csv") as fh:
        table = list(csv.DictReader(fh))
    assert {"name", "role", "mean_gy", "d70_gy", "v100_pct"} <= set(table[0])
    # Review finding 8: the per-segment warnings are in the CSV too (the demo's small tumour 3 is flagged).
    assert list(table[0])[-3:] == ["note", "pv_warning", "warnings"]
    rows = {r["name"]: r for r in table}
    segments = {s["name"]: s for s in json.loads((demo_out / "metrics.json").read_text())["segments"]}
    assert rows["tumour 3"]["pv_warning"] == "true" and "partial volume" in rows["tumour 3"]["warnings"]
    assert rows["liver"]["pv_warning"] == "false"
    for name, row in rows.items():
        assert row["warnings"] == " | ".join(segments[name]["warnings"]) and row["note"] == segments[name].get("note", "")


def test_demo_is_deterministic(tmp_path, demo_out):
    out = tmp_path / "again"
    assert main(["demo", "--out", str(out), "--quiet", "--no-report"]) == 0
    a = json.loads((demo_out / "metrics.json").read_text())["segments"]
    b = json.loads((out / "metrics.json").read_text())["segments"]
    assert a == b


def test_existing_output_folder_refused_then_overwrite_keeps_user_files(tmp_path, capsys):
    out = tmp_path / "res"
    out.mkdir()
    (out / "my notes.txt").write_text("keep me")
    assert main(["demo", "--out", str(out), "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert os.listdir(out) == ["my notes.txt"]
    assert main(["demo", "--out", str(out), "--quiet", "--no-report", "--overwrite"]) == 0
    assert (out / "my notes.txt").read_text() == "keep me"
    assert (out / "metrics.json").exists()


def _case_files(tmp_path):
    act, seg = box_case()
    spect = str(tmp_path / "spect.nrrd")
    write_image(act, spect)
    lab = seg.mask("liver").astype(np.uint8)
    lab[seg.mask("tumour")] = 2
    labels = str(tmp_path / "labels.nii.gz")
    img = sitk.GetImageFromArray(lab)
    img.SetSpacing(act.spacing_mm)
    sitk.WriteImage(img, labels)
    return spect, labels


def test_run_with_label_map_roles_and_rule_file(tmp_path):
    spect, labels = _case_files(tmp_path)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"name": "local", "rules": [{"role": "tumor", "metric": "D70", "comparison": ">=", "threshold": 50, "source": "ours"}]}))
    out = tmp_path / "out"
    code = main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=nodule A", "--role", "nodule A=tumour",
                 "--administered-activity-gbq", "1.5", "--lung-shunt-fraction", "0", "--thresholds", str(rules), "--out", str(out), "--quiet", "--no-report"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["rules"]["name"] == "local"
    assert m["inputs"]["roles"]["nodule A"] == "tumor"
    seg = {s["name"]: s for s in m["segments"]}
    # A label map's liver label holds no tumour voxel: the whole liver (the reference region of
    # relative calibration) is the liver label and the nodule, and gets all the activity.
    assert m["inputs"]["whole_liver_segments"] == ["liver", "nodule A"]
    assert seg["whole liver (derived)"]["activity_gbq"] == pytest.approx(1.5, rel=1e-6)
    assert seg["liver"]["activity_gbq"] + seg["nodule A"]["activity_gbq"] == pytest.approx(1.5, rel=1e-6)
    assert m["evaluations"][0]["segment"] == "nodule A"


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--administered-activity-gbq", "-1"], "administered_activity_gbq must be > 0"),
        (["--administered-activity-gbq", "1", "--lung-shunt-fraction", "1.5"], "lung_shunt_fraction must be < 1"),
        (["--administered-activity-gbq", "1", "--residual-fraction", "-0.1"], "residual_fraction must be >= 0"),
        (["--administered-activity-gbq", "1", "--thresholds", "nope"], "unknown threshold preset 'nope'"),
        (["--administered-activity-gbq", "1", "--role", "liver=kidney"], "unknown role"),
        (["--administered-activity-gbq", "1", "--role", "lvr=liver"], "no such segment"),
        ([], "administered_activity_gbq is required"),
        (["--administered-activity-gbq", "1"], "lung_shunt_fraction .* is not given, but rule 'lung mean dose per treatment'"),
        (["--administered-activity-gbq", "1800", "--lung-shunt-fraction", "0"], "1800 GBq is outside the 0.05-20 GBq.*MBq"),
        (["--pet", "PET"], "needs the time from administration to the scan"),
        (["--administered-activity-gbq", "1", "--lung-shunt-fraction", "0", "--bilirubin-mg-dl", "-1"], "bilirubin_mg_dl must be >= 0"),
        (["--administered-activity-gbq", "1", "--lung-shunt-fraction", "0", "--hepatic-reserve-pct", "130"], "hepatic_reserve_pct must be <= 100"),
        (["--administered-activity-gbq", "1", "--lung-shunt-fraction", "0", "--indication", "hcc"], "several threshold presets fit indication hcc"),
        (["--administered-activity-gbq", "1", "--lung-shunt-fraction", "0", "--thresholds", "hcc-glass-bilirubin"], "retired.*--bilirubin-mg-dl"),
        (["--administered-activity-gbq", "1", "--lung-shunt-fraction", "0", "--recovery-coefficients", "RC"], "recovery-coefficient file"),
        (["--administered-activity-gbq", "1", "--quantitative", "--relative"], "--quantitative .* and --relative contradict"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(tmp_path, capsys, extra, match):
    spect, labels = _case_files(tmp_path)
    out = tmp_path / "out"
    (tmp_path / "rc.csv").write_text("diameter_mm,rc\n10,0.3\n")  # a single point: refused
    extra = [{"PET": spect, "RC": str(tmp_path / "rc.csv")}.get(x, x) for x in extra]
    image = [] if "--pet" in extra else ["--spect", spect]
    code = main(["run"] + image + ["--segmentation", labels, "--labels", "1=liver,2=tumour", "--out", str(out), "--quiet", "--no-report"] + extra)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("tare-dosimetry: error:")
    assert __import__("re").search(match, err), err
    assert not out.exists()  # nothing written
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out.partial")]


def test_missing_and_unreadable_files(tmp_path, capsys):
    spect, labels = _case_files(tmp_path)
    assert main(["run", "--spect", str(tmp_path / "nope.nrrd"), "--segmentation", labels,
                 "--administered-activity-gbq", "1", "--out", str(tmp_path / "o")]) == 2
    assert "SPECT image: file not found" in capsys.readouterr().err
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"\x00garbage")
    assert main(["run", "--spect", spect, "--segmentation", str(junk), "--administered-activity-gbq", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert "segmentation:" in line and line.count("junk.nii.gz") == 1 and "not gzip-compressed" in line


def test_inputs_are_not_modified(tmp_path):
    spect, labels = _case_files(tmp_path)
    before = {p: open(p, "rb").read() for p in (spect, labels)}
    out = tmp_path / "out"
    assert main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour", "--administered-activity-gbq", "1",
                 "--lung-shunt-fraction", "0", "--out", str(out), "--quiet", "--no-report"]) == 0
    assert {p: open(p, "rb").read() for p in (spect, labels)} == before


def test_failure_while_writing_leaves_no_partial_output(tmp_path, monkeypatch):
    from TAREDosimetryLib.reporting import outputs

    spect, labels = _case_files(tmp_path)

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "_write_csv", broken)
    out = tmp_path / "out"
    code = main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour", "--administered-activity-gbq", "1",
                 "--lung-shunt-fraction", "0", "--out", str(out), "--quiet", "--no-report"])
    assert code == 1
    assert not out.exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_batch_goes_on_past_failing_cases(tmp_path, capsys):
    spect, labels = _case_files(tmp_path)
    manifest = tmp_path / "cases.csv"
    sp, lb = os.path.basename(spect), os.path.basename(labels)
    manifest.write_text(
        "case_id,spect,segmentation,labels,administered_activity_gbq,lung_shunt_fraction\n"
        f'good,{sp},{lb},"1=liver,2=tumour",1.2,0.05\n'
        f"missing,nope.nrrd,{lb},,1.0,\n"
        f'badlsf,{sp},{lb},"1=liver,2=tumour",1.0,1.4\n'
        f'good2,{sp},{lb},"1=liver,2=tumour",2.0,0\n'
        f'nolsf,{sp},{lb},"1=liver,2=tumour",2.0,\n'
    )
    out = tmp_path / "batch"
    code = main(["batch", "--manifest", str(manifest), "--out", str(out), "--quiet", "--no-report"])
    text = capsys.readouterr().out
    assert code == 3
    assert "2/5 cases done" in text and "FAILED missing" in text and "FAILED badlsf" in text and "FAILED nolsf" in text
    assert (out / "good" / "metrics.json").exists() and (out / "good2" / "metrics.json").exists()
    assert not (out / "missing").exists() and not (out / "badlsf").exists()
    with open(out / "batch_summary.csv") as fh:
        rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    assert rows["good"]["status"] == "ok" and "file not found" in rows["missing"]["error"]
    assert "lung_shunt_fraction" in rows["badlsf"]["error"]
    assert "lung_shunt_fraction (--lung-shunt-fraction) is not given" in rows["nolsf"]["error"]  # never a default 0
    m = json.loads((out / "good" / "metrics.json").read_text())
    assert m["parameters"]["lung_shunt_fraction"] == 0.05


def test_presets_and_help_run():
    assert main(["presets"]) == 0
    r = subprocess.run([sys.executable, "-m", "TAREDosimetryLib.cli", "run", "--help"], capture_output=True, text=True,
                       cwd=os.path.join(REPO, "TAREDosimetry"))
    assert r.returncode == 0 and "--administered-activity-gbq" in r.stdout and "--thresholds" in r.stdout


def test_a_command_is_parsed_without_importing_the_other_commands():
    """`tare-dosimetry run ...` builds the run parser alone (the cohort, compare, plan and DICOM
    networking modules, nor the batch runner, are imported: their import time and memory are not paid); with no
    command, or an unknown one, every command is listed."""
    code = (
        "import sys\n"
        "from TAREDosimetryLib.cli import main\n"
        "rc = main(['presets'])\n"
        "from TAREDosimetryLib.batch import run_case_files  # one case from files: not the batch machinery\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith(('TAREDosimetryLib.cli.', 'TAREDosimetryLib.cohort', 'TAREDosimetryLib.batch'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.join(REPO, "TAREDosimetry"))
    loaded = next(line for line in r.stdout.splitlines() if line.startswith("LOADED"))
    assert "'TAREDosimetryLib.cli.presets'" in loaded
    for other in ("cli.cohort", "cli.compare", "cli.plan", "cli.batch", "TAREDosimetryLib.cohort'", "batch.runner", "batch.pool"):
        assert other not in loaded, loaded
    r = subprocess.run([sys.executable, "-m", "TAREDosimetryLib.cli", "--help"], capture_output=True, text=True,
                       cwd=os.path.join(REPO, "TAREDosimetry"))
    assert r.returncode == 0 and all(c in r.stdout for c in ("run", "plan", "compare", "cohort", "dicom-ls"))
    r = subprocess.run([sys.executable, "-m", "TAREDosimetryLib.cli", "rnu"], capture_output=True, text=True,
                       cwd=os.path.join(REPO, "TAREDosimetry"))
    assert r.returncode == 2 and "invalid choice: 'rnu'" in r.stderr and "cohort" in r.stderr


def test_params_file_reproduces_a_run(tmp_path, demo_out):
    out = tmp_path / "again"
    assert main(["demo", "--out", str(out), "--quiet", "--no-report", "--params", str(demo_out / "metrics.json")]) == 0
    a = json.loads((demo_out / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert a["parameters"] == b["parameters"] and a["segments"] == b["segments"]


def test_batch_pet_column_implies_absolute_calibration_as_on_the_command_line(tmp_path, capsys):
    # `run --pet` is absolute calibration; a manifest's pet column used to run relative calibration
    # and fail for want of an administered activity (the README's own PET manifest row).
    spect, labels = _case_files(tmp_path)
    manifest = tmp_path / "cases.csv"
    sp, lb = os.path.basename(spect), os.path.basename(labels)
    manifest.write_text(
        "case_id,pet,segmentation,labels,administered_activity_gbq,quantitative,hours_since_administration,lung_shunt_fraction\n"
        f'pet,{sp},{lb},"1=liver,2=tumour",,,2,\n'
        f'petrel,{sp},{lb},"1=liver,2=tumour",1.5,false,,0\n'
    )
    out = tmp_path / "batch"
    assert main(["batch", "--manifest", str(manifest), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert json.loads((out / "pet" / "metrics.json").read_text())["parameters"]["calibration"] == "absolute"
    assert json.loads((out / "petrel" / "metrics.json").read_text())["parameters"]["calibration"] == "relative"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_result_folder_gets_the_usual_permissions_not_private_ones(tmp_path):
    # Results were moved in from a mkdtemp folder and stayed 0700: colleagues could not read them.
    spect, labels = _case_files(tmp_path)
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour",
                     "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0", "--out", str(out), "--quiet", "--no-report"]) == 0
    finally:
        os.umask(old)
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o755)


class _PipeClosedAfter:
    """A standard output whose reader goes away after ``n`` writes (``| head``)."""

    def __init__(self, n):
        self.n, self.written = n, []

    def write(self, text):
        if len(self.written) >= self.n:
            raise BrokenPipeError(32, "Broken pipe")
        self.written.append(text)
        return len(text)

    def flush(self):
        if len(self.written) >= self.n:
            raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_output_pipe_ends_the_command_quietly(monkeypatch, capsys):
    """Review finding 20c: ``tare-dosimetry presets | head`` gave "internal error: BrokenPipeError", exit 1."""
    fake = _PipeClosedAfter(3)
    monkeypatch.setattr(sys, "stdout", fake)
    assert main(["presets"]) == 0
    assert len(fake.written) == 3 and sys.stdout is fake
    assert "error" not in capsys.readouterr().err


def test_a_real_pipe_closed_by_its_reader_is_exit_0_without_a_message():
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "TAREDosimetry"))
    proc = subprocess.Popen([sys.executable, "-m", "TAREDosimetryLib.cli", "presets"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes, as head does after its lines
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "error" not in err.lower(), err


@pytest.mark.parametrize("preset", [None, "12"])
def test_the_command_line_quiets_idle_blas_threads_before_numpy_loads(preset):
    """`tare-dosimetry` tells OpenBLAS's idle threads to sleep at once (they spun for ~0.1 s after
    each product, taking a core from the case's own threads), before NumPy loads, unless the user
    set OPENBLAS_THREAD_TIMEOUT."""
    code = ("import os, sys\n"
            "import TAREDosimetryLib.cli\n"
            "order = list(sys.modules)\n"
            "print('SET', os.environ.get('OPENBLAS_THREAD_TIMEOUT'), order.index('TAREDosimetryLib.cli.startup') < order.index('numpy'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if preset:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.join(REPO, "TAREDosimetry"), env=env)
    assert f"SET {preset or '4'} True" in r.stdout, r.stdout + r.stderr
