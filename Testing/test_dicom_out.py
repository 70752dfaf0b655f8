"""DICOM out and doses from elsewhere: RT Dose round trips (our reader, pydicom, SimpleITK, dicompyler-core),
references to the input study, ``evaluate`` of external dose maps with unit checks, report.pdf."""

import json
import os
import re

import numpy as np
import pytest
import SimpleITK as sitk

pydicom = pytest.importorskip("pydicom")

from conftest import box_case  # noqa: E402
from test_dicom_in import _pet_case  # noqa: E402
from TAREDosimetryLib import DosimetryParams, InputError, Volume, run_case  # noqa: E402
from TAREDosimetryLib.cli import main  # noqa: E402
from TAREDosimetryLib.imaging.dosemaps import read_dose_map  # noqa: E402
from TAREDosimetryLib.imaging.images import write_image  # noqa: E402
from TAREDosimetryLib.imaging.rtdose import read_rtdose  # noqa: E402
from TAREDosimetryLib.reporting.dicomref import dicom_context, save_dataset  # noqa: E402
from TAREDosimetryLib.reporting.rtdose import dose_grid_scaling, write_rtdose  # noqa: E402

DIRECTIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "reversed z (MAA SPECT)": (1, 0, 0, 0, 1, 0, 0, 0, -1),
    "oblique": tuple(np.array([[0.8, -0.6, 0], [0.6, 0.8, 0], [0, 0, 1.0]]).reshape(-1)),
}


def _dose(direction, shape=(6, 7, 8), seed=0):
    rng = np.random.default_rng(seed)
    arr = (rng.gamma(2.0, 40.0, shape) * (rng.uniform(size=shape) > 0.2)).astype(np.float32)
    return Volume(arr, (2.5, 3.0, 4.0), (12.0, -40.5, 33.0), direction, name="dose", unit="Gy")


def _same_physical(a, b):
    """Every voxel centre of ``a`` read from ``b`` (grids equal up to the order of k)."""
    ijk = np.array([[i, j, k, 1.0] for k in range(a.shape[0]) for j in range(a.shape[1]) for i in range(a.shape[2])])
    lps = ijk @ a.grid.ijk_to_lps.T
    back = np.rint(lps @ b.grid.lps_to_ijk.T).astype(int)
    return b.array[back[:, 2], back[:, 1], back[:, 0]].reshape(a.shape)


# -- RT Dose -----------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
def test_rtdose_round_trip_error_is_below_1e4_of_the_maximum(tmp_path, direction):
    dose = _dose(direction)
    path = str(tmp_path / "dose.dcm")
    ds = write_rtdose(dose, path)
    assert (ds.DoseUnits, ds.DoseType, ds.Modality, ds.BitsAllocated) == ("GY", "PHYSICAL", "RTDOSE", 32)
    back, notes = read_rtdose(path)
    assert notes == [] and back.unit == "Gy"
    err = np.abs(_same_physical(dose, back) - dose.array).max() / dose.array.max()
    assert err < 1e-4
    assert err < 1e-6  # 32-bit pixels: the error is float32 rounding, not the grid scaling
    offsets = [float(v) for v in pydicom.dcmread(path).GridFrameOffsetVector]
    assert offsets[0] == 0.0 and np.all(np.diff(offsets) > 0)  # frames along the normal, relative offsets


def test_dose_grid_scaling_is_the_written_decimal_string():
    for top in (1e-3, 0.7, 123.456, 5432.1, 1e5):
        text, value = dose_grid_scaling(top)
        assert len(text) <= 16 and float(text) == value
        assert top / value <= 2**32 - 1
    assert dose_grid_scaling(0.0) == ("1", 1.0)
    with pytest.raises(InputError, match="finite dose"):
        dose_grid_scaling(float("nan"))


