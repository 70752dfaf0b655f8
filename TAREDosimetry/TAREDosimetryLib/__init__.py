"""TAREDosimetry engine: Y-90 radioembolization dosimetry without Slicer.

The engine works on plain arrays (:class:`Volume`, (z, y, x), LPS millimetres) and never
imports slicer, qt or ctk; the 3D Slicer module and the ``tare-dosimetry`` command line are
thin layers on top of it.  Start with :func:`run_case` (one case in memory) or
:func:`TAREDosimetryLib.io.read_image` / :func:`TAREDosimetryLib.io.read_segmentation`.
"""

__version__ = "0.1.0"

from .errors import GeometryError, GPUUnavailableError, InputError, TAREDosimetryError
from .params import DosimetryParams
from .volume import Grid, Volume
from .segmentation import SegmentInfo, Segmentation
from .pipeline import CaseResult, SegmentResult, run_case

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
