"""The demo patient in Slicer's Sample Data module, generated on this computer (no download).

``registerSampleData`` (called at start-up, as Slicer's module template does) adds a "TARE demo
patient" button to Sample Data.  Its loader builds the engine's synthetic patient
(``TAREDosimetryLib.imaging.phantom.make_phantom``: Bremsstrahlung-SPECT-like image, CT, liver,
lobes, three tumours, lungs), creates the nodes, fills the TARE Dosimetry panel (administered
activity, residual, lung shunt) and opens the module: from an empty Slicer, *Sample Data* ->
*TARE demo patient* -> *Apply* gives a PASS/FAIL.
"""

import os

import slicer
from slicer.i18n import tr as _

CATEGORY = "TARE Dosimetry"
SAMPLE_NAME = "TARE demo patient"
CASE_NAME = "TARE demo patient"


def registerSampleData():
    """Add the demo patient to the Sample Data module (a local loader: nothing is downloaded)."""
    import SampleData

    icon = os.path.join(os.path.dirname(os.path.dirname(__file__)), "Resources", "Icons", "TAREDemoPatient.png")
    if hasattr(SampleData.SampleDataLogic, "registerCustomSampleDataCategory"):  # Slicer 5.12+
        SampleData.SampleDataLogic.registerCustomSampleDataCategory(CATEGORY, title=_("TARE Dosimetry"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=CATEGORY,
        sampleName=SAMPLE_NAME,
        thumbnailFileName=icon,
        # SampleDataSource needs one URI per file; the custom loader below is called instead of a download.
        uris="local:TAREDosimetry/demo-patient",
        fileNames="TAREDemoPatient.nrrd",
        nodeNames="TARE demo SPECT",
        customDownloader=lambda source: loadDemoPatient(),
    )


def loadDemoPatient(selectModule: bool = True) -> dict:
    """Build the demo patient as nodes and set up the TARE Dosimetry panel for it.

    Returns {'spect', 'ct', 'segmentation'} nodes.
    """
    from TAREDosimetryLib.imaging.phantom import make_phantom

    case = make_phantom(analytic=False)
    from TAREDosimetry import TAREDosimetryLogic

    logic = TAREDosimetryLogic()
    spect = logic.volumeNodeFromEngine(case.activity, "TARE demo SPECT")
    ct = logic.volumeNodeFromEngine(case.ct, "TARE demo CT")
    seg = logic.segmentationNodeFromEngine(case.segmentation, "TARE demo segments")  # drawn on the CT grid
    logic.setPanelFromParams(logic.getParameterNode(), case.params, spect=spect, ct=ct, segmentation=seg, caseName=CASE_NAME)
    slicer.util.setSliceViewerLayers(background=ct, foreground=spect, foregroundOpacity=0.4,
                                     fit=slicer.app.layoutManager() is not None)
    if selectModule and slicer.app.layoutManager() is not None:
        slicer.util.selectModule("TAREDosimetry")
    return {"spect": spect, "ct": ct, "segmentation": seg}
