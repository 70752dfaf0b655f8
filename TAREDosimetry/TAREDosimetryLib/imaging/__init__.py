"""Images and segmentations in and out: files, label tables, the synthetic demo patient.

Modules: :mod:`.images` (read_image, write_image), :mod:`.segmentation` (the Segmentation
type), :mod:`.segmentation_io` (read_segmentation), :mod:`.labels` (label-map name tables),
:mod:`.phantom` (the analytic and demo patients).
"""

from .images import read_image, write_image
from .labels import parse_label_names
from .segmentation_io import read_segmentation

__all__ = ["read_image", "write_image", "read_segmentation", "parse_label_names"]
