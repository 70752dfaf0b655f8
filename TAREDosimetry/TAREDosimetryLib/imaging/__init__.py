"""Images and segmentations in and out: files, label tables, the synthetic demo patient.

Modules: :mod:`.images` (read_image, write_image), :mod:`.segmentation` (the Segmentation
type), :mod:`.segmentation_io` (read_segmentation), :mod:`.labels` (label-map name tables),
:mod:`.phantom` (the analytic and demo patients).
"""

import importlib

#: Public name -> module of this package that defines it, imported when the name is first used
#: (PEP 562): a command can start reading its files (:mod:`.prefetch`) before the readers load.
_WHERE = {"read_image": "images", "write_image": "images", "parse_label_names": "labels",
          "read_segmentation": "segmentation_io"}

__all__ = ["read_image", "write_image", "read_segmentation", "parse_label_names"]


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
