"""The Slicer side of the TAREDosimetry module: MRML glue and widget sections that outgrew TAREDosimetry.py.

Unlike the engine (TAREDosimetryLib), this package imports slicer, qt and vtk.  The logic of
TAREDosimetry.py mixes in :mod:`.nodes` (volumes to engine objects), :mod:`.segmentread` (segments on
their own geometry), :mod:`.caseloading` (files and DICOM folders), :mod:`.vtkdose` (the dose through the
engine's VTK filter), :mod:`.outputnodes` (results to nodes), :mod:`.cases` (outputs per case, the result
kept in the scene), :mod:`.export` and :mod:`.dependencies`; the widget uses :mod:`.tablesections`;
:mod:`.sampledata` puts the demo patient in Sample Data; :mod:`.selftest` is the module's self-test.
:mod:`.dicomtiming` (PET/SPECT units and timing from the loaded DICOM series) and :mod:`.rtdoseexport`
(the dose as RT Dose into the patient's study) are used by the panel.
"""
