"""From activity to absorbed dose: activity maps (GBq per voxel), density maps (g/mL), and
dose maps (Gy) by local deposition (:mod:`.ldm`) or dose-voxel-kernel convolution
(:mod:`.kernels`, :mod:`.dvk`) on the CPU or an NVIDIA GPU (:mod:`.backend`).

:mod:`.vtkfilter` is the only module of the engine that imports VTK; import it explicitly.
Nothing is imported here, so that ``import TAREDosimetryLib.dose.ldm`` stays light.
"""
