"""The node-free half of the Slicer panel: which panel field is which engine parameter, which
volume to offer first, case and folder names, when a result is stale, how a status looks.

Plain Python (no ``slicer``, ``qt``, ``vtk``), tested with pytest (``Testing/test_panel.py``);
``TAREDosimetry.py`` only moves these values in and out of widgets and nodes.

The overall status's colour and the result summary lines are in :mod:`.mrmlconvert`.

The parameter mapping
---------------------
:data:`PANEL_FIELDS` lists every panel field bound to a :class:`DosimetryParams` field, with its
conversion.  Number fields that may be "not given" (lung shunt, residual, hours since administration,
lung mass without lung segments, prior lung dose, bilirubin, hepatic reserve) use :data:`NOT_GIVEN` (-1, shown as "not given" by the spin box), so
the panel never sends 0 unless the user chose it; the image resolution uses 0 and the
recovery-coefficient table "" for "not given"; choice fields use "" for "not given".  :func:`engine_param_kwargs` passes a field to the engine
only when this engine's ``DosimetryParams`` has it (checked with ``dataclasses.fields`` at run
time, so the panel works with engines before and after a field is added), and leaves a "not
given" value to the engine's default when that default is a number (older engines, which cannot
represent "unknown").
"""

import dataclasses
import hashlib
import importlib.util
import json
import os
import re

from .errors import CancelledError, InputError
from .params import DosimetryParams

__all__ = [
    "NOT_GIVEN", "PANEL_FIELDS", "engine_fields", "engine_param_kwargs", "engine_params", "panel_values", "params_from_file",
    "parse_levels", "format_levels", "parse_rc_table", "format_rc_table", "in_panel_words",
    "calibration_from_units", "dose_unit_of_volume",
    "pick_activity_volume", "case_name", "safe_folder_name", "case_export_folder",
    "inputs_signature", "toml_reader_available", "rule_file_filter", "RunProgress",
]

#: Value of a number field whose clinical input is not given (the spin box's minimum, shown as text).
NOT_GIVEN = -1.0


def _number_or_none(v):
    return None if v is None or float(v) < 0 else float(v)


def _percent_or_none(v):
    return None if v is None or float(v) < 0 else float(v) / 100.0


def _choice_or_none(v):
    return None if v in (None, "") else str(v)


def _zero_is_none(v):
    return None if v is None or float(v) <= 0 else float(v)


def parse_levels(text, name="levels"):
    """``"2, 5, 10"`` -> ``(2.0, 5.0, 10.0)``; InputError naming the field for anything else."""
    items = [t for t in re.split(r"[,;\s]+", str(text or "").strip()) if t]
    if not items:
        raise InputError(f"{name}: give at least one number (e.g. 2, 50, 98), got {text!r}")
    try:
        return tuple(float(t) for t in items)
    except ValueError:
        raise InputError(f"{name}: numbers separated by commas expected, got {text!r}") from None


def format_levels(values):
    return ", ".join(f"{float(v):g}" for v in values)


def parse_rc_table(text, name="recovery coefficients"):
    """``"10: 0.35, 17: 0.6, 37: 0.85"`` -> ``((10.0, 0.35), (17.0, 0.6), (37.0, 0.85))``; empty -> None.

    Pairs ``size: RC`` (size in the table's axis unit, mm or mL) separated by commas or
    semicolons; the engine validates the values (:func:`.params.rc_table`).  InputError naming
    the field for anything that is not such a list.
    """
    body = str(text or "").strip()
    if not body or body.lower() in ("none", "not given"):
        return None
    pairs = []
    for item in (t.strip() for t in re.split(r"[,;]", body)):
        if not item:
            continue
        parts = [t for t in re.split(r"[:=\s]+", item) if t]
        try:
            if len(parts) != 2:
                raise ValueError(item)
            pairs.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise InputError(f"{name}: pairs 'size: RC' separated by commas expected (e.g. 10: 0.35, 37: 0.85), "
                             f"got {item!r}") from None
    return tuple(pairs)


