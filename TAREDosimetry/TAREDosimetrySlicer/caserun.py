"""One case from the panel's nodes to the engine: an activity image with what its DICOM header says, or a
dose map computed elsewhere ("evaluate an existing dose volume"), and the dry run ("Check inputs").

* Activity image: the SPECT/PET node is read as an engine Volume; when it came from Slicer's DICOM
  database, its header (:mod:`.dicomtiming`) checks the units against the calibration, refuses a PET of
  another radionuclide unless allowed, and gives the time since administration and the decay
  correction unless the panel gives them (the panel's hours or 'decay corrected' override the header).
  The header's record goes into the result's inputs (``activity_dicom``, ``timing_source``) and its
  remarks into the result's warnings, as ``tare-dosimetry run`` does with a DICOM folder.
* Dose map: a volume tagged as a dose by SlicerRT (``DicomRtImport.DoseVolume``) or ticked in the panel
  is evaluated with :func:`TAREDosimetryLib.pipeline.evaluate_dose_case`; its unit comes from the node's
  voxel value units, SlicerRT's study attribute or the panel's choice, checked against each other
  (:func:`TAREDosimetryLib.panel.dose_unit_of_volume`).
* Dry run: :func:`TAREDosimetryLib.preview.preview_case` on the same inputs, nothing computed.

Mixed into ``TAREDosimetryLogic``.
"""

import slicer

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib import panel
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.params import DosimetryParams

from .dicomtiming import DicomActivityHeader
from .outputnodes import DOSE_UNIT_NAME_ATTRIBUTE, DOSE_VOLUME_ATTRIBUTE

#: What the result says computed the dose of an evaluated dose map.
EXTERNAL_DOSE_DEVICE = "none (dose map computed elsewhere)"