def test_simpleitk_reads_our_rtdose_geometry_and_stored_values(tmp_path):
    dose = _dose(DIRECTIONS["reversed z (MAA SPECT)"])
    path = str(tmp_path / "dose.dcm")
    ds = write_rtdose(dose, path)
    img = sitk.ReadImage(path)
    scaled = sitk.GetArrayFromImage(img).astype(np.float64) * float(ds.DoseGridScaling)  # SimpleITK leaves the scaling to us
    ours = read_rtdose(path)[0]
    assert img.GetSize() == (8, 7, 6)
    np.testing.assert_allclose(img.GetSpacing(), ours.spacing_mm, atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), ours.origin_mm, atol=1e-5)
    np.testing.assert_allclose(img.GetDirection(), ours.direction, atol=1e-6)
    np.testing.assert_allclose(scaled, ours.array, rtol=1e-6, atol=1e-6)


def _dicompyler_parser():
    """dicompyler-core's DicomParser; 0.5.6 imports pydicom.dicomio.read_file, which pydicom 3 removed."""
    pytest.importorskip("dicompylercore")
    import pydicom.dicomio

    if not hasattr(pydicom.dicomio, "read_file"):
        pydicom.dicomio.read_file = pydicom.dcmread
    from dicompylercore import dicomparser

    return dicomparser.DicomParser


def test_dicompyler_core_reads_our_rtdose(tmp_path):
    parser = _dicompyler_parser()
    dose = _dose(DIRECTIONS["identity"])
    path = str(tmp_path / "dose.dcm")
    write_rtdose(dose, path)
    dp = parser(path)
    data = dp.GetDoseData()
    assert data["doseunits"] == "GY" and data["dosetype"] == "PHYSICAL" and data["frames"] == 6
    scale = float(data["dosegridscaling"])
    for k in range(dose.shape[0]):
        z = dose.origin_mm[2] + k * dose.spacing_mm[2]
        plane = np.asarray(dp.GetDoseGrid(z), float) * scale
        np.testing.assert_allclose(plane, dose.array[k], rtol=1e-6, atol=1e-6 * dose.array.max())


def test_rtdose_joins_the_study_and_frame_of_reference_of_dicom_inputs(tmp_path):
    folder, lab, _ = _pet_case(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--pet", folder, "--segmentation", lab, "--labels", "1=liver,2=tumour", "--out", str(out),
                 "--no-report", "--rtdose", "--quiet"]) == 0
    pet = pydicom.dcmread(os.path.join(folder, sorted(os.listdir(folder))[0]))
    ds = pydicom.dcmread(out / "dose.dcm")
    assert ds.StudyInstanceUID == pet.StudyInstanceUID and ds.FrameOfReferenceUID == pet.FrameOfReferenceUID
    assert ds.PatientID == pet.PatientID and ds.SeriesInstanceUID != pet.SeriesInstanceUID
    assert len(ds.SourceImageSequence) == len(os.listdir(folder))
    m = json.loads((out / "metrics.json").read_text())
    rec = m["summary"]["exports"]["objects"][0]
    assert rec["file"] == "dose.dcm" and rec["sop_instance_uid"] == ds.SOPInstanceUID


def test_rtdose_references_the_ct_series_when_a_dicom_ct_is_given(tmp_path):
    from dicom_synth import write_image_series

    folder, lab, _ = _pet_case(tmp_path)
    pet = pydicom.dcmread(os.path.join(folder, sorted(os.listdir(folder))[0]))
    study = {k: pet.get(k) for k in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                                     "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
                                     "FrameOfReferenceUID")}
    act, _ = box_case()
    ct_paths = write_image_series(str(tmp_path / "ct"), np.full(act.shape, 40.0), act.spacing_mm, act.origin_mm,
                                  study=study, series_number=2)[0]
    out = tmp_path / "out"
    assert main(["run", "--pet", folder, "--ct", str(tmp_path / "ct"), "--segmentation", lab, "--labels",
                 "1=liver,2=tumour", "--out", str(out), "--no-report", "--rtdose", "--quiet"]) == 0
    ds = pydicom.dcmread(out / "dose.dcm")
    ct_uids = {pydicom.dcmread(p).SOPInstanceUID for p in ct_paths}
    assert {it.ReferencedSOPInstanceUID for it in ds.ReferencedImageSequence} == ct_uids
    assert ds.FrameOfReferenceUID == study["FrameOfReferenceUID"]
    assert json.loads((out / "metrics.json").read_text())["inputs"]["ct_dicom"]["modality"] == "CT"


