"""Figures and the HTML report (TAREDosimetryLib.reporting).

The synthetic case: a 96 mm cube of SPECT-like 4 mm voxels whose z axis is reversed (direction
diag(1, 1, -1), as the MAA SPECT), with segments drawn on a 2 mm grid of the usual direction,
so every picture needs physical-space resampling to line up.  LPS millimetres (x to the
patient's left, y posterior, z superior):

* liver:   |x|, |y|, |z| < 40
* tumour:  a 12 mm cube centred on (-10, 6, 10) = 3 x 3 x 3 activity voxels; 20 counts per
  voxel, 40 in the middle voxel (so the dose peaks exactly at the tumour's centroid)
* markers: single hot voxels (8 counts) at (-30, -14, 10) (right-anterior of the tumour, in its
  axial plane) and (-30, 6, 30) (right-superior of it, in its coronal plane)
* ``<b>x</b>``: a small box (role other) whose name must come out escaped in the HTML
"""

import base64
import html
import io
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

from TAREDosimetryLib import DosimetryParams, Segmentation, Volume, imaging, run_case
from TAREDosimetryLib.reporting.wording import banner
from TAREDosimetryLib.reporting import figures, tables
from TAREDosimetryLib.reporting import html as report_html
from TAREDosimetryLib.volume import Grid

pytest.importorskip("matplotlib")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TUMOUR_CENTRE = (-10.0, 6.0, 10.0)
ODD_NAME = "<b>x</b>"


def _png_size(data):
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _activity_grid():
    # voxel centres x, y = -46 + 4 i; z = 46 - 4 k (reversed z axis)
    return Grid((24, 24, 24), (4.0, 4.0, 4.0), (-46.0, -46.0, 46.0), (1, 0, 0, 0, 1, 0, 0, 0, -1))


def _centres_lps(grid):
    """(x, y, z) arrays (Z, Y, X) of the voxel centres of ``grid``."""
    k, j, i = np.indices(grid.shape, dtype=np.float64)
    ijk = np.stack([i, j, k, np.ones_like(i)], axis=-1)
    lps = ijk @ grid.ijk_to_lps.T
    return lps[..., 0], lps[..., 1], lps[..., 2]


def _near(x, y, z, centre, half):
    cx, cy, cz = centre
    return (np.abs(x - cx) < half) & (np.abs(y - cy) < half) & (np.abs(z - cz) < half)


def _synthetic_case(rules="breast-liver-metastases", administered_activity_gbq=0.1):
    agrid = _activity_grid()
    x, y, z = _centres_lps(agrid)
    liver = _near(x, y, z, (0, 0, 0), 40)
    tumour = _near(x, y, z, TUMOUR_CENTRE, 6)
    counts = np.zeros(agrid.shape, np.float32)
    counts[liver] = 1.0
    counts[tumour] = 20.0
    counts[_near(x, y, z, TUMOUR_CENTRE, 1)] = 40.0
    counts[_near(x, y, z, (-30, -14, 10), 1)] = 8.0
    counts[_near(x, y, z, (-30, 6, 30), 1)] = 8.0
    activity = Volume(counts, grid=agrid, name="synthetic SPECT")

    sgrid = Grid((48, 48, 48), (2.0, 2.0, 2.0), (-47.0, -47.0, -47.0))
    sx, sy, sz = _centres_lps(sgrid)
    masks = {
        "liver": _near(sx, sy, sz, (0, 0, 0), 40),
        "tumour": _near(sx, sy, sz, TUMOUR_CENTRE, 6),
        ODD_NAME: _near(sx, sy, sz, (25, 25, -25), 5),
    }
    seg = Segmentation.from_masks(masks, sgrid, colors={"tumour": (0.95, 0.84, 0.57)})
    params = DosimetryParams(administered_activity_gbq=administered_activity_gbq, lung_shunt_fraction=0.05,
                             residual_fraction=0.0, default_lung_mass_g=1000.0, prior_lung_dose_gy=0.0, indication="breast")
    result = run_case(activity, seg, params=params, rules=rules, inputs={"activity": "synthetic <SPECT>"})
    return result, seg


@pytest.fixture(scope="module")
def case():
    return _synthetic_case()


# -- metrics table ------------------------------------------------------------------------------

