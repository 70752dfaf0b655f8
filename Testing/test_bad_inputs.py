"""Every user mistake is exit 2 with one line naming the file or option, never an internal error
and never a result: truncated images, label tables with a value twice, a coarse DVH bin, the label
map given as the SPECT, negative images, rules asking for impossible metrics or units, and the
wording of reading errors (no file named twice, no raw ITK/GDCM output)."""

import json
import os
import re
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import box_case
from TAREDosimetryLib.cli import main
from TAREDosimetryLib.evaluation.dvh import DVH
from TAREDosimetryLib.imaging.images import write_image
from test_resultfolder import case_files


def truncate(path, keep=0.6, suffix=None):
    """A copy of ``path`` keeping its first ``keep`` fraction of bytes."""
    data = open(path, "rb").read()
    base = os.path.basename(path)
    out = os.path.join(os.path.dirname(path), "cut_" + (base if suffix is None else base.split(".")[0] + suffix))
    with open(out, "wb") as fh:
        fh.write(data[: int(len(data) * keep)])
    return out


def run(tmp_path, spect, labels, *extra, out="out"):
    return main(["run", "--spect", spect, "--segmentation", labels, "--labels", "1=liver,2=tumour",
                 "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0.05", "--out", str(tmp_path / out), "--quiet", "--no-report", *extra])


def error_line(capfd):
    """The whole of stderr (C++ output included), which must be one error line."""
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tare-dosimetry: error:"), err
    return err


@pytest.fixture
def files(tmp_path):
    spect, labels = case_files(tmp_path)
    act, _ = box_case()
    gz = str(tmp_path / "spect.nii.gz")
    write_image(act, gz)
    return {"spect": spect, "labels": labels, "spect_gz": gz}


@pytest.mark.parametrize("which", ["SPECT", "PET", "CT", "labels"])
def test_a_truncated_nii_gz_is_refused_whichever_input_it_is(tmp_path, files, capfd, which):
    spect, labels = files["spect"], files["labels"]
    if which == "labels":
        args = ["--spect", spect, "--segmentation", truncate(labels)]
    else:
        cut = truncate(files["spect_gz"])
        args = {"SPECT": ["--spect", cut], "PET": ["--pet", cut], "CT": ["--spect", spect, "--ct", cut]}[which]
        args += ["--segmentation", labels]
    code = main(["run", *args, "--labels", "1=liver,2=tumour", "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0.05",
                 "--out", str(tmp_path / "out"), "--quiet", "--no-report"])
    err = error_line(capfd)
    assert code == 2 and "is truncated" in err and "cut_" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", [".nii", ".mha"])
def test_a_truncated_uncompressed_image_is_refused_with_the_sizes(tmp_path, files, capfd, fmt):
    act, _ = box_case()
    path = str(tmp_path / f"spect{fmt}")
    write_image(act, path, compress=False)
    cut = truncate(path)
    assert run(tmp_path, cut, files["labels"]) == 2
    err = error_line(capfd)
    assert re.search(r"is truncated: it holds \d+ of the \d+ bytes its header announces", err), err