def test_standalone_rtdose_has_its_own_study_and_frame_of_reference(tmp_path):
    ctx, other = dicom_context(None), dicom_context(None)
    assert ctx.standalone and ctx.study["StudyInstanceUID"] != other.study["StudyInstanceUID"]
    assert ctx.frame_of_reference_uid != other.frame_of_reference_uid
    ds = write_rtdose(_dose(DIRECTIONS["identity"]), str(tmp_path / "d.dcm"), ctx)
    assert ds.StudyInstanceUID == ctx.study["StudyInstanceUID"] and ds.FrameOfReferenceUID == ctx.frame_of_reference_uid
    assert "ReferencedImageSequence" not in ds and "SourceImageSequence" not in ds


def test_send_without_a_dicom_export_is_refused_before_any_work(tmp_path, capsys):
    act, seg = box_case()
    spect = str(tmp_path / "s.nrrd")
    write_image(act, spect)
    rc = main(["run", "--spect", spect, "--segmentation", spect, "--out", str(tmp_path / "o"), "--send", "PACS@127.0.0.1:104"])
    assert rc == 2 and "--send: nothing to send" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- evaluate ----------------------------------------------------------------------------------
def _computed_case(tmp_path):
    """The box case run from files with --rtdose; returns (out folder, spect path, label path)."""
    act, seg = box_case()
    spect, lab = str(tmp_path / "spect.nrrd"), str(tmp_path / "labels.nii.gz")
    write_image(act, spect)
    labels = np.zeros(act.shape, np.uint8)
    labels[seg.mask("liver")] = 1
    labels[seg.mask("tumour")] = 2
    write_image(act.with_array(labels), lab, dtype=np.uint8)
    out = tmp_path / "computed"
    assert main(["run", "--spect", spect, "--segmentation", lab, "--labels", "1=liver,2=tumour", "--lung-shunt-fraction", "0", "--administered-activity-gbq",
                 "1.5", "--residual-fraction", "0", "--indication", "breast", "--out", str(out), "--no-report", "--rtdose",
                 "--quiet"]) == 0
    return out, spect, lab


def _metrics(folder):
    return {s["name"]: s for s in json.loads((folder / "metrics.json").read_text())["segments"]}


@pytest.mark.parametrize("fmt", ["dose.dcm", "dose.nrrd", "dose.mhd", "dose_cgy.mha"])
def test_an_external_dose_gets_the_same_metrics_as_the_computed_one(tmp_path, fmt):
    out, _, lab = _computed_case(tmp_path)
    dose_path = str(out / "dose.dcm") if fmt == "dose.dcm" else str(out / "dose.nrrd")
    args = []
    if fmt in ("dose.nrrd", "dose.mhd"):
        args = ["--dose-unit", "Gy"]
        if fmt == "dose.mhd":
            dose_path = str(tmp_path / "gate-Dose.mhd")
            sitk.WriteImage(sitk.ReadImage(str(out / "dose.nrrd")), dose_path)
    elif fmt == "dose_cgy.mha":
        img = sitk.ReadImage(str(out / "dose.nrrd")) * 100.0
        img.SetMetaData("unit", "cGy")
        dose_path = str(tmp_path / "dose_cgy.mha")
        sitk.WriteImage(img, dose_path)
    ev = tmp_path / "evaluated"
    assert main(["evaluate", "--dose", dose_path, "--segmentation", lab, "--labels", "1=liver,2=tumour", "--out", str(ev),
                 "--no-report", "--quiet"] + args) == 0
    a, b = _metrics(out), _metrics(ev)
    for name in ("liver", "tumour", "normal liver (derived)"):
        for key in ("mean_gy", "d70_gy", "d90_gy", "v100_pct", "eud_gy", "volume_ml", "mass_g"):
            if a[name][key] is None:  # e.g. EUD, defined for tumours only
                assert b[name][key] is None, (name, key)
            else:
                assert b[name][key] == pytest.approx(a[name][key], rel=2e-6, abs=1e-6), (name, key)
        assert b[name]["activity_gbq"] is None  # no activity behind an external dose
    m = json.loads((ev / "metrics.json").read_text())
    assert m["summary"]["dose_source"] == "external"
    # The computed case judged its lungs by the LSF model (LSF 0 given); an external dose map has no
    # activity behind it, so without lung segments the lung rules cannot be judged: INCOMPLETE, said.
    assert json.loads((out / "metrics.json").read_text())["overall_status"] == "PASS"
    assert m["overall_status"] == "INCOMPLETE"
    assert any("lung" in r for r in m["incomplete_reasons"]), m["incomplete_reasons"]


