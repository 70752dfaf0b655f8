"""Engine results to MRML nodes: the dose volume (Gy, tagged for SlicerRT), tables, the DVH chart,
PASS/FAIL colours; all named after their case and grouped under the case's study.

Mixed into ``TAREDosimetryLogic``; output nodes given in ``outputs`` are re-used, missing ones created.

SlicerRT reads a dose volume's unit from the study that holds it in the subject hierarchy
(``DicomRtImport.DoseUnitName`` of the study item: DVH axis "Dose [GY]", Isodose in Gy only for
"GY", the code its DICOM RT import writes), so the dose is placed under the SPECT/PET's study (a
new patient and study named after the case when the input has none) and the study is given the
unit when it has none.
"""

import json

import numpy as np
import vtk

import slicer

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib.reporting.tables import column_title
from TAREDosimetryLib.volume import Volume

#: Attribute SlicerRT uses to recognise dose volumes (vtkSlicerRtCommon::IsDoseVolumeNode).
DOSE_VOLUME_ATTRIBUTE = "DicomRtImport.DoseVolume"
#: Study-item attributes SlicerRT reads for the dose unit and its scaling (vtkSlicerRtCommon.cxx).
DOSE_UNIT_NAME_ATTRIBUTE = "DicomRtImport.DoseUnitName"
DOSE_UNIT_VALUE_ATTRIBUTE = "DicomRtImport.DoseUnitValue"
#: The unit code SlicerRT's DICOM RT import writes (DoseUnits "GY") and its Isodose module recognises.
DOSE_UNIT_NAME = "GY"
#: Colour table SlicerRT's Isodose logic creates for dose volumes (vtkSlicerRtCommon::DEFAULT_DOSE_COLOR_TABLE_NAME).
SLICERRT_DOSE_COLOR_TABLE_NAME = "Dose_ColorTable"
#: Built-in Slicer colour table used when SlicerRT is not installed (Base/Logic/Resources/ColorFiles).
FALLBACK_DOSE_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileColdToHotRainbow.txt"
#: Segmentation node attribute listing the segment IDs coloured by PASS/FAIL (so only those are restored).
STATUS_COLORED_ATTRIBUTE = "TAREDosimetry.StatusColoredSegmentIDs"
#: Attributes of every output node: which output it is, of which case, from which SPECT/PET node.
OUTPUT_ROLE_ATTRIBUTE = "TAREDosimetry.Output"
CASE_NAME_ATTRIBUTE = "TAREDosimetry.Case"
CASE_ACTIVITY_ATTRIBUTE = "TAREDosimetry.CaseActivityNodeID"
#: Output keys, in the order the panel lists them, and how a new node of each is named.
OUTPUT_NAMES = {
    "doseVolume": "{case} dose (Gy)", "statusTable": "{case} TARE status", "metricsTable": "{case} TARE metrics", "evaluationTable": "{case} TARE thresholds",
    "dvhTable": "{case} DVH", "dvhThresholdTable": "{case} DVH thresholds", "dvhChart": "{case} DVH chart",
    "resultRecord": "{case} TARE result",
}


