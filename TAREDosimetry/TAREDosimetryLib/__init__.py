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
from .params import DosimetryParams
from .volume import Grid, Volume
from .imaging.segmentation import SegmentInfo, Segmentation
from .evaluation.results import CaseResult, SegmentResult
from .pipeline import run_case

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
