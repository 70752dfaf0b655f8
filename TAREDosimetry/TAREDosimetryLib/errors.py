"""Exceptions raised by the TAREDosimetry engine.

Every message names the offending file or parameter and what was expected, so that a
command-line user or the Slicer panel can show it as it is.
"""

__all__ = ["TAREDosimetryError", "InputError", "GeometryError", "GPUUnavailableError", "CancelledError"]


class TAREDosimetryError(Exception):
    """Base class of every error the engine raises on purpose."""


class InputError(TAREDosimetryError, ValueError):
    """A file, image, segment or parameter is missing, unreadable or out of range."""


class GeometryError(InputError):
    """Images or segments do not share physical space (no overlap, wrong dimension, ...)."""


class GPUUnavailableError(TAREDosimetryError, RuntimeError):
    """A GPU was asked for (device='gpu') but none is usable."""


class CancelledError(TAREDosimetryError):
    """The user stopped a calculation (the Slicer panel's Cancel, a VTK abort request)."""