def format_rc_table(pairs):
    """The panel text of a recovery-coefficient table (``""`` when None)."""
    return ", ".join(f"{float(x):g}: {float(rc):g}" for x, rc in pairs) if pairs else ""


#: (panel field, DosimetryParams field, panel value -> engine value, engine value -> panel value)
PANEL_FIELDS = (
    ("calibration", "calibration", str, str),
    ("administeredActivityGBq", "administered_activity_gbq", _zero_is_none, lambda v: 0.0 if v is None else float(v)),
    ("residualPercent", "residual_fraction", _percent_or_none, lambda v: NOT_GIVEN if v is None else 100.0 * float(v)),
    ("lungShuntFractionPercent", "lung_shunt_fraction", _percent_or_none, lambda v: NOT_GIVEN if v is None else 100.0 * float(v)),
    ("referenceRegion", "reference_region", str, str),
    ("hoursAfterAdministration", "hours_since_administration", _number_or_none, lambda v: NOT_GIVEN if v is None else float(v)),
    ("imageDecayCorrected", "image_decay_corrected", bool, bool),
    ("doseMethod", "method", str, str),
    ("computeDevice", "device", str, str),
    ("kGyKgPerGBq", "k_gy_kg_per_gbq", float, float),
    ("halfLifeH", "half_life_h", float, float),
    ("tissueDensityGPerMl", "tissue_density_g_ml", float, float),
    ("lungDensityGPerMl", "lung_density_g_ml", float, float),
    ("densityFromCt", "density_from_ct", bool, bool),
    ("defaultLungMassG", "default_lung_mass_g", _number_or_none, lambda v: NOT_GIVEN if v is None else float(v)),
    ("lungDoseFrom", "lung_dose_from", str, str),
    ("dvkLungMode", "dvk_lung_mode", str, str),
    ("dvkRadiusMm", "dvk_radius_mm", float, float),
    ("sampling", "sampling", str, str),
    ("dvhBinWidthGy", "dvh_bin_width_gy", _zero_is_none, lambda v: 0.0 if v is None else float(v)),
    ("dvhCurveStepGy", "dvh_curve_step_gy", float, float),
    ("dLevelsPct", "d_levels_pct", lambda v: parse_levels(v, "D levels (%)"), format_levels),
    ("vLevelsGy", "v_levels_gy", lambda v: parse_levels(v, "V levels (Gy)"), format_levels),
    ("eudAlphaPerGy", "eud_alpha_per_gy", float, float),
    ("tumorAlphaBetaGy", "tumor_alpha_beta_gy", float, float),
    ("normalAlphaBetaGy", "normal_alpha_beta_gy", float, float),
    ("tRepairH", "t_repair_h", float, float),
    ("priorLungDoseGy", "prior_lung_dose_gy", _number_or_none, lambda v: NOT_GIVEN if v is None else float(v)),
    # Clinical inputs that select rules (issue 8 adds them to DosimetryParams), and the phase (issue 9).
    ("microsphere", "microsphere", _choice_or_none, lambda v: v or ""),
    ("indication", "indication", _choice_or_none, lambda v: v or ""),
    ("treatmentApproach", "treatment_approach", _choice_or_none, lambda v: v or ""),
    ("bilirubinMgDl", "bilirubin_mg_dl", _number_or_none, lambda v: NOT_GIVEN if v is None else float(v)),
    ("hepaticReservePercent", "hepatic_reserve_pct", _number_or_none, lambda v: NOT_GIVEN if v is None else float(v)),
    ("allowUnusualActivity", "allow_unusual_activity", bool, bool),
    ("allowNegative", "allow_negative", bool, bool),
    # Partial volume: resolution (0 = not given) and an optional recovery-coefficient table.
    ("resolutionFwhmMm", "resolution_fwhm_mm", _zero_is_none, lambda v: 0.0 if v is None else float(v)),
    ("recoveryCoefficients", "recovery_coefficients", lambda v: parse_rc_table(v), lambda v: format_rc_table(v)),
    ("recoveryCoefficientAxis", "recovery_coefficient_axis", str, str),
    ("phase", "phase", _choice_or_none, lambda v: v or ""),
)


