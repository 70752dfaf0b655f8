"""Images and segmentations in and out: files, label tables, the synthetic demo patient.

Modules: :mod:`.images` (read_image, write_image), :mod:`.segmentation` (the Segmentation
type), :mod:`.segmentation_io` (read_segmentation), :mod:`.labels` (label-map name tables),
:mod:`.phantom` (the analytic and demo patients).
"""

from ..lazy import lazy_names

#: Public name -> module of this package that defines it, imported when the name is first used
#: (PEP 562): a command can start reading its files (:mod:`.prefetch`) before the readers load.
_WHERE = {"read_image": "images", "write_image": "images", "parse_label_names": "labels",
          "read_segmentation": "segmentation_io"}

__all__ = ["read_image", "write_image", "read_segmentation", "parse_label_names"]

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
