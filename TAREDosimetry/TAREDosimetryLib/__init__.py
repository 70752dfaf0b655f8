"""TAREDosimetry engine: Y-90 radioembolization dosimetry without Slicer.

The engine works on plain arrays (:class:`Volume`, (z, y, x), LPS millimetres) and never
imports slicer, qt or ctk; the 3D Slicer module and the ``tare-dosimetry`` command line are
thin layers on top of it.  Its packages follow the data flow of a case::

    imaging/     images and segmentations in (read_image, read_segmentation)
    dose/        activity (GBq/voxel), density (g/mL), dose maps (LDM, DVK; CPU or GPU)
    evaluation/  the metrics grid, DVH, metrics, roles, rules and their presets
    reporting/   tables, figures, the HTML report, result folders
    pipeline     one case as named steps (run_case); batch: many cases; cli: the commands

Start with :func:`run_case` (one case in memory) and
:func:`TAREDosimetryLib.imaging.read_image` / :func:`TAREDosimetryLib.imaging.read_segmentation`.
"""

from .version import __version__
from .errors import GeometryError, GPUUnavailableError, InputError, TAREDosimetryError
from .lazy import lazy_names

#: Public name -> module that defines it, imported when the name is first used (PEP 562): the
#: command line starts reading a case's files before the stages are loaded (imaging/prefetch.py).
_WHERE = {
    "DosimetryParams": "params", "Grid": "volume", "Volume": "volume", "SegmentInfo": "imaging.segmentation",
    "Segmentation": "imaging.segmentation", "CaseResult": "evaluation.results", "SegmentResult": "evaluation.results",
    "run_case": "pipeline",
}

__all__ = [
    "__version__",
    "TAREDosimetryError",
    "InputError",
    "GeometryError",
    "GPUUnavailableError",
    "DosimetryParams",
    "Grid",
    "Volume",
    "SegmentInfo",
    "Segmentation",
    "CaseResult",
    "SegmentResult",
    "run_case",
]

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
