"""Optional Python packages the module can use, installed only with the user's consent.

matplotlib (figures of the HTML report), tomli (TOML rule files on Python < 3.11, i.e. Slicer 5.8)
and CuPy (dose-voxel-kernel convolution on an NVIDIA GPU).  Installation goes through
``slicer.packaging.pip_ensure`` where Slicer has it (5.12 and later: it asks the user itself), else
through ``slicer.util.pip_install`` after a confirmation dialog (5.8 to 5.10).  In testing mode, or
when ``askUser`` is False, nothing is installed.
"""

import importlib
import importlib.util
import logging

import slicer
from slicer.i18n import tr as _


def _hasPackagingModule() -> bool:
    """True where Slicer has ``slicer.packaging`` (pip_ensure; Slicer 5.12 and later)."""
    return importlib.util.find_spec("slicer.packaging") is not None


class Dependencies:
    """Mixed into the logic: ``ensure*`` return True when the package can be imported (after an
    installation the user agreed to)."""

    @staticmethod
    def ensurePackage(importName: str, requirement: str, why: str, askUser: bool = True) -> bool:
        """Import ``importName``, or offer to ``pip install requirement`` (``why``: the question's reason)."""
        if importlib.util.find_spec(importName) is not None:
            return True
        if not askUser or slicer.app.testingEnabled():
            logging.warning(f"TAREDosimetry: {importName} is not installed ({why})")
            return False
        if _hasPackagingModule():  # Slicer >= 5.12: pip_ensure asks the user and raises when declined
            # importlib, not "import slicer.packaging": that statement would make "slicer" a local name
            # of this whole function (UnboundLocalError at slicer.app above).
            packaging = importlib.import_module("slicer.packaging")
            try:
                packaging.pip_ensure([requirement], requester="TAREDosimetry")
            except RuntimeError:
                return False
        elif slicer.util.confirmOkCancelDisplay(
                _("{why} It needs the Python package {package}. Install it now?").format(why=why, package=requirement)):
            slicer.util.pip_install(requirement)
        else:
            return False
        importlib.invalidate_caches()
        return importlib.util.find_spec(importName) is not None

    def ensureReportDependencies(self, askUser: bool = True) -> bool:
        """matplotlib, for the figures of the HTML report (the tables and dose are written without it)."""
        return self.ensurePackage("matplotlib", "matplotlib>=3.5", _("The HTML report draws its figures with matplotlib."), askUser)

    def ensureTomlReader(self, askUser: bool = True) -> bool:
        """A TOML reader for rule files: Python 3.11+ has tomllib; Slicer 5.8 (Python 3.9) needs tomli."""
        if importlib.util.find_spec("tomllib") is not None:
            return True
        return self.ensurePackage("tomli", "tomli>=1.1", _("TOML rule files are read with tomli."), askUser)

    @staticmethod
    def gpuSupport():
        """(usable, text, requirement): whether the GPU runs the DVK convolution; what to show; the CuPy
        wheel to offer when an NVIDIA driver is present but CuPy is not usable (else None)."""
        from TAREDosimetryLib.dose import backend

        usable, description = backend.gpu_status()
        if usable:
            return True, _("GPU: {gpu}").format(gpu=description), None
        requirement = backend.cupy_requirement(backend.nvidia_driver_cuda_version())
        if requirement is None:
            return False, _("No usable NVIDIA GPU: the kernel convolution runs on the CPU."), None
        return False, _("NVIDIA GPU found; CuPy is not installed, so the convolution runs on the CPU."), requirement

    def installGpuSupport(self) -> bool:
        """Offer to install the CuPy wheel for this NVIDIA driver; True when the GPU is then usable."""
        from TAREDosimetryLib.dose import backend

        usable, _text, requirement = self.gpuSupport()
        if usable or requirement is None:
            return usable
        if not self.ensurePackage("cupy", requirement, _("Kernel convolution on the NVIDIA GPU uses CuPy (a download of several hundred MB)."), True):
            return False
        backend.reset_gpu_probe()
        return backend.gpu_status()[0]