def engine_fields(params_class=DosimetryParams):
    """{field name: dataclasses.Field} of this engine's parameter class."""
    return {f.name: f for f in dataclasses.fields(params_class)}


def engine_param_kwargs(values, params_class=DosimetryParams):
    """DosimetryParams keyword arguments from panel values.

    Parameters
    ----------
    values : dict {panel field: plain value} (enums given by their ``value``); fields absent from
        ``values`` are left to the engine's defaults.
    params_class : the engine's parameter dataclass (a stand-in in tests).

    Returns
    -------
    (kwargs, skipped): ``skipped`` names the panel fields this engine has no parameter for.
    """
    fields = engine_fields(params_class)
    kwargs, skipped = {}, []
    for panel_name, engine_name, to_engine, _ in PANEL_FIELDS:
        if panel_name not in values:
            continue
        field = fields.get(engine_name)
        if field is None:
            skipped.append(panel_name)
            continue
        value = to_engine(values[panel_name])
        if value is None and field.default is not None and field.default is not dataclasses.MISSING:
            continue  # "not given", and this engine cannot say "unknown": its default applies
        kwargs[engine_name] = value
    return kwargs, skipped


def engine_params(values, params_class=DosimetryParams):
    """The engine's DosimetryParams from panel values (see :func:`engine_param_kwargs`)."""
    return params_class(**engine_param_kwargs(values, params_class)[0])


def panel_values(params):
    """{panel field: value} of a DosimetryParams (the inverse of :func:`engine_param_kwargs`), for
    the fields this engine has; e.g. to show the parameters of a metrics.json in the panel."""
    out = {}
    for panel_name, engine_name, _, to_panel in PANEL_FIELDS:
        if hasattr(params, engine_name):
            out[panel_name] = to_panel(getattr(params, engine_name))
    return out