def test_metrics_table_columns_have_a_stable_order(case):
    result, _ = case
    columns, rows = tables.metrics_table_rows(result)
    p = result.params
    d_keys = [f"d{x:g}_gy" for x in p.d_levels_pct]
    v_pct = [f"v{x:g}_pct" for x in p.v_levels_gy]
    v_ml = [f"v{x:g}_ml" for x in p.v_levels_gy]
    head = ["name", "role", "volume_ml", "mass_g", "activity_gbq", "activity_pct", "mean_gy", "median_gy",
            "sd_gy", "min_gy", "max_gy"]
    tail = ["eud_gy", "bed_gy", "tn_ratio", "cumulative_mean_gy"]
    assert columns[: len(head)] == head
    assert columns[len(head):len(head) + len(d_keys) + 2 * len(v_pct)] == d_keys + v_pct + v_ml
    assert columns[len(head) + len(d_keys) + 2 * len(v_pct):][: len(tail)] == tail
    assert [r[0] for r in rows] == [s.name for s in result.segments]
    assert all(len(r) == len(columns) for r in rows)


def test_metrics_table_values_are_plain_numbers_or_none(case):
    result, _ = case
    columns, rows = tables.metrics_table_rows(result)
    by_name = {r[0]: dict(zip(columns, r)) for r in rows}
    tum = result.segment("tumour")
    assert by_name["tumour"]["mean_gy"] == pytest.approx(tum.metrics["mean_gy"])
    assert by_name["tumour"]["tn_ratio"] == pytest.approx(tum.metrics["tn_ratio"])
    assert by_name["liver"]["tn_ratio"] is None  # not a tumour
    lung = by_name["lungs (LSF model)"]
    assert lung["volume_ml"] is None  # NaN (no lung segment) becomes None
    assert lung["cumulative_mean_gy"] == pytest.approx(lung["mean_gy"])
    for row in rows:
        for v in row[2:]:
            assert v is None or (isinstance(v, (int, float)) and np.isfinite(v))


@pytest.mark.parametrize(
    "key, value, text",
    [("mean_gy", 204.8421, "204.8"), ("activity_gbq", 0.47912, "0.479"), ("v100_pct", 98.333, "98.3"),
     ("tn_ratio", 4.4409, "4.44"), ("volume_ml", 3.14159, "3.14"), ("mean_gy", float("nan"), "\u2013"),
     ("mean_gy", None, "\u2013")],
)
def test_format_metric_uses_the_precision_of_the_unit(key, value, text):
    assert tables.format_metric(key, value) == text


# -- DVH figure ---------------------------------------------------------------------------------

def test_plot_dvh_returns_a_png_of_the_documented_size(case, tmp_path):
    result, _ = case
    path = tmp_path / "dvh.png"
    data = figures.plot_dvh(result, str(path))
    assert _png_size(data) == (1320, 660)  # 11 x 5.5 in at 120 dpi (the legend beside the plot)
    assert path.read_bytes() == data


def test_dvh_x_range_covers_thresholds_and_hot_tail(case):
    result, _ = case
    rules = figures._dose_rules(result)
    assert {r.metric for r in rules} == {"mean_gy", "cumulative_mean_gy"}
    x_max = figures._dvh_x_max(result, rules)
    assert x_max >= 1.2 * max(r.threshold for r in rules)
    assert x_max >= max(s.dvh.dose_at_volume_pct(1) for s in result.segments)
    # Review finding 20e: every curve ends inside the axis (the axis stopped at the largest D1 and
    # clipped the hottest tails: Tumor 1's maximum 375.6 Gy beyond an axis ending at 365 Gy).
    assert x_max > max(s.dvh.max_gy for s in result.segments)


def test_dvh_x_range_shows_a_hot_tail_beyond_d1():
    """One voxel in 1000 at 400 Gy, the rest at 10 Gy: D1 is 10 Gy, the axis must still reach 400 Gy."""
    from types import SimpleNamespace

    from TAREDosimetryLib.evaluation.dvh import DVH

    dvh = DVH(np.r_[np.full(999, 10.0), 400.0])
    assert dvh.dose_at_volume_pct(1) == 10.0
    stub = SimpleNamespace(segments=[SimpleNamespace(dvh=dvh)])
    assert figures._dvh_x_max(stub, []) > 400.0


# -- dose slices: geometry ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def planes(case):
    result, seg = case
    return figures.dose_slice_planes(result, None, seg, views=("axial", "coronal"), fov_mm=81, pixel_mm=1.0)


def test_slices_are_drawn_for_the_tumours_only(planes):
    assert [(p.segment, p.view) for p in planes] == [("tumour", "axial"), ("tumour", "coronal")]


