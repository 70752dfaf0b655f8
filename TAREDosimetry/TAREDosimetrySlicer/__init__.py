"""The Slicer side of the TAREDosimetry module: MRML glue that outgrew TAREDosimetry.py.

Unlike the engine (TAREDosimetryLib), this package imports slicer, qt and vtk.  The logic of
TAREDosimetry.py mixes in :mod:`.nodes` (nodes to engine objects), :mod:`.outputnodes` (results
to nodes), :mod:`.segmentimport`, :mod:`.export` and :mod:`.vtkdose`; :mod:`.selftest` is the
module's self-test.  :mod:`.dicomtiming` (PET/SPECT units and timing from the loaded DICOM series)
and :mod:`.rtdoseexport` (the dose as RT Dose into the patient's study) are used by the panel.
"""