def params_from_file(path):
    """(DosimetryParams, ignored field names) of a parameters JSON file or a result's metrics.json
    (its ``parameters``); fields this engine does not know (a newer version's) are ignored."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise InputError(f"parameters file {path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise InputError(f"parameters file {path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("parameters"), dict):
        data = data["parameters"]
    if not isinstance(data, dict):
        raise InputError(f"parameters file {path}: expected a JSON object of DosimetryParams fields")
    fields = engine_fields()
    ignored = sorted(k for k in data if k not in fields)
    return DosimetryParams.from_dict({k: v for k, v in data.items() if k in fields}), ignored


#: Command-line options named in the engine's messages, and the panel field that gives the same.
_OPTION_LABELS = (
    (", e.g. --pet", ""),
    ("--administered-activity-gbq", "'Administered activity'"),
    ("--lung-shunt-fraction", "'Lung shunt fraction'"),
    ("--lung-dose-from image", "Advanced > 'Lung dose from': Image"),
    ("--hours-since-administration H", "'Hours since administration'"),
    ("--hours-since-administration", "'Hours since administration'"),
    ("--decay-corrected", "'Image already decay-corrected to administration'"),
    ("--allow-unusual-activity", "'Allow an activity outside 0.05-20 GBq'"),
    ("--microsphere", "Clinical inputs > 'Microspheres'"),
    ("--indication", "Clinical inputs > 'Indication'"),
    ("--treatment-approach", "Clinical inputs > 'Treatment approach'"),
    ("--bilirubin-mg-dl", "Clinical inputs > 'Bilirubin'"),
    ("--hepatic-reserve-pct", "Clinical inputs > 'Hepatic reserve'"),
    ("(use --relative to scale counts to the administered activity)",
     "(choose 'Relative (scale counts to administered activity)' calibration)"),
    ("add --quantitative if they are, or --relative for counts",
     "choose 'Absolute (image in Bq/mL)' if they are, or 'Relative' for counts"),
    ("as --quantitative says", "as 'Absolute (image in Bq/mL)' says"),
    ("(--quantitative would use the Bq/mL values)", "('Absolute (image in Bq/mL)' would use the Bq/mL values)"),
    ("Refused; add --allow-other-radionuclide to compute it as Y-90 anyway",
     "Refused; tick 'Allow a radionuclide other than Y-90' to compute it as Y-90 anyway"),
    ("because --allow-other-radionuclide was given", "because 'Allow a radionuclide other than Y-90' is ticked"),
    ("give --dose-unit Gy, cGy or mGy", "choose its unit under 'Dose unit'"),
    ("--dose-unit says", "'Dose unit' says"),
    ("--relative", "'Relative' calibration"),
    ("--quantitative", "'Absolute (image in Bq/mL)'"),
)


def in_panel_words(message):
    """An engine message with its command-line options replaced by the panel fields that set them."""
    text = str(message)
    for option, label in _OPTION_LABELS:
        text = text.replace(option, label)
    return text


# -- what an image's header says ------------------------------------------------------------------

def calibration_from_units(units):
    """(calibration, message) an activity image's DICOM Units (0054,1001) call for.

    units : the header's Units code ('BQML', 'CNTS', ...; '' when absent).
    Returns ``('absolute', ...)`` for Bq/mL, ``('relative', ...)`` for counts or any other unit,
    ``(None, ...)`` when the header says nothing (the user chooses).
    """
    from .imaging.dicomtiming import UNIT_MEANINGS

    code = str(units or "").strip().upper()
    if code == "BQML":
        return "absolute", "the header gives Bq/mL (Units BQML): absolute calibration"
    if code:
        meaning = UNIT_MEANINGS.get(code, code)
        return "relative", (f"the header gives {meaning} (Units {code}), not Bq/mL: relative calibration "
                            "(scaled to the administered activity)")
    return None, "the header has no Units (0054,1001): choose the calibration (Bq/mL or counts)"


#: Dose unit codes a volume's attributes may carry (voxel value units, SlicerRT's study DoseUnitName), as Gy, cGy, mGy.
_DOSE_UNIT_CODES = {"gy": "Gy", "cgy": "cGy", "mgy": "mGy"}


def dose_unit_of_volume(name, voxel_units="", study_unit="", chosen=""):
    """(unit, where it came from) of a dose volume in the scene, checked.

    name : the volume's name (for messages).
    voxel_units : the code of the node's voxel value units (vtkCodedEntry, e.g. 'Gy'), '' when none.
    study_unit : SlicerRT's ``DicomRtImport.DoseUnitName`` of the volume's study ('GY', 'RELATIVE'), '' when none.
    chosen : the panel's 'Dose unit' ('Gy', 'cGy', 'mGy'; '' = from the volume).

    Raises
    ------
    InputError : a relative dose, a unit that is not a dose unit, attributes that disagree with each
        other or with the panel's choice, or no unit at all.
    """
    said = []
    for source, code in (("its voxel value units", voxel_units), ("its study's DicomRtImport.DoseUnitName", study_unit)):
        code = str(code or "").strip()
        if not code:
            continue
        if code.upper() == "RELATIVE":
            raise InputError(f"dose volume '{name}': {source} say RELATIVE: a relative dose cannot be judged in Gy")
        unit = _DOSE_UNIT_CODES.get(code.lower())
        if unit is None:
            raise InputError(f"dose volume '{name}': {source} say {code!r}, which is not a dose unit (Gy, cGy, mGy): "
                             "is it an activity image? Untick 'the selected volume is a dose map'")
        said.append((unit, source))
    if chosen:
        said.append((_DOSE_UNIT_CODES[str(chosen).lower()], "the panel's 'Dose unit'"))
    if not said:
        raise InputError(f"dose volume '{name}' does not say its unit: choose Gy, cGy or mGy under 'Dose unit'")
    units = {u for u, _ in said}
    if len(units) > 1:
        raise InputError(f"dose volume '{name}': " + ", ".join(f"{src} say {u}" for u, src in said) + "; they disagree")
    return said[0]


# -- which volume is the SPECT/PET ---------------------------------------------------------------

_ACTIVITY_MODALITIES = ("NM", "PT")
_ACTIVITY_NAME = re.compile(r"(spect|\bpet\b|\bnm\b|\bpt\b|bremsstrahlung|brems|y-?90|\bmaa\b|tc-?99m)", re.IGNORECASE)


def pick_activity_volume(candidates):
    """The volume to offer as SPECT/PET first, or None.

    candidates : list of dicts with keys ``id``, ``name``, ``modality`` (DICOM Modality or ""),
        and ``excluded`` (True for label maps, dose volumes, the module's own outputs).
    A volume whose DICOM modality is NM or PT comes first, then one whose name says SPECT, PET,
    NM, Bremsstrahlung, Y-90 or MAA; otherwise None (the selector stays empty rather than
    offering the CT).
    """
    usable = [c for c in candidates if not c.get("excluded")]
    for c in usable:
        if str(c.get("modality") or "").upper() in _ACTIVITY_MODALITIES:
            return c["id"]
    for c in usable:
        if not c.get("modality") and _ACTIVITY_NAME.search(str(c.get("name") or "")):
            return c["id"]
    return None


# -- cases and folders -------------------------------------------------------------------------

def case_name(given, activity_name=""):
    """The case's name: the one given in the panel, else the SPECT/PET volume's name."""
    name = str(given or "").strip() or str(activity_name or "").strip()
    return name or "case"


def safe_folder_name(name):
    """A folder name from a case name: letters, digits, ``-_.`` and spaces kept, the rest ``_``."""
    text = re.sub(r"[^\w\-. ]", "_", str(name), flags=re.UNICODE).strip(" .")
    return text or "case"


def case_export_folder(base_folder, name):
    """``<base>/<case>``: where Export writes; never the chosen folder itself."""
    base = str(base_folder or "").strip()
    if not base or base == ".":
        raise InputError("choose an output folder in Export first")
    return os.path.join(base, safe_folder_name(name))


def inputs_signature(inputs):
    """A short hash of everything a result depends on (node IDs, parameters, roles, rules...).

    inputs : JSON-serialisable dict.  Two signatures differ when any value differs.
    """
    text = json.dumps(inputs, sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# -- rule files --------------------------------------------------------------------------------

def toml_reader_available():
    """True where TOML rule files can be read (Python 3.11+ tomllib, or the tomli package)."""
    return importlib.util.find_spec("tomllib") is not None or importlib.util.find_spec("tomli") is not None


def rule_file_filter(toml_available):
    """File-dialog filter of rule files: JSON always, TOML only when it can be read."""
    return "Rule files (*.json *.toml)" if toml_available else "Rule files (*.json)"


# -- progress and Cancel of one run ------------------------------------------------------------

class RunProgress:
    """Progress of one calculation, with Cancel.

    Call it as ``progress(fraction, message)``; it forwards to ``report`` (the panel's progress
    bar, which also lets Qt process the Cancel click) and raises :class:`CancelledError` once
    :meth:`cancel` was called, so the calculation stops at its next progress step.
    ``part(start, end)`` gives a progress function for a sub-step that fills ``[start, end]``.
    """

    def __init__(self, report=None):
        self.report = report
        self.cancelled = False
        self.fraction = 0.0

    def cancel(self):
        self.cancelled = True

    def _check(self):
        if self.cancelled:
            raise CancelledError("stopped by the user (Cancel)")

    def __call__(self, fraction, message=""):
        self._check()
        self.fraction = max(self.fraction, min(1.0, max(0.0, float(fraction))))
        if self.report is not None:
            self.report(self.fraction, str(message))
        self._check()  # Cancel may have been pressed while the panel was updating

    def part(self, start, end):
        return lambda fraction, message="": self(start + (end - start) * float(fraction), message)