def test_slice_plane_is_centred_on_the_tumour_centroid(planes):
    for p in planes:
        assert_allclose(p.centre_lps, TUMOUR_CENTRE, atol=1e-6)
        assert p.dose_gy.shape == p.background.shape == (81, 81)
        centre_lps = p.grid.ijk_to_lps @ np.array([p.centre_index[1], p.centre_index[0], 0, 1.0])
        assert_allclose(centre_lps[:3], TUMOUR_CENTRE, atol=1e-6)


def test_dose_maximum_of_the_plane_is_at_the_tumour_centroid(planes):
    for p in planes:
        peak = np.unravel_index(np.argmax(p.dose_gy), p.dose_gy.shape)
        assert peak == p.centre_index, p.view


def test_tumour_contour_lies_on_the_hot_spot(planes):
    for p in planes:
        m = p.masks["tumour"]
        assert m[p.centre_index]
        assert 120 <= m.sum() <= 170  # a 12 mm x 12 mm square at 1 mm pixels (144 px)
        liver_only = p.masks["liver"] & ~m
        assert p.dose_gy[m].mean() > 5 * p.dose_gy[liver_only].mean()


def test_slices_use_the_radiological_orientation(planes):
    # Each marker lies 20 mm to the patient's right of the tumour and 20 mm anterior (axial)
    # or superior (coronal): the upper left of the picture.
    for p in planes:
        r, c = p.centre_index
        corners = {
            "upper left": p.dose_gy[r - 20, c - 20], "upper right": p.dose_gy[r - 20, c + 20],
            "lower left": p.dose_gy[r + 20, c - 20], "lower right": p.dose_gy[r + 20, c + 20],
        }
        assert max(corners, key=corners.get) == "upper left", (p.view, corners)
        assert corners["upper left"] > 3 * corners["lower right"]
        assert p.letters == (("R", "L", "A", "P") if p.view == "axial" else ("R", "L", "S", "I"))


def test_background_is_resampled_in_physical_space(case):
    # A CT-like background on a RAS-ordered grid (x and y axes reversed, as a NIfTI read by ITK)
    # whose values are the LPS x (or z) coordinate of each voxel: the plane must show x growing
    # to the right of the picture and z growing upwards.
    result, seg = case
    grid = Grid((40, 40, 40), (3.0, 3.0, 3.0), (58.5, 58.5, -58.5), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    x, y, z = _centres_lps(grid)
    for coord, view in ((x, "axial"), (z, "coronal")):
        bg = Volume((coord - 1000.0).astype(np.float32), grid=grid, unit="HU")
        (p,) = figures.dose_slice_planes(result, bg, seg, views=(view,), fov_mm=41, pixel_mm=1.0)
        assert p.background_is_ct
        r, c = p.centre_index
        offsets = np.arange(-20, 21, dtype=float)
        if view == "axial":
            assert_allclose(p.background[r, :], TUMOUR_CENTRE[0] - 1000.0 + offsets, atol=1e-3)
        else:
            assert_allclose(p.background[:, c], TUMOUR_CENTRE[2] - 1000.0 - offsets, atol=1e-3)


def test_without_tumours_the_liver_is_shown(case):
    result, seg = case
    seg2 = seg.subset(["liver", ODD_NAME])
    r2 = run_case(result.activity_gbq, seg2, params=result.params)
    planes = figures.dose_slice_planes(r2, None, seg2, views=("axial",), fov_mm=41, pixel_mm=2.0)
    assert [p.segment for p in planes] == ["liver"]


def test_plot_dose_slices_returns_a_png(case, tmp_path):
    result, seg = case
    path = tmp_path / "slices.png"
    data = figures.plot_dose_slices(result, None, seg, str(path), views=("axial", "coronal"), dpi=100)
    w, h = _png_size(data)
    assert (w, h) == (round((4.9 * 2 + 0.9) * 100), round((5.2 * 1 + 1.0) * 100))
    assert path.read_bytes() == data


# -- HTML ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report_text(case, tmp_path_factory):
    result, seg = case
    path = tmp_path_factory.mktemp("report") / "report.html"
    out = report_html.write_report_html(result, str(path), segmentation=seg, title="Synthetic <case> & co")
    assert out == str(path)
    return path.read_text(encoding="utf-8")


def test_html_report_is_self_contained(report_text):
    assert report_text.startswith("<!DOCTYPE html>")
    assert "<script" not in report_text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", report_text)
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', report_text)
    assert len(images) == 3  # the DVH and the tumour's two planes (HTML panels)
    for b64 in images:
        assert base64.b64decode(b64)[:8] == PNG_SIGNATURE


def test_html_report_shows_status_summary_and_rules(case, report_text):
    result, _ = case
    assert result.overall_status == "PASS"
    assert '<div class="banner"' in report_text and "<b>PASS</b>" in report_text
    assert html.escape(banner(result)["message"]) in report_text and "every rule judged was met" in report_text
    for ev in result.evaluations:
        assert html.escape(ev.rule.label, quote=True) in report_text
        assert html.escape(ev.rule.source, quote=True) in report_text
    tumour_mean = result.segment("tumour").metrics["mean_gy"]
    assert f'<td class="num">{tumour_mean:.1f}</td>' in report_text
    assert "Research software, not a medical device" in report_text
    assert "Known limits" in report_text and "partial-volume" in report_text
    assert "k_gy_kg_per_gbq" in report_text and "49.67" in report_text


def test_html_report_names_every_segment_escaped(case, report_text):
    result, _ = case
    for s in result.segments:
        assert f"<td>{html.escape(s.name)}</td>" in report_text
    assert ODD_NAME not in report_text
    assert "&lt;b&gt;x&lt;/b&gt;" in report_text
    assert "Synthetic &lt;case&gt; &amp; co" in report_text
    assert "synthetic &lt;SPECT&gt;" in report_text


def test_html_fail_banner_is_red(tmp_path):
    result, seg = _synthetic_case(rules="hcc-glass")  # tumour mean about 170 Gy, below 205 Gy
    assert result.overall_status == "FAIL"
    path = tmp_path / "fail.html"
    report_html.write_report_html(result, str(path))
    text = path.read_text(encoding="utf-8")
    assert "<b>FAIL</b>" in text and "#b21f2d" in text
    assert "Dose slices need the segmentation" in text


def test_report_without_matplotlib_keeps_the_tables(case, tmp_path, monkeypatch):
    result, seg = case
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)  # import raises ImportError
    with pytest.raises(figures.MissingDependencyError, match="pip install matplotlib"):
        figures.plot_dvh(result)
    with pytest.raises(RuntimeError, match="pip install matplotlib"):
        figures.plot_dose_slices(result, None, seg)
    path = tmp_path / "no_mpl.html"
    report_html.write_report_html(result, str(path), segmentation=seg)
    text = path.read_text(encoding="utf-8")
    assert "Figures need matplotlib" in text and "pip install matplotlib" in text
    assert "data:image/png" not in text
    assert "<td>tumour</td>" in text