@pytest.mark.parametrize("fmt", [".nrrd", ".nhdr", "gzip .nrrd"])
def test_a_truncated_nrrd_is_refused_with_the_same_words_raw_or_gzip(tmp_path, files, capfd, fmt):
    """Review finding 10a: a raw NRRD cut short gave ITK's "fread got only 23911 4-sized things, not
    36000"; it now reads as the gzip NRRD does: truncated, N of the M bytes of voxel data there."""
    act, _ = box_case()
    img = sitk.GetImageFromArray(act.array)
    img.SetSpacing(act.spacing_mm)
    if fmt == ".nhdr":
        path = str(tmp_path / "spect.nhdr")
        sitk.WriteImage(img, path, useCompression=False)
        raw = next(str(tmp_path / f) for f in os.listdir(tmp_path) if f.startswith("spect.") and f.endswith(".raw"))
        data = open(raw, "rb").read()
        open(raw, "wb").write(data[: len(data) * 2 // 3])
        cut, named = path, os.path.basename(raw)
    else:
        path = str(tmp_path / "spect.nrrd")
        sitk.WriteImage(img, path, useCompression=fmt.startswith("gzip"))
        cut = truncate(path, keep=0.66)
        named = os.path.basename(cut)
    assert run(tmp_path, cut, files["labels"]) == 2
    err = error_line(capfd)
    assert re.search(r"SPECT image: cannot read \S*" + re.escape(named) + r" \(truncated: \d+ of the \d+ bytes of voxel data "
                     r"are there; copy it again\)$", err), err
    assert "fread" not in err


def test_a_damaged_gzip_stream_is_refused(tmp_path, files, capfd):
    data = bytearray(open(files["spect_gz"], "rb").read())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "flipped.nii.gz"
    bad.write_bytes(bytes(data))
    assert run(tmp_path, str(bad), files["labels"]) == 2
    assert "flipped.nii.gz is damaged" in error_line(capfd)


def test_complete_images_of_every_format_still_read(tmp_path, files):
    act, _ = box_case()
    for fmt in (".nii", ".mha", ".mhd", ".nrrd", ".nhdr"):
        path = str(tmp_path / f"ok{fmt}")
        write_image(act, path, compress=False)
        assert run(tmp_path, path, files["labels"], out=f"out{fmt}") == 0, fmt
    assert run(tmp_path, files["spect_gz"], files["labels"], out="out_gz") == 0


@pytest.mark.parametrize("spec, match", [
    ("1=liver,1=tumor 1", "label value 1 is given twice ('liver' and 'tumor 1')"),
    ("1=liver,2=liver", "the name 'liver' is given to label values 1 and 2"),
])
def test_a_label_table_giving_a_value_or_a_name_twice_is_refused(tmp_path, files, capfd, spec, match):
    code = main(["run", "--spect", files["spect"], "--segmentation", files["labels"], "--labels", spec,
                 "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0.05", "--out", str(tmp_path / "out"), "--quiet", "--no-report"])
    assert code == 2 and match in error_line(capfd)


def test_a_label_json_with_a_repeated_key_is_refused(tmp_path, files, capfd):
    table = tmp_path / "names.json"
    table.write_text('{"1": "liver", "2": "tumour", "1": "tumor 1"}')
    code = main(["run", "--spect", files["spect"], "--segmentation", files["labels"], "--labels", str(table),
                 "--administered-activity-gbq", "1", "--lung-shunt-fraction", "0.05", "--out", str(tmp_path / "out"), "--quiet", "--no-report"])
    err = error_line(capfd)
    assert code == 2 and "label value 1 is given twice" in err and err.count("names.json") == 1


def test_a_dvh_bin_wider_than_5_gy_is_refused(tmp_path, files, capfd):
    assert run(tmp_path, files["spect"], files["labels"], "--dvh-bin-width-gy", "50") == 2
    assert "dvh_bin_width_gy must be <= 5 Gy" in error_line(capfd)


def test_binned_dvh_metrics_never_leave_the_dose_range():
    zero = DVH(np.zeros(1000), 1.0, bin_width_gy=5.0)
    assert zero.dose_at_volume_pct(50) == 0.0 and zero.dose_at_volume_pct(2) == 0.0  # was 2.5 Gy (25 Gy at 50 Gy bins)
    flat = DVH(np.full(1000, 10.0), 1.0, bin_width_gy=5.0)
    assert flat.dose_at_volume_pct(50) == 10.0 and flat.dose_at_volume_pct(2) == 10.0  # was 12.5 and 14.9 Gy
    rng = np.random.default_rng(0)
    d = rng.uniform(3.0, 41.0, 5000)
    dvh = DVH(d, 1.0, bin_width_gy=5.0)
    for x in (0, 2, 50, 98, 100):  # at most one bin below the minimum (the edge under it), never above the maximum
        assert d.min() - 5.0 <= dvh.dose_at_volume_pct(x) <= d.max()


def test_no_binned_metric_of_a_run_exceeds_the_segment_dose_range(tmp_path, files):
    assert run(tmp_path, files["spect"], files["labels"], "--dvh-bin-width-gy", "5", "--lung-shunt-fraction", "0") == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for s in m["segments"]:
        for k, v in s.items():
            if re.fullmatch(r"d\d+(\.\d+)?_gy", k) and v is not None:
                assert s["min_gy"] - 5.0 <= v <= s["max_gy"] + 1e-9, (s["name"], k, v)


def test_the_label_map_given_as_the_spect_is_detected(tmp_path, files, capfd):
    assert run(tmp_path, files["labels"], files["labels"]) == 2
    assert "--spect and --segmentation name the same file" in error_line(capfd)
    copy = tmp_path / "copy_of_labels.nii.gz"
    shutil.copy(files["labels"], copy)
    assert run(tmp_path, str(copy), files["labels"]) == 2
    assert "holds exactly the label values of the segmentation" in error_line(capfd)


def test_a_slicer_segmentation_given_as_the_spect_is_named(tmp_path, files, capfd):
    seg = tmp_path / "case.seg.nrrd"
    img = sitk.GetImageFromArray(sitk.GetArrayFromImage(sitk.ReadImage(files["labels"])))
    img.SetMetaData("Segment0_Name", "liver")
    img.SetMetaData("Segment0_ID", "liver")
    sitk.WriteImage(img, str(seg))
    assert run(tmp_path, str(seg), files["labels"]) == 2
    assert "is a 3D Slicer segmentation (.seg.nrrd), not an image" in error_line(capfd)


def _negative_spect(tmp_path, fraction):
    """The box SPECT with negative voxels outside the liver summing to ``fraction`` of the positive total."""
    act, seg = box_case()
    arr = act.array.copy()
    outside = ~seg.mask("liver")
    arr[outside] = -fraction * arr[~outside].sum() / outside.sum()
    path = str(tmp_path / f"neg{fraction:g}.nrrd")
    write_image(type(act)(arr, grid=act.grid), path)
    return path


def test_negative_voxels_above_5_percent_stop_the_run_unless_allowed(tmp_path, files, capfd):
    neg = _negative_spect(tmp_path, 0.2)
    assert run(tmp_path, neg, files["labels"]) == 2
    err = error_line(capfd)
    assert "sum to 20 % of the positive total (more than 5 %)" in err and "--allow-negative" in err
    assert run(tmp_path, neg, files["labels"], "--allow-negative") == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["parameters"]["allow_negative"] is True
    assert any("were set to 0" in w and "20 % of the positive total" in w for w in m["warnings"])


def test_negative_voxels_below_5_percent_are_clipped_with_a_warning_saying_how_much(tmp_path, files):
    assert run(tmp_path, _negative_spect(tmp_path, 0.02), files["labels"]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    w = [w for w in m["warnings"] if "negative voxel" in w]
    assert len(w) == 1 and "2 % of the positive total" in w[0] and "(image units)" in w[0]


@pytest.mark.parametrize("rule, match", [
    ({"role": "tumor", "metric": "d200_gy", "comparison": ">", "threshold": 10}, "rule 2: metric 'd200_gy' asks for the dose to 200 %"),
    ({"role": "tumor", "metric": "v100_pct", "comparison": ">", "threshold": 10, "unit": "Gy"},
     "rule 2: unit 'Gy' does not match metric 'v100_pct', which is a percentage"),
    ({"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 10, "unit": "%"},
     "rule 2: unit '%' does not match metric 'mean_gy', which is a dose in Gy"),
])
def test_a_rule_asking_for_an_impossible_metric_or_unit_names_the_file_and_rule(tmp_path, files, capfd, rule, match):
    path = tmp_path / "ours.json"
    path.write_text(json.dumps({"name": "ours", "rules": [{"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": 1}, rule]}))
    assert run(tmp_path, files["spect"], files["labels"], "--thresholds", str(path)) == 2
    err = error_line(capfd)
    assert f"rule file {path}: " in err and match in err, err


def test_a_rule_without_a_unit_takes_its_metrics_unit(tmp_path):
    from TAREDosimetryLib.evaluation.rules import Rule

    assert Rule(role="tumor", metric="v100_pct", comparison=">", threshold=50).unit == "%"
    assert Rule(role="tumor", metric="D2cc", comparison=">", threshold=50).unit == "Gy"
    assert Rule(role="tumor", metric="tn_ratio", comparison=">", threshold=2).unit == ""
    assert Rule(role="tumor", metric="v20_ml", comparison="<", threshold=5, unit="cc").unit == "mL"


def test_a_file_that_is_not_an_image_is_named_once(tmp_path, files, capfd):
    junk = tmp_path / "junk.nrrd"
    junk.write_bytes(b"\x00garbage")
    assert run(tmp_path, str(junk), files["labels"]) == 2
    err = error_line(capfd)
    assert err.count("junk.nrrd") == 1 and "not an image format" in err
    notgz = tmp_path / "plain.nii.gz"
    notgz.write_bytes(b"\x00garbage")
    assert run(tmp_path, files["spect"], str(notgz)) == 2
    err = error_line(capfd)
    assert err.count("plain.nii.gz") == 1 and "not gzip-compressed" in err


@pytest.mark.parametrize("content", [[], ["notes.txt"]])
def test_a_folder_without_dicom_gives_one_line_and_no_raw_gdcm_warning(tmp_path, files, capfd, content):
    folder = tmp_path / "dicom"
    folder.mkdir()
    for name in content:
        (folder / name).write_text("not dicom")
    assert run(tmp_path, str(folder), files["labels"]) == 2
    err = error_line(capfd)
    assert "WARNING" not in err and str(folder) in err
    assert ("is an empty folder" in err) if not content else ("holds no DICOM series" in err)


def test_a_nan_image_is_named_once(tmp_path, files, capfd):
    act, _ = box_case()
    arr = act.array.copy()
    arr[0, 0, 0] = np.nan
    path = str(tmp_path / "withnan.nrrd")
    write_image(type(act)(arr, grid=act.grid), path)
    assert run(tmp_path, path, files["labels"]) == 2
    err = error_line(capfd)
    assert err.count("withnan.nrrd") == 1 and "holds 1 NaN or infinite voxel(s)" in err


def test_gpu_asked_for_without_a_gpu_is_refused_before_any_input_is_read(tmp_path, capfd):
    """``--method dvk --device gpu`` without a usable GPU: exit 2 with the reason, before reading the
    inputs (here they do not even exist) and before any output folder is made."""
    from TAREDosimetryLib.dose.backend import gpu_status

    if gpu_status()[0]:
        pytest.skip("a GPU is usable here: nothing to refuse")
    out = tmp_path / "out"
    code = main(["run", "--spect", str(tmp_path / "missing.nrrd"), "--segmentation", str(tmp_path / "missing.seg.nrrd"),
                 "--administered-activity-gbq", "1.8", "--lung-shunt-fraction", "0.05", "--method", "dvk", "--device", "gpu",
                 "--out", str(out), "--quiet"])
    line = error_line(capfd)
    assert code == 2 and "no GPU is usable" in line and "device='cpu' or 'auto'" in line, line
    assert not out.exists()