class CaseRunning:
    """Read a case's nodes for the engine and run it (or preview it)."""

    # -- which kind of input ------------------------------------------------------------------------
    @staticmethod
    def isDoseInput(volumeNode, ticked: bool = False) -> bool:
        """True when the selected volume is a dose map: ticked in the panel, or tagged by SlicerRT."""
        return bool(ticked) or (volumeNode is not None and volumeNode.GetAttribute(DOSE_VOLUME_ATTRIBUTE) is not None)

    @staticmethod
    def doseUnitOfNode(volumeNode, chosen: str = ""):
        """(unit, where it came from) of a dose volume: its voxel value units, the DoseUnitName SlicerRT puts
        on its study, the panel's choice; they must agree (see ``panel.dose_unit_of_volume``)."""
        units = volumeNode.GetVoxelValueUnits()
        voxelCode = (units.GetCodeValue() or "") if units is not None else ""
        studyUnit = ""
        shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
        item = shNode.GetItemByDataNode(volumeNode) if shNode is not None else 0
        if item:
            study = shNode.GetItemAncestorAtLevel(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy())
            studyUnit = shNode.GetItemAttribute(study, DOSE_UNIT_NAME_ATTRIBUTE) if study else ""
        return panel.dose_unit_of_volume(volumeNode.GetName(), voxelCode, studyUnit, chosen)

    def whyInputsIncomplete(self, pn, names, doseInput: bool = False) -> str:
        """The engine's refusal of inputs that must not be defaulted, as the panel's reason ('' when none): the
        dose unit of a dose map; the LSF with lung rules of the LSF model; the time since administration of an
        absolute image, which the DICOM header gives when the panel does not."""
        from TAREDosimetryLib.evaluation.requirements import check_required_inputs

        try:
            if doseInput:
                self.doseUnitOfNode(pn.activityVolume, pn.doseUnit.value)
                return ""
            params = DicomActivityHeader.withHeaderTiming(pn.activityVolume, self.engineParams(pn))
            lungs = [n for n, role in mc.role_rows(names, self.savedRoles(pn)) if role == "lung"]
            check_required_inputs(params, self.ruleSet(pn), params.effective_lung_dose_from, lungs)
        except InputError as exc:
            return panel.in_panel_words(exc)
        return ""

    # -- reading the nodes --------------------------------------------------------------------------
    def doseFromNode(self, doseNode, chosenUnit: str = ""):
        """(engine Volume in Gy, record for the result, notes) of a dose volume of the scene."""
        from TAREDosimetryLib.imaging.dosemaps import dose_volume_in_gy, unit_factor

        unit, source = self.doseUnitOfNode(doseNode, chosenUnit)
        what = f"dose map '{doseNode.GetName()}'"
        dose, notes = dose_volume_in_gy(self.volumeFromNode(doseNode, unit=unit), unit, what=what)
        record = {"node": doseNode.GetName(), "unit": unit, "unit_source": source, "factor_to_gy": unit_factor(unit, what),
                  "max_gy": float(dose.array.max())}
        return dose, record, notes

    def activityFromNode(self, activityNode, params, allowOtherRadionuclide: bool = False, useHeader: bool = True):
        """(activity Volume, params, inputs, warnings) of the SPECT/PET node with its DICOM header applied."""
        relative = params.calibration == "relative"
        activity = self.volumeFromNode(activityNode, unit="counts" if relative else "Bq/mL")
        if not useHeader:
            return activity, params, {"activity": activityNode.GetName()}, []
        overridden = params.hours_since_administration is not None or params.image_decay_corrected
        activity, params, record, warnings = DicomActivityHeader.applyToActivity(
            activityNode, activity, params, timingOverridden=overridden, quantitativeExplicit=not relative,
            allowOtherRadionuclide=allowOtherRadionuclide)
        inputs = {"activity": activityNode.GetName()}
        if record is not None:
            if record.get("timing_source") == "command line":
                record["timing_source"] = "panel"  # the panel's hours or 'decay corrected' override the header
            inputs["activity_dicom"] = record
            if record.get("timing_source"):  # absolute calibration only
                inputs["timing_source"] = record["timing_source"]
        return activity, params, inputs, warnings

    def readNodes(self, activityNode, segmentationNode, ctNode, params, step, doseInput=False, doseUnit="",
                  allowOtherRadionuclide=False, useHeader=True) -> dict:
        """The engine's inputs of a case: {'image' (activity or dose), 'segmentation', 'ct', 'params',
        'inputs' (names and header records for the result), 'warnings', 'dose' (record or None)}."""
        if activityNode is None or segmentationNode is None:
            raise InputError("a SPECT/PET volume (or a dose map) and a segmentation are required")
        step(0.0, "reading nodes")
        params = params or DosimetryParams()
        if doseInput:
            image, doseRecord, warnings = self.doseFromNode(activityNode, doseUnit)
            inputs = {"dose": activityNode.GetName()}
        else:
            image, params, inputs, warnings = self.activityFromNode(activityNode, params, allowOtherRadionuclide, useHeader)
            doseRecord = None
        ct = self.volumeFromNode(ctNode, unit="HU") if ctNode is not None else None
        segmentation = self.segmentationFromNode(segmentationNode, progress=step.part(0.02, 0.1))
        segmentation.notes.extend(n for n in (self.transformNote(activityNode, "SPECT/PET volume" if not doseInput else "dose map"),
                                              self.transformNote(ctNode, "CT volume")) if n)
        inputs.update(segmentation=segmentationNode.GetName(), ct=ctNode.GetName() if ctNode is not None else None)
        return {"image": image, "segmentation": segmentation, "ct": ct, "params": params, "inputs": inputs,
                "warnings": list(warnings), "dose": doseRecord}

    # -- running ----------------------------------------------------------------------------------------
    def computeCase(self, case: dict, roles=None, rules=None, step=None):
        """The engine's CaseResult of a case read by :meth:`readNodes` (run_case, or evaluate_dose_case for a dose map)."""
        from TAREDosimetryLib.pipeline import evaluate_dose_case, run_case

        known = set(case["segmentation"].names)
        roleOverrides = {n: r for n, r in (roles or {}).items() if n in known}
        kwargs = dict(params=case["params"], roles=roleOverrides, ct=case["ct"], rules=rules, inputs=case["inputs"],
                      progress=step.part(0.1, 0.88))
        if case["dose"] is not None:
            result = evaluate_dose_case(case["image"], case["segmentation"], **kwargs)
            result.summary["dose_map"] = case["dose"]
            result.summary["dose_device"] = EXTERNAL_DOSE_DEVICE
        else:
            doseProgress = step.part(0.38, 0.64)  # run_case's dose step: 0.35-0.7 of its part, 0.1-0.88
            result = run_case(case["image"], case["segmentation"],
                              dose_function=self.makeDoseFunction(progress=lambda f, m: doseProgress(f, f"dose map: {m}")), **kwargs)
            result.summary["dose_device"] = self.lastDoseDevice
        result.warnings[0:0] = case["warnings"]
        return result

    def previewCase(self, activityNode, segmentationNode, ctNode=None, params=None, roles=None, rules=None,
                    doseInput=False, doseUnit="", allowOtherRadionuclide=False) -> list:
        """The dry run of a case (``Check inputs``): lines in the panel's words; nothing is computed or stored."""
        from TAREDosimetryLib.preview import format_preview, preview_case

        params = params or DosimetryParams()
        stop = []
        try:
            case = self.readNodes(activityNode, segmentationNode, ctNode, params, panel.RunProgress(), doseInput, doseUnit,
                                  allowOtherRadionuclide)
        except InputError as exc:
            if doseInput or not DicomActivityHeader.isFromDicom(activityNode):
                raise
            stop.append(str(exc))  # what the header refuses stops the run; the geometry can still be checked
            case = self.readNodes(activityNode, segmentationNode, ctNode, DicomActivityHeader.withHeaderTiming(activityNode, params),
                                  panel.RunProgress(), useHeader=False)
        usedParams = case["params"]
        if doseInput:  # evaluate_dose_case takes the lung dose from the map and needs no calibration or timing
            usedParams = usedParams.replace(lung_dose_from="image", calibration="absolute", image_decay_corrected=True)
        known = set(case["segmentation"].names)
        preview = preview_case(case["image"], case["segmentation"], params=usedParams, ct=case["ct"], rules=rules,
                               roles={n: r for n, r in (roles or {}).items() if n in known}, inputs=case["inputs"],
                               what=f"dose map '{activityNode.GetName()}'" if doseInput else f"SPECT/PET '{activityNode.GetName()}'")
        preview["warnings"][0:0] = case["warnings"]
        preview["blocking"][0:0] = stop
        return [panel.in_panel_words(line) for line in format_preview(preview)]