def test_engine_and_report_import_without_matplotlib():
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import TAREDosimetryLib, TAREDosimetryLib.reporting.html, TAREDosimetryLib.pipeline\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "TAREDosimetry") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -- real MAA SPECT case ------------------------------------------------------------------------

def test_maa_case_report_is_written_and_tumour_contours_lie_on_the_hot_spots(tmp_path, maa_paths):
    spect_path, seg_path = maa_paths
    spect = imaging.read_image(spect_path, "SPECT image")  # direction diag(1, 1, -1)
    seg = imaging.read_segmentation(seg_path)  # another grid (CT), usual direction
    result = run_case(spect, seg, params=DosimetryParams(administered_activity_gbq=2.0, lung_shunt_fraction=0.06))
    planes = figures.dose_slice_planes(result, None, seg, views=("axial", "coronal"))
    assert sorted({p.segment for p in planes}) == ["Tumor 1", "Tumor 2"]
    for p in planes:
        m = p.masks[p.segment]
        assert m[p.centre_index] or m.sum() > 0
        liver_rest = p.masks["liver"] & ~np.logical_or.reduce([p.masks[n] for n in ("Tumor 1", "Tumor 2")])
        assert p.dose_gy[m].mean() > 2.5 * p.dose_gy[liver_rest].mean(), (p.segment, p.view)
    path = tmp_path / "maa.html"
    report_html.write_report_html(result, str(path), segmentation=seg, title="MAA patient 2")
    text = path.read_text(encoding="utf-8")
    assert "Tumor 1" in text and "Tumor 2" in text and "lungs (LSF model)" in text
    assert text.count("data:image/png;base64,") == 1 + len(planes)