class OutputNodes:
    """Result nodes of a run and how they are shown."""

    def updateOutputNodes(self, result, activityNode, outputs: dict, caseName: str) -> None:
        """Dose volume, case status, metrics and threshold tables, DVH table and chart of ``result``, in ``outputs``."""
        outputs["doseVolume"] = self.updateDoseVolumeNode(result.dose_gy, outputs.get("doseVolume"),
                                                          OUTPUT_NAMES["doseVolume"].format(case=caseName))
        outputs["statusTable"] = self._updateTable(
            outputs.get("statusTable"), OUTPUT_NAMES["statusTable"].format(case=caseName), mc.case_status_columns(result))
        status = mc.segment_status(result.evaluations)
        outputs["metricsTable"] = self._updateTable(
            outputs.get("metricsTable"), OUTPUT_NAMES["metricsTable"].format(case=caseName), mc.metrics_columns(result.segments, status))
        outputs["evaluationTable"] = self._updateTable(
            outputs.get("evaluationTable"), OUTPUT_NAMES["evaluationTable"].format(case=caseName), mc.evaluation_columns(result.evaluations))
        self.updateDvhNodes(result, outputs, caseName)

    @staticmethod
    def tagOutputs(outputs: dict, activityNode, caseName: str) -> None:
        """Mark each output node with its role, its case and the case's SPECT/PET node (saved with the scene)."""
        for key, node in outputs.items():
            if node is not None:
                node.SetAttribute(OUTPUT_ROLE_ATTRIBUTE, key)
                node.SetAttribute(CASE_NAME_ATTRIBUTE, caseName)
                node.SetAttribute(CASE_ACTIVITY_ATTRIBUTE, activityNode.GetID())

    def _newNode(self, className: str, name: str):
        return slicer.mrmlScene.AddNewNodeByClass(className, slicer.mrmlScene.GenerateUniqueName(name))

    def updateDoseVolumeNode(self, doseGy: Volume, doseNode=None, name: str = "dose (Gy)"):
        """Write the dose (Gy) into ``doseNode`` (created when None): voxel units Gy, tagged as a SlicerRT
        dose volume, dose colours, a window from 0 to the 99.5th percentile, a colour legend."""
        if doseNode is None:
            doseNode = self._newNode("vtkMRMLScalarVolumeNode", name)
        slicer.util.updateVolumeFromArray(doseNode, np.ascontiguousarray(doseGy.array, dtype=np.float32))
        doseNode.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(mc.ijk_to_ras_from_grid(doseGy.grid)))
        doseNode.SetAttribute(DOSE_VOLUME_ATTRIBUTE, "1")
        doseNode.SetAttribute("TAREDosimetry.Unit", "Gy")
        units = slicer.vtkCodedEntry()
        units.SetValueSchemeMeaning("Gy", "UCUM", "Gy")
        doseNode.SetVoxelValueUnits(units)
        if doseNode.GetDisplayNode() is None:
            doseNode.CreateDefaultDisplayNodes()
        display = doseNode.GetDisplayNode()
        display.SetAndObserveColorNodeID(self.doseColorNodeID())
        lower, upper = mc.dose_window_gy(doseGy.array)
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(lower, upper)
        # Voxels with (almost) no dose are left transparent in the overlay.
        display.SetThreshold(max(1e-3, 0.01 * upper), float(np.max(doseGy.array)) + 1.0)
        display.ApplyThresholdOn()
        colors = slicer.modules.colors.logic()
        legend = colors.GetColorLegendDisplayNode(doseNode) or colors.AddDefaultColorLegendDisplayNode(doseNode)
        if legend is not None:
            legend.SetTitleText("Dose (Gy)")
        return doseNode

    @staticmethod
    def doseColorNodeID() -> str:
        """SlicerRT's dose colour table when SlicerRT is installed, else Slicer's ColdToHotRainbow."""
        node = slicer.mrmlScene.GetFirstNodeByName(SLICERRT_DOSE_COLOR_TABLE_NAME)
        if node is None and hasattr(slicer, "vtkSlicerIsodoseModuleLogic"):
            try:
                node = slicer.vtkSlicerIsodoseModuleLogic.CreateDefaultDoseColorTable(slicer.mrmlScene)
            except Exception:  # SlicerRT present but its logic not usable here: fall back
                node = None
        if node is not None:
            return node.GetID()
        if slicer.mrmlScene.GetNodeByID(FALLBACK_DOSE_COLOR_NODE_ID) is not None:
            return FALLBACK_DOSE_COLOR_NODE_ID
        return slicer.modules.colors.logic().GetColorTableNodeID(slicer.vtkMRMLColorTableNode.Rainbow)

    def _updateTable(self, tableNode, name: str, columns):
        """Replace the table's columns with ``[(name, unit, values), ...]`` (strings or floats); locked,
        with readable column titles ("mean (Gy)") as headers."""
        if tableNode is None:
            tableNode = self._newNode("vtkMRMLTableNode", name)
        wasModified = tableNode.StartModify()
        try:
            tableNode.SetLocked(False)
            tableNode.RemoveAllColumns()
            for colName, unit, values in columns:
                if values and all(isinstance(v, str) for v in values):
                    array = vtk.vtkStringArray()
                    for v in values:
                        array.InsertNextValue(v)
                else:
                    array = vtk.vtkDoubleArray()
                    for v in values:
                        array.InsertNextValue(float(v))
                array.SetName(colName)
                tableNode.AddColumn(array)
                tableNode.SetColumnTitle(colName, column_title(colName))
                if unit:
                    tableNode.SetColumnUnitLabel(colName, unit)
            tableNode.SetUseColumnTitleAsColumnHeader(True)
            tableNode.SetLocked(True)  # results are not for editing
        finally:
            tableNode.EndModify(wasModified)
        return tableNode

    def updateDvhNodes(self, result, outputs: dict, base: str) -> None:
        """DVH table (dose + one volume column per segment), threshold lines, and a chart."""
        dose, curves = mc.dvh_columns(result.segments, step_gy=max(result.params.dvh_curve_step_gy, 0.5))
        columns = [("dose_gy", "Gy", list(dose))] + [(name, "%", list(vol)) for name, _seg, vol in curves]
        dvhTable = self._updateTable(outputs.get("dvhTable"), OUTPUT_NAMES["dvhTable"].format(case=base), columns)
        outputs["dvhTable"] = dvhTable
        lines = mc.threshold_lines_gy(result.rules)
        lineColumns = []
        for n, (_label, doseGy) in enumerate(lines):
            lineColumns.append((f"threshold{n}_gy", "Gy", [doseGy, doseGy]))
            lineColumns.append((f"threshold{n}_pct", "%", [0.0, 100.0]))
        if not lineColumns:
            lineColumns = [("threshold_none_gy", "Gy", [0.0, 0.0]), ("threshold_none_pct", "%", [0.0, 0.0])]
        lineTable = self._updateTable(outputs.get("dvhThresholdTable"), OUTPUT_NAMES["dvhThresholdTable"].format(case=base), lineColumns)
        outputs["dvhThresholdTable"] = lineTable

        chart = outputs.get("dvhChart")
        if chart is None:
            chart = self._newNode("vtkMRMLPlotChartNode", OUTPUT_NAMES["dvhChart"].format(case=base))
        # Re-running replaces this chart's series instead of adding more.
        old = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
        chart.RemoveAllPlotSeriesNodeIDs()
        for series in old:
            if series is not None:
                slicer.mrmlScene.RemoveNode(series)
        for name, seg, _vol in curves:
            series = self._newNode("vtkMRMLPlotSeriesNode", name)
            series.SetAndObserveTableNodeID(dvhTable.GetID())
            series.SetXColumnName("dose_gy")
            series.SetYColumnName(name)
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
            series.SetColor(*[float(c) for c in seg.color])
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
        for n, (label, _doseGy) in enumerate(lines):
            series = self._newNode("vtkMRMLPlotSeriesNode", label)
            series.SetAndObserveTableNodeID(lineTable.GetID())
            series.SetXColumnName(f"threshold{n}_gy")
            series.SetYColumnName(f"threshold{n}_pct")
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
            series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleDash)
            series.SetColor(0.4, 0.4, 0.4)
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
        chart.SetTitle(f"DVH {base}")
        chart.SetXAxisTitle("Dose (Gy)")
        chart.SetYAxisTitle("Volume (%)")
        chart.SetLegendVisibility(True)
        outputs["dvhChart"] = chart

    def showResults(self, result, outputs: dict, segmentationNode, background=None, doseOpacity: float = 0.5,
                    volumeRendering: bool = False) -> None:
        doseNode = outputs["doseVolume"]
        slicer.util.setSliceViewerLayers(background=background, foreground=doseNode, foregroundOpacity=doseOpacity,
                                         fit=slicer.app.layoutManager() is not None)
        self.showDoseVolumeRendering(doseNode, volumeRendering)
        self.showChart(outputs.get("dvhChart"))
        self.showStatusColors(segmentationNode, result)

    @staticmethod
    def showChart(chartNode) -> None:
        if chartNode is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chartNode)

    @staticmethod
    def showDoseVolumeRendering(doseNode, visible: bool):
        """Show or hide GPU volume rendering of the dose with its dose colours (created on first use)."""
        vrLogic = slicer.modules.volumerendering.logic()
        display = vrLogic.GetFirstVolumeRenderingDisplayNode(doseNode)
        if display is None:
            if not visible:
                return None
            display = vrLogic.CreateDefaultVolumeRenderingNodes(doseNode)
        vrLogic.CopyDisplayToVolumeRenderingDisplayNode(display)
        display.SetVisibility(bool(visible))
        return display

    @staticmethod
    def _segmentIdsOf(segmentationNode, segmentResult) -> list:
        """Slicer segment IDs behind one engine segment result.  The engine's ``segment_id`` is the
        Slicer ID, or for a combined entry (lungs of the LSF model) a comma-separated list of
        segment names; derived entries (normal liver = liver minus tumours) have none."""
        seg = segmentationNode.GetSegmentation()
        ids = []
        for token in str(segmentResult.segment_id).split(","):
            token = token.strip()
            if not token:
                continue
            if seg.GetSegment(token) is None:
                token = seg.GetSegmentIdBySegmentName(token)
            if token and seg.GetSegment(token) is not None and token not in ids:
                ids.append(token)
        return ids

    def showStatusColors(self, segmentationNode, result) -> list:
        """Colour segments green (PASS) / red (FAIL) with display override colours; returns the IDs coloured."""
        if segmentationNode is None or result is None:
            return []
        if segmentationNode.GetDisplayNode() is None:
            segmentationNode.CreateDefaultDisplayNodes()
        display = segmentationNode.GetDisplayNode()
        self.restoreSegmentColors(segmentationNode)
        status = mc.segment_status(result.evaluations)
        colored = []
        for segResult in result.segments:
            if segResult.name not in status:
                continue
            color = mc.PASS_COLOR if status[segResult.name] == "PASS" else mc.FAIL_COLOR
            for segmentId in self._segmentIdsOf(segmentationNode, segResult):
                display.SetSegmentOverrideColor(segmentId, *color)
                colored.append(segmentId)
        segmentationNode.SetAttribute(STATUS_COLORED_ATTRIBUTE, json.dumps(colored))
        return colored

    @staticmethod
    def restoreSegmentColors(segmentationNode) -> None:
        """Remove the PASS/FAIL override colours (only those this module set)."""
        if segmentationNode is None or segmentationNode.GetDisplayNode() is None:
            return
        try:
            colored = json.loads(segmentationNode.GetAttribute(STATUS_COLORED_ATTRIBUTE) or "[]")
        except ValueError:
            colored = []
        display = segmentationNode.GetDisplayNode()
        seg = segmentationNode.GetSegmentation()
        for segmentId in colored:
            if seg.GetSegment(segmentId) is not None:
                display.UnsetSegmentOverrideColor(segmentId)
        segmentationNode.SetAttribute(STATUS_COLORED_ATTRIBUTE, "[]")