def test_dose_units_are_checked_by_header_or_option(tmp_path):
    dose = _dose(DIRECTIONS["identity"])
    plain = str(tmp_path / "d.nrrd")
    write_image(dose, plain)
    with pytest.raises(InputError, match="does not state its dose unit; give --dose-unit"):
        read_dose_map(plain)
    gy, rec, _ = read_dose_map(plain, dose_unit="mGy")
    np.testing.assert_allclose(gy.array, dose.array * 1e-3, rtol=1e-6)
    assert rec["unit_source"] == "--dose-unit"
    dcm = str(tmp_path / "d.dcm")
    write_rtdose(dose, dcm)
    with pytest.raises(InputError, match="says its unit is Gy, --dose-unit says cGy"):
        read_dose_map(dcm, dose_unit="cGy")
    assert read_dose_map(dcm, dose_unit="Gy")[1]["unit_source"] == "header"
    with pytest.raises(InputError, match="not one of Gy, cGy, mGy"):
        read_dose_map(plain, dose_unit="rad")
    scaled, rec, _ = read_dose_map(plain, dose_unit="Gy", dose_scale=2.0)
    np.testing.assert_allclose(scaled.array, dose.array * 2.0, rtol=1e-6)


def test_implausible_negative_and_relative_doses(tmp_path):
    dose = _dose(DIRECTIONS["identity"])
    big = str(tmp_path / "big.nrrd")
    write_image(dose.with_array(dose.array * 100), big)
    _, _, notes = read_dose_map(big, dose_unit="Gy")
    assert any("is the unit right" in n for n in notes)
    neg = dose.array.copy()
    neg[0, 0, 0] = -3.0
    path = str(tmp_path / "neg.nrrd")
    write_image(dose.with_array(neg), path)
    gy, _, notes = read_dose_map(path, dose_unit="Gy")
    assert gy.array.min() == 0 and any("negative voxel" in n for n in notes)
    dcm = str(tmp_path / "rel.dcm")
    ds = write_rtdose(dose, dcm)
    ds.DoseUnits = "RELATIVE"
    save_dataset(ds, dcm)
    with pytest.raises(InputError, match="DoseUnits is RELATIVE"):
        read_dose_map(dcm)


def test_evaluate_refuses_a_dose_that_misses_the_segments(tmp_path, capsys):
    out, _, lab = _computed_case(tmp_path)
    far = sitk.ReadImage(str(out / "dose.nrrd"))
    far.SetOrigin((500.0, 500.0, 500.0))
    path = str(tmp_path / "far.nrrd")
    sitk.WriteImage(far, path)
    rc = main(["evaluate", "--dose", path, "--dose-unit", "Gy", "--segmentation", lab, "--out", str(tmp_path / "e")])
    assert rc == 2 and "do not overlap" in capsys.readouterr().err


# -- PDF ---------------------------------------------------------------------------------------
def test_report_pdf_holds_every_section(tmp_path):
    pytest.importorskip("matplotlib")
    from TAREDosimetryLib.reporting.pdf import write_report_pdf

    act, seg = box_case()
    result = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.5, lung_shunt_fraction=0.05))
    path = str(tmp_path / "report.pdf")
    pages = write_report_pdf(result, path, background=act, segmentation=seg)
    data = open(path, "rb").read()
    assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
    assert pages == 5 == len(re.findall(rb"/Type /Page\b", data))  # rules, metrics, DVH, dose slices, record
    assert b"TAREDosimetry" in data  # document information (author)