def test_plane_image_composes_background_wash_isodose_and_outlines(case):
    """The dose slices are drawn as one RGB image per plane: grey background, the dose wash from the
    threshold, white dashes on the isodose, segment outlines in the segment's colour."""
    result, seg = case
    planes = figures.dose_slice_planes(result, None, seg, views=("axial",), fov_mm=41, pixel_mm=2.0)
    p = planes[0]
    cmap = figures._dose_colormap()
    d_max = float(p.dose_gy.max())
    level = 0.5 * d_max
    rgb = figures.plane_rgb(p, cmap, 0.1 * d_max, d_max, [level])
    up = rgb.shape[0] // p.dose_gy.shape[0]
    assert rgb.shape == (p.dose_gy.shape[0] * up, p.dose_gy.shape[1] * up, 3) and up >= 1
    assert rgb.min() >= 0 and rgb.max() <= 1
    p.dose_gy, p.background = figures._upsampled(p.dose_gy, up), figures._upsampled(p.background, up)
    p.masks = {n: figures._upsampled(m, up) for n, m in p.masks.items()}
    level_mask = p.dose_gy >= level
    near_any = np.zeros(p.dose_gy.shape, bool)
    for m in p.masks.values():
        near_any |= figures._grown(m)
    quiet = (p.dose_gy < 0.1 * d_max) & ~near_any
    if quiet.any():  # no wash, no outline: grey
        assert np.allclose(rgb[quiet].std(axis=1), 0)
    washed = (p.dose_gy >= 0.1 * d_max) & ~near_any & ~figures._grown(level_mask)
    if washed.any():  # the wash colours the background
        assert rgb[washed].std(axis=1).max() > 0.01
    own = p.masks[p.segment]
    inner = own
    for _ in range(4):
        inner = figures._shrunk(inner)
    assert np.allclose(rgb[own & ~inner], p.colors[p.segment])  # the plane's own segment outlined, 4 pixels


# -- dose slices as HTML panels (report.html) ---------------------------------------------------

def test_rgb_png_decodes_to_the_image_it_was_given():
    from PIL import Image

    from TAREDosimetryLib.reporting.slicehtml import rgb_png

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    a[:, 10:30] = a[:, 10:11]  # runs of equal pixels (the filter's zeros)
    for img, expected in ((a, a), (a / 255.0, a)):
        data = rgb_png(img)
        assert _png_size(data) == (53, 37)
        back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(back, expected)
    with pytest.raises(ValueError, match="RGB image"):
        rgb_png(np.zeros((4, 4)))


def test_colour_bar_ticks_are_round_and_inside_the_scale():
    from TAREDosimetryLib.reporting.slicehtml import colour_bar_ticks

    assert colour_bar_ticks(3.21, 327.0) == [50.0, 100.0, 150.0, 200.0, 250.0, 300.0]
    assert colour_bar_ticks(1.0, 9.0) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    for lo, hi in ((1.0, 9.0), (0.37, 2.1), (5.0, 5000.0), (80.0, 81.0)):
        t = colour_bar_ticks(lo, hi)
        assert 1 <= len(t) <= 9 and all(lo - 1e-9 <= v <= hi + 1e-9 for v in t)
        steps = np.diff(t)
        assert np.allclose(steps, steps[0]) if len(t) > 1 else True
    assert colour_bar_ticks(5.0, 5.0) == [5.0]


def test_dose_slices_html_shows_every_plane_as_its_composed_image(case):
    from PIL import Image

    from TAREDosimetryLib.reporting.slicehtml import dose_slices_html

    result, seg = case
    text = dose_slices_html(result, None, seg, views=("axial", "coronal"), fov_mm=81, pixel_mm=1.0)
    sf = figures.slice_figure(result, None, seg, views=("axial", "coronal"), fov_mm=81, pixel_mm=1.0)
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == len(sf.planes) == 2
    for (alt, b64), p in zip(images, sf.planes):
        head, mean = figures.plane_heading(p, sf.means[p.segment])
        assert alt.startswith(html.escape(head)) and html.escape(head) in text and mean in text
        rgb = figures.plane_rgb(p, sf.cmap, sf.threshold, sf.d_max, sf.isodoses)
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))
        assert np.array_equal(shown, np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8))
    for letter in ("R", "L", "A", "P", "S", "I"):
        assert f">{letter}</span>" in text
    # scale bar: 20 mm of the 81 mm plane; the colour bar from the wash threshold to the scale top
    assert "width:24.69%" in text and ">20 mm</span>" in text
    assert text.count('class="sl-cbar"') == 1 and "dose (Gy)" in text
    for t in re.findall(r'<span style="bottom:([0-9.]+)%">', text):
        assert 0.0 <= float(t) <= 100.0
    assert html.escape(sf.title) in text
    assert "tumour" in text and "liver" in text  # legend


