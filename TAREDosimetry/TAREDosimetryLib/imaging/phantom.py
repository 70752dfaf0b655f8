"""A deterministic synthetic patient for the demo, the self-test and the tests.

The phantom is defined in physical space (LPS, mm) by simple shapes: a body, a liver split
into right and left lobes, three tumours of different uptake, two lungs.  Two flavours:

* ``analytic=True``: the activity image is the exact uptake pattern on the segmentation grid
  (no blur, no noise), so every mean dose is known in closed form,
  D_s = K A_ref (c_s V_s / sum_liver c V) / (rho V_s)  (returned as ``expected_mean_gy``).
* ``analytic=False`` (the demo): a SPECT-like image on a coarser grid with a reversed z axis,
  blurred to Bremsstrahlung-SPECT resolution (15 mm FWHM) and with Poisson noise, plus a CT.
"""

from dataclasses import dataclass, field

import numpy as np

from ..resample import resample_volume
from ..params import DosimetryParams
from .segmentation import Segmentation
from ..volume import Grid, Volume

__all__ = ["PhantomCase", "make_phantom", "demo_case_inputs", "DEMO_UPTAKE"]

#: Relative activity concentration of each compartment (normal liver = 1).
DEMO_UPTAKE = {"tumour 1": 6.0, "tumour 2": 3.5, "tumour 3": 1.2}
_TUMOURS = (  # name, centre (x, y, z) mm, radius mm
    ("tumour 1", (-40.0, 5.0, 10.0), 18.0),
    ("tumour 2", (-5.0, -20.0, -15.0), 14.0),
    ("tumour 3", (45.0, 0.0, 5.0), 10.0),
)
_COLORS = {
    "liver": (0.87, 0.51, 0.40), "right lobe": (0.80, 0.62, 0.45), "left lobe": (0.93, 0.72, 0.55),
    "tumour 1": (0.95, 0.84, 0.30), "tumour 2": (0.70, 0.40, 0.80), "tumour 3": (0.30, 0.70, 0.90),
    "lung right": (0.55, 0.75, 0.90), "lung left": (0.45, 0.65, 0.85),
}

#: Resolution (FWHM, mm) of the demo's synthetic Bremsstrahlung SPECT.
SPECT_FWHM_MM = 15.0


@dataclass
class PhantomCase:
    """A ready-to-run case: ``run_case(p.activity, p.segmentation, params=p.params, ct=p.ct)``."""

    activity: Volume
    ct: Volume
    segmentation: Segmentation
    params: DosimetryParams
    roles: dict = field(default_factory=dict)
    expected_mean_gy: dict = field(default_factory=dict)
    description: str = ""


def _ellipsoid(x, y, z, centre, axes):
    return ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + ((z - centre[2]) / axes[2]) ** 2 <= 1.0


def _phantom_grid(s, extent):
    """(Grid, z, y, x sparse coordinate arrays in mm) of the segmentation/CT grid, centred on 0."""
    shape_xyz = np.round(extent / s).astype(int)
    origin = tuple(-(shape_xyz - 1) * s / 2.0)
    grid = Grid((shape_xyz[2], shape_xyz[1], shape_xyz[0]), (s, s, s), origin)
    z, y, x = np.meshgrid(
        *(origin[a] + s * np.arange(shape_xyz[a]) for a in (2, 1, 0)), indexing="ij", sparse=True
    )
    return grid, z, y, x


def _phantom_anatomy(x, y, z):
    """(body, {segment name: mask}, {tumour name: mask}) of the synthetic patient."""
    body = _ellipsoid(x, y, z, (0, 0, 0), (160, 110, 400))
    # Liver: right lobe (patient right = -x in LPS) larger than the left one.
    liver = (_ellipsoid(x, y, z, (-30, 0, 0), (80, 65, 70)) | _ellipsoid(x, y, z, (35, -10, 10), (55, 45, 45))) & body
    right = liver & (x < 15.0)
    left = liver & ~right
    lung_r = _ellipsoid(x, y, z, (-70, 10, 115), (60, 60, 75)) & body & ~liver
    lung_l = _ellipsoid(x, y, z, (70, 10, 115), (55, 60, 75)) & body & ~liver
    masks = {"liver": liver, "right lobe": right, "left lobe": left}
    tumours = {}
    for name, c, r in _TUMOURS:
        tumours[name] = _ellipsoid(x, y, z, c, (r, r, r)) & liver
        masks[name] = tumours[name]
    masks["lung right"] = lung_r
    masks["lung left"] = lung_l
    return body, masks, tumours


def _uptake(grid, body, masks, tumours, lsf):
    """(relative concentration on the grid, liver concentration x volume, lung volume mL)."""
    liver = masks["liver"]
    conc = np.zeros(grid.shape, np.float64)
    conc[body] = 0.02
    conc[liver] = 1.0
    for name, m in tumours.items():
        conc[m] = DEMO_UPTAKE[name]
    liver_cv = float(conc[liver].sum() * grid.voxel_volume_ml)
    # Lung concentration chosen so that the image's lung counts match the LSF.
    lung = masks["lung right"] | masks["lung left"]
    lung_vol = float(lung.sum() * grid.voxel_volume_ml)
    conc[lung] = (lsf / (1 - lsf)) * liver_cv / lung_vol if lsf > 0 else 0.0
    return conc, liver_cv, lung_vol