# -- SEG and SR from the command line ----------------------------------------------------------
def test_run_writes_seg_and_sr_in_the_pet_study_and_the_sr_holds_the_mean_doses(tmp_path):
    hd = pytest.importorskip("highdicom")
    folder, lab, _ = _pet_case(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--pet", folder, "--segmentation", lab, "--labels", "1=liver,2=tumour", "--out", str(out),
                 "--no-report", "--dicom-sr", "--quiet"]) == 0
    assert {"segments.dcm", "metrics_sr.dcm"} <= set(os.listdir(out)) and "dose.dcm" not in os.listdir(out)
    pet = pydicom.dcmread(os.path.join(folder, sorted(os.listdir(folder))[0]))
    seg = hd.seg.segread(str(out / "segments.dcm"))
    assert seg.StudyInstanceUID == pet.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pet.SeriesInstanceUID  # the SEG is drawn on the PET
    sr = hd.sr.srread(str(out / "metrics_sr.dcm"))
    metrics = _metrics(out)
    means = {}
    for group in sr.content.get_volumetric_roi_measurement_groups():
        for m in group.get_measurements():
            if m.name.value == "128513" and m.derivation is not None and m.derivation.meaning == "Mean":
                means[str(group.tracking_identifier)] = m.value
    assert set(means) == {"liver", "tumour"}
    for name, value in means.items():
        assert float(value) == pytest.approx(metrics[name]["mean_gy"], rel=1e-9)
    kinds = [o["file"] for o in json.loads((out / "metrics.json").read_text())["summary"]["exports"]["objects"]]
    assert kinds == ["segments.dcm", "metrics_sr.dcm"]


def _sr_items(ds):
    """Every content item of an SR, depth first, as (item, parent item or None)."""
    out = []

    def walk(items, parent):
        for it in items:
            out.append((it, parent))
            if "ContentSequence" in it:
                walk(it.ContentSequence, it)

    walk(ds.ContentSequence, None)
    return out


def _children_text(item):
    return {c.ConceptNameCodeSequence[0].CodeValue: c.TextValue for c in item.get("ContentSequence", []) if c.ValueType == "TEXT"}