def test_dose_slices_html_escapes_segment_names(case, monkeypatch):
    from TAREDosimetryLib.reporting import slicehtml

    result, seg = case
    sf = figures.slice_figure(result, None, seg, views=("axial",), fov_mm=41, pixel_mm=2.0)
    for p in sf.planes:  # the tumour renamed as a user may name a segment
        p.segment = ODD_NAME
        p.masks[ODD_NAME], p.colors[ODD_NAME], p.roles[ODD_NAME] = p.masks.pop("tumour"), p.colors["tumour"], "tumor"
    sf.means[ODD_NAME] = 12.5
    monkeypatch.setattr(slicehtml, "slice_figure", lambda *a, **k: sf)
    text = slicehtml.dose_slices_html(result, None, seg)
    assert ODD_NAME not in text and text.count(html.escape(ODD_NAME)) >= 3  # caption, image description, legend


def test_colour_bar_labels_tell_the_ticks_apart_and_a_plane_without_wash_says_so(case, monkeypatch):
    from TAREDosimetryLib.reporting import slicehtml

    for lo, hi in ((0.37, 2.1), (1.0, 1.3), (0.001, 0.004), (80.0, 81.0), (3.21, 327.0)):
        ticks = slicehtml.colour_bar_ticks(lo, hi)
        labels = [slicehtml.tick_label(t, ticks) for t in ticks]
        assert len(set(labels)) == len(labels) and all(abs(float(a) - t) < 1e-9 for a, t in zip(labels, ticks)), labels
    result, seg = case
    sf = figures.slice_figure(result, None, seg, views=("axial",), fov_mm=41, pixel_mm=2.0)
    monkeypatch.setattr(slicehtml, "slice_figure", lambda *a, **k: sf)
    sf.d_max = sf.plane_max = sf.threshold  # every dose at or below the wash threshold (a tiny activity)
    text = slicehtml.dose_slices_html(result, None, seg)
    assert "no colour wash" in text and "linear-gradient" not in text
    sf.d_max = sf.plane_max = sf.threshold * (1 + 1e-9)  # one colour: one label, its dose
    text = slicehtml.dose_slices_html(result, None, seg)
    assert len(re.findall(r'<span style="bottom:[0-9.]+%">', text)) == 1


def test_slice_axis_labels_read_upwards_towards_the_top_of_the_picture(planes):
    # Vertical labels are read from the bottom up: the direction at the top of the picture comes last.
    for p in planes:
        top = {"axial": "anterior", "coronal": "superior"}[p.view]
        assert p.axis_labels[1].endswith(top) and p.letters[2] == top[0].upper()


def test_a_segment_of_two_parts_is_shown_in_its_panels():
    """A tumour of two separate parts has its centroid between them: the planes move along their
    normal to its voxel nearest the centroid (the panel titled with the tumour shows it)."""
    grid = Grid((60, 60, 60), (2.0, 2.0, 2.0), (-60.0, -60.0, -60.0))
    z, y, x = np.indices(grid.shape)
    liver = (z - 30) ** 2 + (y - 30) ** 2 + (x - 30) ** 2 <= 26 ** 2
    blobs = ((z - 18) ** 2 + (y - 22) ** 2 + (x - 30) ** 2 <= 4 ** 2) | ((z - 42) ** 2 + (y - 38) ** 2 + (x - 30) ** 2 <= 4 ** 2)
    seg = Segmentation.from_masks({"liver": liver & ~blobs, "tumour": blobs}, grid)
    act = Volume(np.where(blobs, 10.0, np.where(liver, 1.0, 0.0)).astype(np.float32), grid=grid)
    result = run_case(act, seg, params=DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.05),
                      roles={"liver": "liver", "tumour": "tumor"})
    planes = figures.dose_slice_planes(result, None, seg, views=("axial", "coronal"), fov_mm=121, pixel_mm=2.0)
    centroid = figures._centroid_lps(seg, "tumour")
    for p in planes:
        assert p.masks["tumour"].sum() > 10, p.view
        normal = np.asarray(figures._VIEWS[p.view][2])
        moved = p.centre_lps - centroid
        assert np.allclose(moved - (moved @ normal) * normal, 0) and abs(moved @ normal) >= 8.0  # along the normal only
    liver_planes = figures.dose_slice_planes(result, None, seg.subset(["liver"]), views=("axial",), fov_mm=121, pixel_mm=2.0)
    assert all(np.allclose(p.centre_lps, figures._centroid_lps(seg, "liver")) for p in liver_planes)  # unchanged