def _phantom_ct(grid, body, masks, tumours):
    ct = np.full(grid.shape, -1000.0, np.float32)
    ct[body] = 40.0
    ct[masks["liver"]] = 14.0  # 14 HU -> 1.03 g/mL in the Schneider table
    for m in tumours.values():
        ct[m] = 14.0
    ct[masks["lung right"] | masks["lung left"]] = -700.0  # -> 0.30 g/mL (Kao)
    return Volume(ct, grid=grid, name="synthetic CT", unit="HU")


def _expected_means_gy(grid, masks, tumours, conc, liver_cv, lung_vol, params):
    """Closed-form mean doses (Gy) of every segment, the derived normal liver and the LSF lungs."""
    adm, res, lsf = params.administered_activity_gbq, params.residual_fraction_used, params.lung_shunt_fraction
    a_ref = adm * (1 - res) * (1 - lsf)
    rho = params.tissue_density_g_ml
    expected = {}
    normal = masks["liver"].copy()
    for m in tumours.values():
        normal &= ~m
    for name, m in list(masks.items()) + [("normal liver (derived)", normal)]:
        if name.startswith("lung"):
            continue
        cv = float(conc[m].sum() * grid.voxel_volume_ml)
        v = float(m.sum() * grid.voxel_volume_ml)
        expected[name] = params.k_gy_kg_per_gbq * a_ref * (cv / liver_cv) / (rho * v * 1e-3)
    lung_mass_g = lung_vol * params.lung_density_g_ml
    expected["lungs (LSF model)"] = params.k_gy_kg_per_gbq * adm * (1 - res) * lsf / (lung_mass_g * 1e-3)
    return expected


def _bremsstrahlung_spect(conc, grid, extent, s, seed):
    """The uptake blurred (15 mm FWHM), on a 4.8 mm grid with a reversed z axis, with Poisson noise."""
    from scipy import ndimage

    fwhm_mm = SPECT_FWHM_MM
    blurred = ndimage.gaussian_filter(conc, sigma=fwhm_mm / 2.3548 / s, mode="constant")
    # SPECT-like grid: 4.8 mm voxels, z axis reversed (slices stored head to feet).
    ss = 4.8
    n_xyz = np.ceil(extent / ss).astype(int)
    top_z = (n_xyz[2] - 1) * ss / 2.0
    spect_grid = Grid(
        (n_xyz[2], n_xyz[1], n_xyz[0]), (ss, ss, ss),
        (-(n_xyz[0] - 1) * ss / 2.0, -(n_xyz[1] - 1) * ss / 2.0, top_z),
        (1.0, 0, 0, 0, 1.0, 0, 0, 0, -1.0),
    )
    spect = resample_volume(Volume(blurred.astype(np.float32), grid=grid), spect_grid, "linear").array.astype(np.float64)
    spect *= 3.0e6 / spect.sum()  # about 3 million counts, typical of a Bremsstrahlung SPECT
    rng = np.random.default_rng(seed)
    counts = rng.poisson(spect).astype(np.float32)
    return Volume(counts, grid=spect_grid, name="synthetic Bremsstrahlung SPECT", unit="counts")


def make_phantom(analytic=False, seed=0, spacing_mm=2.5, administered_activity_gbq=1.8,
                 residual_fraction=0.02, lung_shunt_fraction=0.08):
    """Build the synthetic patient (see module docstring).

    Parameters
    ----------
    analytic : bool
    seed : int, seed of the Poisson noise (demo only).
    spacing_mm : float, isotropic voxel size of the segmentation/CT grid.

    Returns
    -------
    PhantomCase
    """
    s = float(spacing_mm)
    extent = np.array([340.0, 240.0, 260.0])  # x, y, z mm
    grid, z, y, x = _phantom_grid(s, extent)
    body, masks, tumours = _phantom_anatomy(x, y, z)
    seg = Segmentation.from_masks(masks, grid, colors=_COLORS, source="synthetic phantom")
    lsf = float(lung_shunt_fraction)
    conc, liver_cv, lung_vol = _uptake(grid, body, masks, tumours, lsf)
    ct_vol = _phantom_ct(grid, body, masks, tumours)
    params = DosimetryParams(
        administered_activity_gbq=administered_activity_gbq,
        residual_fraction=residual_fraction,
        lung_shunt_fraction=lsf,
        indication="breast",  # the synthetic patient has breast-cancer metastases: the default preset, chosen
    )
    expected = _expected_means_gy(grid, masks, tumours, conc, liver_cv, lung_vol, params)
    if analytic:
        act = Volume(conc.astype(np.float32) * np.float32(1000.0), grid=grid, name="analytic phantom", unit="counts")
        return PhantomCase(act, ct_vol, seg, params, {}, expected, "analytic phantom: exact uptake on the segmentation grid")
    act = _bremsstrahlung_spect(conc, grid, extent, s, seed)
    # The synthetic SPECT's resolution is known (15 mm FWHM): small tumours get a partial-volume warning.
    return PhantomCase(
        act, ct_vol, seg, params.replace(resolution_fwhm_mm=SPECT_FWHM_MM), {}, expected,
        "synthetic Y-90 Bremsstrahlung SPECT/CT: liver (right and left lobes), three tumours "
        "(uptake 6, 3.5 and 1.2 x normal liver), lungs with an 8 % shunt; 15 mm FWHM blur, Poisson noise",
    )


def demo_case_inputs(case, seed):
    """The ``inputs`` record of the demo patient made with ``seed`` (rebuilt from it by a rerun)."""
    return {"activity_image": "synthetic Bremsstrahlung SPECT (demo)", "description": case.description, "demo_seed": int(seed)}