def test_sr_holds_every_entry_every_rule_and_the_overall_status(tmp_path):
    """Review finding 18: a FAIL case (normal liver derived by the engine at 316 Gy > 75 Gy, lungs of the LSF model
    at 70 Gy > 30 and > 50 Gy) read as a single tumour PASS in the PACS, the derived entries and the overall status
    absent.  Now every metrics.json entry is a measurement group (derived ones without a SEG reference), every rule
    evaluation is a qualitative evaluation with PASS/FAIL/N/A and its reason, and the case group holds the status."""
    hd = pytest.importorskip("highdicom")
    act, seg = box_case()
    lung = np.zeros(act.shape, bool)
    lung[1, :, :] = True  # a slab outside the liver box
    lab = seg.mask("liver").astype(np.uint8)
    lab[seg.mask("tumour")] = 2
    lab[lung] = 3
    write_image(act, str(tmp_path / "spect.nrrd"))
    img = sitk.GetImageFromArray(lab)
    img.SetSpacing(act.spacing_mm)
    sitk.WriteImage(img, str(tmp_path / "labels.nii.gz"))
    out = tmp_path / "out"
    assert main(["run", "--spect", str(tmp_path / "spect.nrrd"), "--segmentation", str(tmp_path / "labels.nii.gz"),
                 "--labels", "1=liver,2=tumour,3=lung", "--administered-activity-gbq", "6", "--residual-fraction", "0.05",
                 "--lung-shunt-fraction", "0.3", "--lung-mass-g", "400", "--microsphere", "glass", "--indication", "hcc",
                 "--treatment-approach", "unilobar", "--bilirubin-mg-dl", "0.8", "--hepatic-reserve-pct", "40",
                 "--dicom-sr", "--no-report", "--quiet", "--out", str(out)]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["overall_status"] == "FAIL"
    sr = hd.sr.srread(str(out / "metrics_sr.dcm"))
    assert "FAIL" in sr.SeriesDescription
    groups = {str(g.tracking_identifier): g for g in sr.content.get_volumetric_roi_measurement_groups()}
    plain = {str(g.tracking_identifier): g for g in sr.content.get_image_measurement_groups()}
    assert set(groups) == {"liver", "tumour"}  # the SEG's segments, referenced
    names = {s["name"] for s in record["segments"]}
    assert names - set(groups) == set(plain) - {"case"} and {"normal liver (derived)", "lungs (LSF model)"} <= set(plain)
    for s in record["segments"]:  # every entry's mean dose, derived ones included
        g = groups.get(s["name"]) or plain[s["name"]]
        mean = [m.value for m in g.get_measurements() if m.name.value == "128513" and m.derivation and m.derivation.meaning == "Mean"]
        assert float(mean[0]) == pytest.approx(s["mean_gy"], rel=1e-6), s["name"]
    # every rule evaluation, read back with pydicom: (entry, rule text) -> status, reason
    items = _sr_items(pydicom.dcmread(str(out / "metrics_sr.dcm")))
    tracking = {}
    for it, parent in items:
        if it.ValueType == "TEXT" and it.ConceptNameCodeSequence[0].CodeMeaning == "Tracking Identifier":
            tracking[id(parent)] = it.TextValue
    found = []
    for it, parent in items:
        if it.ValueType == "CODE" and it.ConceptNameCodeSequence[0].CodeValue == "RULE":
            texts = _children_text(it)
            found.append((tracking[id(parent)], texts["RULETEXT"].split(":")[0], it.ConceptCodeSequence[0].CodeMeaning, texts.get("REASON", "")))
    expected = [(e["segment"] or "case", e["rule"], e["status"], e["reason"]) for e in record["evaluations"]]
    assert sorted(found) == sorted(expected)
    assert {"PASS", "FAIL", "N/A"} <= {f[2] for f in found}
    status = [it for it, _ in items if it.ValueType == "CODE" and it.ConceptNameCodeSequence[0].CodeValue == "OVERALL"]
    assert len(status) == 1 and status[0].ConceptCodeSequence[0].CodeMeaning == "FAIL"


def test_sr_of_an_incomplete_case_says_why(tmp_path):
    hd = pytest.importorskip("highdicom")
    act, seg = box_case()
    write_image(act, str(tmp_path / "spect.nrrd"))
    lab = seg.mask("liver").astype(np.uint8)
    lab[seg.mask("tumour")] = 2
    img = sitk.GetImageFromArray(lab)
    img.SetSpacing(act.spacing_mm)
    sitk.WriteImage(img, str(tmp_path / "labels.nii.gz"))
    out = tmp_path / "out"
    assert main(["run", "--spect", str(tmp_path / "spect.nrrd"), "--segmentation", str(tmp_path / "labels.nii.gz"),
                 "--labels", "1=liver,2=tumour", "--administered-activity-gbq", "0.06", "--lung-shunt-fraction", "0.05",
                 "--microsphere", "glass", "--indication", "hcc", "--dicom-sr", "--no-report", "--quiet", "--out", str(out)]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["overall_status"] == "INCOMPLETE" and record["incomplete_reasons"]
    items = _sr_items(pydicom.dcmread(str(out / "metrics_sr.dcm")))
    status = [it for it, _ in items if it.ValueType == "CODE" and it.ConceptNameCodeSequence[0].CodeValue == "OVERALL"][0]
    assert status.ConceptCodeSequence[0].CodeMeaning == "INCOMPLETE"
    reasons = [c.TextValue for c in status.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "INCOMPLETE"]
    assert reasons == [r[:1024] for r in record["incomplete_reasons"]]
    assert "case" in {str(g.tracking_identifier) for g in hd.sr.srread(str(out / "metrics_sr.dcm")).content.get_image_measurement_groups()}


def test_standalone_seg_brings_the_rt_dose_it_refers_to(tmp_path):
    pytest.importorskip("highdicom")
    out, spect, lab = _computed_case(tmp_path)
    out2 = tmp_path / "seg_only"
    assert main(["run", "--spect", spect, "--segmentation", lab, "--labels", "1=liver,2=tumour", "--lung-shunt-fraction", "0", "--administered-activity-gbq",
                 "1.5", "--out", str(out2), "--no-report", "--dicom-seg", "--quiet"]) == 0
    seg = pydicom.dcmread(out2 / "segments.dcm")
    dose = pydicom.dcmread(out2 / "dose.dcm")
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == dose.SOPInstanceUID
    assert seg.StudyInstanceUID == dose.StudyInstanceUID and seg.FrameOfReferenceUID == dose.FrameOfReferenceUID
    assert "SEG refers to it" in json.loads((out2 / "metrics.json").read_text())["summary"]["exports"]["note"]


# -- batch -------------------------------------------------------------------------------------
def test_batch_reads_dicom_timing_evaluates_dose_rows_and_writes_rtdose_for_every_case(tmp_path):
    folder, lab, _ = _pet_case(tmp_path)
    out, spect, _ = _computed_case(tmp_path)
    manifest = tmp_path / "cases.csv"
    manifest.write_text(
        "case_id,pet,dose,dose_unit,segmentation,labels,hours_since_administration\n"
        f'petdicom,{folder},,,{lab},"1=liver,2=tumour",\n'
        f'petgiven,{folder},,,{lab},"1=liver,2=tumour",21\n'
        f'external,,{out / "dose.nrrd"},Gy,{lab},"1=liver,2=tumour",\n')
    res = tmp_path / "res"
    assert main(["batch", "--manifest", str(manifest), "--out", str(res), "--no-report", "--rtdose", "--quiet"]) == 0
    for case in ("petdicom", "petgiven", "external"):
        assert (res / case / "dose.dcm").is_file(), case
    a = json.loads((res / "petdicom" / "metrics.json").read_text())
    b = json.loads((res / "petgiven" / "metrics.json").read_text())
    c = json.loads((res / "external" / "metrics.json").read_text())
    assert a["inputs"]["timing_source"] == "DICOM header" and a["parameters"]["hours_since_administration"] == pytest.approx(19.75)
    assert b["inputs"]["timing_source"] == "command line" and b["parameters"]["hours_since_administration"] == 21.0
    assert c["summary"]["dose_source"] == "external"
    assert _metrics(res / "external")["tumour"]["mean_gy"] == pytest.approx(_metrics(out)["tumour"]["mean_gy"], rel=2e-6)


def test_batch_of_dicom_and_dose_rows_resumes_by_content_and_runs_on_workers(tmp_path):
    # The resume key covers what metrics.json records for a rerun: the DICOM series' files, the
    # external dose map, the row's DICOM and dose options and the exports; worker processes get the
    # exports and DICOM options too.
    import csv

    from TAREDosimetryLib.batch import run_manifest
    from TAREDosimetryLib.reporting.dicomexport import DicomExports

    folder, lab, _ = _pet_case(tmp_path)
    out, _spect, _ = _computed_case(tmp_path)
    manifest = tmp_path / "cases.csv"
    text = ("case_id,pet,dose,dose_unit,dose_scale,segmentation,labels\n"
            f'petdicom,{folder},,,,{lab},"1=liver,2=tumour"\n'
            f'external,,{out / "dose.nrrd"},Gy,1,{lab},"1=liver,2=tumour"\n')
    manifest.write_text(text)
    res = tmp_path / "res"
    batch = ["batch", "--manifest", str(manifest), "--out", str(res), "--no-report", "--rtdose", "--quiet"]
    assert main(batch) == 0
    record = json.loads((res / "petdicom" / "batch_record.json").read_text())
    metrics = json.loads((res / "petdicom" / "metrics.json").read_text())
    assert record["fingerprint"]["image"]["sha256"] == metrics["inputs"]["sha256"]["activity_image"]
    assert record["fingerprint"]["outputs"]["dicom_exports"] == ["rtdose"]
    ext = json.loads((res / "external" / "batch_record.json").read_text())["fingerprint"]
    assert ext["dose"]["sha256"] == json.loads((res / "external" / "metrics.json").read_text())["inputs"]["sha256"]["dose_file"]

    def rows(name):
        with open(res / name, newline="") as fh:
            return {r["case_id"]: r["status"] for r in csv.DictReader(fh)}

    assert main(batch) == 0 and rows("batch_summary-2.csv") == {"petdicom": "skipped", "external": "skipped"}
    assert main(batch[:-2] + ["--quiet"]) == 3  # without --rtdose the folder would differ: changed, refused
    assert rows("batch_summary-3.csv") == {"petdicom": "failed", "external": "failed"}
    manifest.write_text(text.replace("Gy,1,", "Gy,2,"))  # another dose_scale for the external dose
    assert main(batch) == 3 and rows("batch_summary-4.csv") == {"petdicom": "skipped", "external": "failed"}
    assert main(batch + ["--overwrite"]) == 0 and rows("batch_summary.csv") == {"petdicom": "skipped", "external": "ok"}
    mean = _metrics(res / "external")["tumour"]["mean_gy"]
    assert mean == pytest.approx(2 * _metrics(out)["tumour"]["mean_gy"], rel=2e-6)
    # The same manifest on two worker processes: the exports and the DICOM reading go with the cases.
    pooled = run_manifest(str(manifest), str(tmp_path / "pool"), report=False, workers=2,
                          exports=DicomExports(rtdose=True))
    assert [e["status"] for e in pooled] == ["ok", "ok"]
    assert (tmp_path / "pool" / "petdicom" / "dose.dcm").is_file()
    assert _metrics(tmp_path / "pool" / "external") == _metrics(res / "external")
    assert [e["content_sha256"] for e in pooled] == _shas(res / "batch_summary.csv")  # the CLI's key and the API's agree


def _shas(path):
    import csv

    with open(path, newline="") as fh:
        return [r["content_sha256"] for r in csv.DictReader(fh)]


def test_dicompyler_core_dvh_of_our_rt_dose_agrees_with_ours_on_an_rtstruct(tmp_path):
    """Cross-check with another DVH tool: dicompyler-core computes the DVH of our dose.dcm on an RT
    Structure Set; its mean dose and ours (evaluate, linear sampling) both equal the analytic mean
    of a linear dose field over a sphere (55 Gy) within 0.5 %."""
    _dicompyler_parser()
    from dicom_synth import circle, write_rtstruct
    from dicompylercore import dvhcalc
    from TAREDosimetryLib.imaging.rtstruct import read_rtstruct
    from TAREDosimetryLib.pipeline import evaluate_dose_case
    from TAREDosimetryLib.volume import Grid

    grid = Grid((30, 60, 60), (2.0, 2.0, 2.5), (-59.0, -59.0, -36.25))
    x = np.arange(60) * 2.0 - 59.0
    dose = Volume(np.broadcast_to(50.0 + x[None, None, :], grid.shape).astype(np.float32).copy(), grid=grid)
    ctx = dicom_context(None)
    write_rtdose(dose, str(tmp_path / "dose.dcm"), ctx)
    study = dict(ctx.patient, **ctx.study, FrameOfReferenceUID=ctx.frame_of_reference_uid)
    zs = grid.origin_mm[2] + 2.5 * np.arange(grid.shape[0])
    contours = [circle(5.0, 0.0, z, np.sqrt(15.0**2 - z**2)) for z in zs if abs(z) < 15.0]
    write_rtstruct(str(tmp_path / "rs.dcm"), [("Tumor", (255, 0, 0), contours)], study=study)
    theirs = dvhcalc.get_dvh(str(tmp_path / "rs.dcm"), str(tmp_path / "dose.dcm"), 1)
    ours = evaluate_dose_case(dose, read_rtstruct(str(tmp_path / "rs.dcm")), params=DosimetryParams(sampling="linear"))
    mean = ours.segment("Tumor").metrics["mean_gy"]
    assert theirs.mean == pytest.approx(55.0, rel=5e-3) and mean == pytest.approx(55.0, rel=5e-3)
    assert mean == pytest.approx(theirs.mean, rel=5e-3)


def test_evaluate_takes_the_clinical_inputs_that_choose_the_thresholds(tmp_path):
    """`evaluate` without --indication is INCOMPLETE (default preset applied); with --indication the
    preset is chosen from it and that reason goes, as for `run`."""
    out, _, lab = _computed_case(tmp_path)
    m = {}
    for name, extra in (("none", []), ("breast", ["--indication", "breast"])):
        ev = tmp_path / f"ev_{name}"
        assert main(["evaluate", "--dose", str(out / "dose.nrrd"), "--segmentation", lab, "--labels", "1=liver,2=tumour",
                     "--out", str(ev), "--no-report", "--quiet"] + extra) == 0
        m[name] = json.loads((ev / "metrics.json").read_text())
    assert any("indication not given" in r for r in m["none"]["incomplete_reasons"])
    assert not any("indication not given" in r for r in m["breast"]["incomplete_reasons"])
    assert m["breast"]["parameters"]["indication"] == "breast"
