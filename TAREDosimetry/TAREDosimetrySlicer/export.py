"""Writing a result folder from Slicer, and the optional packages it needs (installed with the user's consent)."""

import importlib
import importlib.util
import logging

import slicer
from slicer.i18n import tr as _

from TAREDosimetryLib.errors import InputError


def _hasPackagingModule() -> bool:
    """True where Slicer has ``slicer.packaging`` (pip_ensure; Slicer 5.12 and later)."""
    return importlib.util.find_spec("slicer.packaging") is not None


class ResultExport:
    """The engine's result files (metrics, DVH, report, dose) written from the Slicer logic."""

    @staticmethod
    def ensureReportDependencies(askUser: bool = True) -> bool:
        """True when matplotlib (report figures) is importable; offers to install it when ``askUser``."""
        try:
            import matplotlib  # noqa: F401

            return True
        except ImportError:
            pass
        if not askUser or slicer.app.testingEnabled():
            logging.warning("TAREDosimetry: matplotlib is not installed; the report is skipped (metrics and DVH tables are written)")
            return False
        if _hasPackagingModule():  # Slicer >= 5.12
            # importlib, not "import slicer.packaging": that statement would make "slicer" a local name
            # of this whole function (UnboundLocalError at slicer.app above).
            packaging = importlib.import_module("slicer.packaging")
            try:
                packaging.pip_ensure(["matplotlib>=3.5"], requester="TAREDosimetry")
            except RuntimeError:  # the user declined the installation: export without the report
                return False
        elif slicer.util.confirmOkCancelDisplay(_("The HTML report needs the Python package matplotlib. Install it now?")):
            slicer.util.pip_install("matplotlib>=3.5")
        else:
            return False
        try:
            import matplotlib  # noqa: F401

            return True
        except ImportError:
            return False

    @staticmethod
    def exportResults(result, outDir: str, report: bool = True, overwrite: bool = False, inputs=None) -> str:
        """Write the engine's outputs (metrics CSV/JSON, DVH, report, dose file) to ``outDir``.

        inputs : {'activity', 'segmentation', 'ct'} engine objects of the run (report slices), optional.
        """
        if result is None:
            raise InputError("no result to export: run the calculation first")
        if not outDir or str(outDir) in (".", ""):
            raise InputError("choose an output folder first")
        try:
            from TAREDosimetryLib.reporting.outputs import write_outputs
        except ImportError as exc:
            raise InputError(f"this engine version cannot write outputs ({exc})") from None
        inputs = inputs or {}
        write_outputs(result, str(outDir), overwrite=overwrite, report=report,
                      background=inputs.get("ct") or inputs.get("activity"), segmentation=inputs.get("segmentation"))
        return str(outDir)
