"""The module's self-test: what only runs in Slicer, checked against the engine.

The engine's analytic phantom as MRML nodes, run through the logic and checked against closed-form
doses; segments on a grid other than the SPECT's compared with the engine run on the same files;
the engine's own error messages through the VTK filter; results kept in a saved and reloaded
scene; several cases in one scene; SlicerRT's dose conventions; inputs under a transform; Cancel;
DICOM-folder inputs; the Sample Data demo patient.

Imported by TAREDosimetry.py, so that ``slicer.selfTests['TAREDosimetry']`` and ctest's
``py_TAREDosimetry`` (slicer_add_python_unittest) find ``TAREDosimetryTest`` in the module.
"""

import json
import os
import pathlib
import tempfile

import numpy as np

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib.errors import CancelledError, GPUUnavailableError, InputError

from .outputnodes import DOSE_UNIT_NAME, DOSE_UNIT_NAME_ATTRIBUTE, DOSE_VOLUME_ATTRIBUTE


def TAREDosimetryLogic():
    """A new logic of the module (imported when called: the module file imports this one)."""
    from TAREDosimetry import TAREDosimetryLogic as logicClass

    return logicClass()


class TAREDosimetryTest(ScriptedLoadableModuleTest):
    """Builds the engine's analytic phantom as MRML nodes, runs the logic, checks the numbers.

    Runs under ctest (slicer_add_python_unittest: every test_* method) and through
    ``slicer.selfTests['TAREDosimetry']()`` (runTest).
    """

    # Loose enough for the analytic phantom's partial voxels, tight enough to catch a wrong unit,
    # axis order or RAS/LPS flip.
    MEAN_DOSE_RTOL = 0.01

    def setUp(self):
        slicer.mrmlScene.Clear()
        self.tempDir = tempfile.mkdtemp(prefix="TAREDosimetryTest-")

    def runTest(self):
        for test in (self.test_geometry_round_trip, self.test_phantom_mean_doses, self.test_dvh_and_chart,
                     self.test_pass_fail_colors_and_restore, self.test_rerun_reuses_output_nodes,
                     self.test_vtk_filter_matches_the_engine_dose, self.test_invalid_input_is_reported,
                     self.test_segments_on_their_own_grid_match_the_engine_on_the_same_files,
                     self.test_engine_errors_arrive_with_their_own_message, self.test_result_is_kept_in_the_scene,
                     self.test_failed_run_and_scene_close_leave_no_stale_result, self.test_several_cases_in_one_scene,
                     self.test_dose_is_a_slicerrt_dose_volume_in_gy, self.test_inputs_under_a_transform,
                     self.test_cancel_stops_the_run, self.test_dicom_folder_input, self.test_demo_patient_sample_data,
                     self.test_default_activity_volume_is_never_the_ct, self.test_not_given_inputs_are_never_a_silent_pass,
                     self.test_an_existing_dose_volume_is_evaluated):
            self.setUp()
            test()

    # -- helpers ---------------------------------------------------------------------------------
    def _phantomNodes(self, spacing_mm=5.0):
        from TAREDosimetryLib.imaging.phantom import make_phantom

        logic = TAREDosimetryLogic()
        case = make_phantom(analytic=True, spacing_mm=spacing_mm)
        activityNode = slicer.util.addVolumeFromArray(
            case.activity.array, ijkToRAS=mc.ijk_to_ras_from_grid(case.activity.grid), name="phantom SPECT")
        ctNode = slicer.util.addVolumeFromArray(case.ct.array, ijkToRAS=mc.ijk_to_ras_from_grid(case.ct.grid), name="phantom CT")
        segNode = logic.segmentationNodeFromEngine(case.segmentation, "phantom segments")
        return case, activityNode, ctNode, segNode

    def _run(self, case, activityNode, ctNode, segNode, outputs=None, rules=None, **kwargs):
        logic = TAREDosimetryLogic()
        outputs = {} if outputs is None else outputs
        result = logic.run(activityNode, segNode, ctNode=ctNode, params=case.params.replace(density_from_ct=False),
                           roles=case.roles, rules=rules, outputs=outputs, show=True, **kwargs)
        return logic, result, outputs

    def _panelCase(self, case, activityNode, ctNode, segNode):
        logic = TAREDosimetryLogic()
        pn = logic.getParameterNode()
        logic.setPanelFromParams(pn, case.params.replace(density_from_ct=False), spect=activityNode, ct=ctNode, segmentation=segNode)
        return logic, pn

    # -- tests -----------------------------------------------------------------------------------
    def test_geometry_round_trip(self):
        self.delayDisplay("Volume node geometry to engine grid and back")
        case, activityNode, _ct, _seg = self._phantomNodes()
        vol = TAREDosimetryLogic().volumeFromNode(activityNode)
        self.assertTrue(vol.grid.same_as(case.activity.grid), f"{vol.grid} != {case.activity.grid}")
        np.testing.assert_array_equal(vol.array, case.activity.array)

    def test_phantom_mean_doses(self):
        self.delayDisplay("Mean doses of the analytic phantom")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, result, outputs = self._run(case, activityNode, ctNode, segNode)
        checked = 0
        for seg in result.segments:
            expected = case.expected_mean_gy.get(seg.name)
            if expected is None:
                continue
            self.assertAlmostEqual(seg.metrics["mean_gy"] / expected, 1.0, delta=self.MEAN_DOSE_RTOL,
                                   msg=f"{seg.name}: mean {seg.metrics['mean_gy']:.3f} Gy, analytic {expected:.3f} Gy")
            checked += 1
        self.assertGreaterEqual(checked, 4)
        doseNode = outputs["doseVolume"]
        self.assertEqual(doseNode.GetAttribute(DOSE_VOLUME_ATTRIBUTE), "1")
        np.testing.assert_allclose(slicer.util.arrayFromVolume(doseNode), result.dose_gy.array, rtol=1e-6)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(activityNode), case.activity.array)  # inputs untouched
        self.assertIsNone(activityNode.GetAttribute(DOSE_VOLUME_ATTRIBUTE))
        table = outputs["metricsTable"]
        self.assertEqual(table.GetNumberOfRows(), len(result.segments))
        np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table, "mean_gy"), [s.metrics["mean_gy"] for s in result.segments], rtol=1e-9)
        self.assertTrue(table.GetLocked(), "result tables are read-only")
        self.assertTrue(table.GetUseColumnTitleAsColumnHeader())
        self.assertEqual(table.GetColumnTitle("mean_gy"), "mean (Gy)")

    def test_dvh_and_chart(self):
        self.delayDisplay("DVH table and chart")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, result, outputs = self._run(case, activityNode, ctNode, segNode)
        dvh = outputs["dvhTable"]
        dose = slicer.util.arrayFromTableColumn(dvh, "dose_gy")
        self.assertEqual(dose[0], 0.0)
        chart = outputs["dvhChart"]
        withDvh = [s for s in result.segments if s.dvh is not None]
        self.assertEqual(chart.GetNumberOfPlotSeriesNodes(), len(withDvh) + len(mc.threshold_lines_gy(result.rules)))
        for i, seg in enumerate(withDvh):
            series = chart.GetNthPlotSeriesNode(i)
            np.testing.assert_allclose(series.GetColor(), seg.color, atol=1e-6)
            column = slicer.util.arrayFromTableColumn(dvh, series.GetYColumnName())
            self.assertAlmostEqual(float(column[0]), 100.0, places=3)
            self.assertLessEqual(float(column[-1]), 1e-6)
            d50 = float(np.interp(-50.0, -column, dose))
            self.assertAlmostEqual(d50, seg.dvh.dose_at_volume_pct(50.0), delta=2 * (dose[1] - dose[0]) + 1e-6)

    def test_pass_fail_colors_and_restore(self):
        self.delayDisplay("PASS/FAIL colours on the segments")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, result, outputs = self._run(case, activityNode, ctNode, segNode)
        display = segNode.GetDisplayNode()
        status = mc.segment_status(result.evaluations)
        self.assertTrue(status, "the default preset should apply to the phantom's tumours")
        expected = {"PASS": mc.PASS_COLOR, "FAIL": mc.FAIL_COLOR}
        for seg in result.segments:
            for segmentId in logic._segmentIdsOf(segNode, seg):
                color = display.GetSegmentOverrideColor(segmentId)
                if seg.name in status:
                    np.testing.assert_allclose([color[0], color[1], color[2]], expected[status[seg.name]], atol=1e-6)
        logic.restoreSegmentColors(segNode)
        for segmentId in logic._segmentIds(segNode):
            self.assertLess(display.GetSegmentOverrideColor(segmentId)[0], 0.0, f"override colour of {segmentId} should be unset")

    def test_rerun_reuses_output_nodes(self):
        self.delayDisplay("Re-running updates the same output nodes")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, result, outputs = self._run(case, activityNode, ctNode, segNode)
        classes = ("vtkMRMLScalarVolumeNode", "vtkMRMLTableNode", "vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode", "vtkMRMLTextNode")
        counts = {c: slicer.mrmlScene.GetNumberOfNodesByClass(c) for c in classes}
        first = dict(outputs)
        self._run(case, activityNode, ctNode, segNode, outputs=outputs, rules="hcc-glass")
        for key, node in first.items():
            self.assertIs(outputs[key], node, key)
        for c, n in counts.items():
            self.assertLessEqual(slicer.mrmlScene.GetNumberOfNodesByClass(c), n + (2 if c == "vtkMRMLPlotSeriesNode" else 0), c)

    def test_vtk_filter_matches_the_engine_dose(self):
        self.delayDisplay("The dose through the engine's VTK filter equals the engine's dose_map_gy, every parameter honoured")
        from TAREDosimetryLib.dose.dosemap import dose_map_gy

        case, activityNode, ctNode, segNode = self._phantomNodes()
        for changes in ({"method": "ldm"}, {"method": "dvk"}, {"method": "dvk", "dvk_radius_mm": 8.0},
                        {"method": "dvk", "dvk_lung_mode": "ldm", "lung_dose_from": "image"}):
            params = case.params.replace(density_from_ct=False, device="cpu", **changes)
            logic = TAREDosimetryLogic()
            result = logic.run(activityNode, segNode, ctNode=ctNode, params=params, roles=case.roles, outputs={}, show=False)
            lung = None
            if params.dvk_lung_mode == "ldm":
                from TAREDosimetryLib.evaluation.sampling import lung_mask_on_grid

                lung = lung_mask_on_grid(case.segmentation, ["lung right", "lung left"], result.dose_gy.grid)
            engine = dose_map_gy(result.activity_gbq, result.density_g_ml, result.params, lung_mask=lung)
            np.testing.assert_allclose(result.dose_gy.array, engine.array, rtol=1e-5, atol=1e-6, err_msg=str(changes))
            self.assertTrue(result.summary["dose_device"].startswith("CPU"), result.summary["dose_device"])

    def test_invalid_input_is_reported(self):
        self.delayDisplay("Errors name the problem")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic = TAREDosimetryLogic()
        with self.assertRaises(InputError):
            logic.run(activityNode, segNode, params=case.params, outputs={"doseVolume": activityNode})
        pn = logic.getParameterNode()
        with slicer.util.NodeModify(pn):
            pn.activityVolume = activityNode
            pn.segmentation = None
        self.assertIn("segmentation", logic.whyNotRunnable(pn).lower())

    def test_segments_on_their_own_grid_match_the_engine_on_the_same_files(self):
        self.delayDisplay("Segments on a grid other than the SPECT's: the same numbers as the engine on the same files")
        from TAREDosimetryLib.imaging.images import read_image, write_image
        from TAREDosimetryLib.imaging.phantom import make_phantom
        from TAREDosimetryLib.imaging.segmentation_io import read_segmentation
        from TAREDosimetryLib.pipeline import run_case
        from TAREDosimetryLib.volume import Volume

        case = make_phantom(analytic=False, spacing_mm=2.5)  # SPECT 4.8 mm (z reversed), segments on the 2.5 mm CT grid
        spectPath, maskDir = os.path.join(self.tempDir, "spect.nrrd"), os.path.join(self.tempDir, "masks")
        os.makedirs(maskDir)
        write_image(case.activity, spectPath)
        for info in case.segmentation.segments:
            mask = Volume(case.segmentation.mask(info).astype(np.uint8), grid=case.segmentation.grid)
            write_image(mask, os.path.join(maskDir, info.name + ".nrrd"), dtype=np.uint8)
        params = case.params.replace(density_from_ct=False)
        engine = run_case(read_image(spectPath, "SPECT"), read_segmentation(maskDir), params=params)
        labelmapsBefore = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode")
        displayBefore = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeDisplayNode")
        logic = TAREDosimetryLogic()
        result = logic.runFromFiles(spectPath, maskDir, params=params, keepNodes=True, report=False)
        # A segmentation referenced to the SPECT (as a GUI-created one is) must not resample its segments either.
        import vtkSegmentationCorePython as vtkSegmentationCore

        segNode = slicer.util.getNodesByClass("vtkMRMLSegmentationNode")[0]
        spectNode = [n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") if n.GetName() == "spect"][0]
        segNode.SetReferenceImageGeometryParameterFromVolumeNode(spectNode)
        referenceName = vtkSegmentationCore.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
        reference = segNode.GetSegmentation().GetConversionParameter(referenceName)
        again = logic.run(spectNode, segNode, params=params, outputs={}, show=False)
        self.assertEqual(segNode.GetSegmentation().GetConversionParameter(referenceName), reference, "reference geometry changed")
        for other in (result, again):
            for a, b in zip(engine.segments, other.segments):
                self.assertEqual(a.name, b.name)
                for key in ("volume_ml", "mean_gy", "d70_gy"):
                    self.assertAlmostEqual(a.metrics[key], b.metrics[key], delta=1e-6 * max(1.0, abs(a.metrics[key])), msg=f"{a.name} {key}")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode"), labelmapsBefore, "temporary label map left")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeDisplayNode"), displayBefore, "orphan display node left")

    def test_engine_errors_arrive_with_their_own_message(self):
        self.delayDisplay("An engine error reaches the panel with the engine's message (not 'NoneType has no GetDataType')")
        from TAREDosimetryLib.dose.backend import gpu_status

        case, activityNode, ctNode, segNode = self._phantomNodes()
        if not gpu_status()[0]:
            with self.assertRaisesRegex(GPUUnavailableError, "no GPU is usable"):
                TAREDosimetryLogic().run(activityNode, segNode, params=case.params.replace(method="dvk", device="gpu"), outputs={}, show=False)
        segNode.GetSegmentation().AddEmptySegment("empty", "empty segment")
        with self.assertRaisesRegex(InputError, "empty"):
            TAREDosimetryLogic().run(activityNode, segNode, params=case.params, outputs={}, show=False)

    def test_result_is_kept_in_the_scene(self):
        self.delayDisplay("A saved and reloaded scene keeps its result; Export works after reload")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, pn = self._panelCase(case, activityNode, ctNode, segNode)
        result = logic.process(pn, show=False)
        pn.exportDirectory = pathlib.Path(self.tempDir)
        first = logic.exportCase(pn, report=False)
        scenePath = os.path.join(self.tempDir, "scene.mrb")
        self.assertTrue(slicer.util.saveScene(scenePath))
        slicer.mrmlScene.Clear()
        logic.clearResults()
        slicer.util.loadScene(scenePath)
        pn = TAREDosimetryLogic().getParameterNode()
        self.assertIsNotNone(pn.resultRecord, "the result record should come back with the scene")
        stored = logic.resultFromScene(pn.resultRecord, pn.doseVolume)
        self.assertEqual(stored.overall_status, result.overall_status)
        self.assertEqual([e.status for e in stored.evaluations], [e.status for e in result.evaluations])
        self.assertEqual(logic.whyResultNotCurrent(pn.resultRecord, logic.inputsSignature(pn)), "")
        pn.exportDirectory = pathlib.Path(self.tempDir, "after-reload")
        second = logic.exportCase(pn, report=False)
        for name in ("metrics.json", "metrics.csv", "dvh.csv"):
            with open(os.path.join(first, name), "rb") as a, open(os.path.join(second, name), "rb") as b:
                self.assertEqual(a.read(), b.read(), name)

    def test_failed_run_and_scene_close_leave_no_stale_result(self):
        self.delayDisplay("A failed Apply or a closed scene leaves nothing that Export or the colours could use")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, pn = self._panelCase(case, activityNode, ctNode, segNode)
        logic.process(pn, show=False)
        self.assertEqual(logic.whyResultNotCurrent(pn.resultRecord, logic.inputsSignature(pn)), "")
        pn.residualPercent = 5.0  # inputs changed: the stored result is not theirs
        self.assertNotEqual(logic.whyResultNotCurrent(pn.resultRecord, logic.inputsSignature(pn)), "")
        pn.residualPercent = 2.0
        segNode.GetSegmentation().AddEmptySegment("empty", "empty segment")
        with self.assertRaises(InputError):
            logic.process(pn, show=False)
        self.assertIn("did not finish", logic.whyResultNotCurrent(pn.resultRecord, logic.inputsSignature(pn)))
        with self.assertRaises(InputError):
            logic.exportCase(pn, report=False)
        slicer.mrmlScene.Clear()
        pn = TAREDosimetryLogic().getParameterNode()
        self.assertIsNone(pn.resultRecord)
        self.assertIsNone(pn.metricsTable)

    def test_not_given_inputs_are_never_a_silent_pass(self):
        self.delayDisplay("A 'not given' LSF stops Apply with the reason; a rule input not given makes the case INCOMPLETE")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, pn = self._panelCase(case, activityNode, ctNode, segNode)
        pn.lungShuntFractionPercent = -1.0
        self.assertIn("Lung shunt fraction", logic.whyNotRunnable(pn))
        with self.assertRaises(InputError):
            logic.process(pn, show=False)
        pn.lungShuntFractionPercent = 8.0
        pn.rulePreset, pn.rulesJson = "hcc-glass", ""
        result = logic.process(pn, show=False)
        self.assertNotEqual(result.overall_status, "PASS")  # treatment approach, bilirubin, hepatic reserve not given
        self.assertTrue(any("bilirubin not given" in r for r in result.incomplete_reasons), result.incomplete_reasons)
        rows = [(pn.statusTable.GetCellText(r, 0), pn.statusTable.GetCellText(r, 1)) for r in range(pn.statusTable.GetNumberOfRows())]
        self.assertIn(("overall status", result.overall_status), rows)
        self.assertIn(("bilirubin mg dl", "not given"), rows)
        self.assertEqual(sum(1 for item, _ in rows if item.startswith("incomplete")), len(result.incomplete_reasons))
        self.assertEqual(logic.storedSummary(pn.resultRecord).incomplete_reasons, result.incomplete_reasons)

    def test_several_cases_in_one_scene(self):
        self.delayDisplay("A second case does not overwrite the first")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        second = slicer.util.addVolumeFromArray(case.activity.array * 2.0, ijkToRAS=mc.ijk_to_ras_from_grid(case.activity.grid), name="second SPECT")
        logic, pn = self._panelCase(case, activityNode, ctNode, segNode)
        pn.caseName = "case A"
        logic.process(pn, show=False)
        doseA = slicer.util.arrayFromVolume(pn.doseVolume).copy()
        outputsA = logic.outputsOfCase(activityNode)
        with slicer.util.NodeModify(pn):
            pn.activityVolume, pn.caseName = second, "case B"
            for key, node in logic.outputsOfCase(second).items():
                setattr(pn, key, node)
            for key in outputsA:
                setattr(pn, key, None)
        logic.process(pn, show=False)
        self.assertNotIn(pn.doseVolume, outputsA.values())
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(outputsA["doseVolume"]), doseA)
        self.assertIn("case A", outputsA["doseVolume"].GetName())
        self.assertIn("case B", pn.doseVolume.GetName())
        self.assertEqual(logic.outputsOfCase(activityNode)["doseVolume"], outputsA["doseVolume"])
        self.assertEqual(set(outputsA), {"doseVolume", "statusTable", "metricsTable", "evaluationTable", "dvhTable",
                                         "dvhThresholdTable", "dvhChart", "resultRecord"})
        self.assertEqual(outputsA["resultRecord"].GetAttribute("TAREDosimetry.Case"), "case A")

    def test_dose_is_a_slicerrt_dose_volume_in_gy(self):
        self.delayDisplay("The dose is in Gy for Slicer and SlicerRT: voxel units, study with DoseUnitName")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, pn = self._panelCase(case, activityNode, ctNode, segNode)
        logic.process(pn, show=False)
        dose = pn.doseVolume
        self.assertEqual(dose.GetVoxelValueUnits().GetCodeValue(), "Gy")
        shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
        study = shNode.GetItemAncestorAtLevel(shNode.GetItemByDataNode(dose), slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy())
        self.assertTrue(study, "the dose must be under a study")
        self.assertEqual(shNode.GetItemAttribute(study, DOSE_UNIT_NAME_ATTRIBUTE), DOSE_UNIT_NAME)
        for key in ("metricsTable", "dvhChart", "resultRecord"):
            item = shNode.GetItemByDataNode(getattr(pn, key))
            self.assertEqual(shNode.GetItemAncestorAtLevel(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy()), study, key)

    def test_inputs_under_a_transform(self):
        self.delayDisplay("Inputs under a transform are used through it, never refused")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, plain, _outputs = self._run(case, activityNode, None, segNode)
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
        matrix = np.eye(4)
        matrix[:3, 3] = (12.5, -7.0, 30.0)
        transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
        for node in (activityNode, segNode):
            node.SetAndObserveTransformNodeID(transform.GetID())
        logic, moved, _outputs = self._run(case, activityNode, None, segNode)
        for a, b in zip(plain.segments, moved.segments):
            self.assertAlmostEqual(a.metrics["mean_gy"], b.metrics["mean_gy"], delta=1e-6 * a.metrics["mean_gy"], msg=a.name)
        self.assertTrue(any("transform" in w for w in moved.warnings), "the transform is stated in the warnings")

    def test_cancel_stops_the_run(self):
        self.delayDisplay("Cancel stops the calculation and stores nothing")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, pn = self._panelCase(case, activityNode, ctNode, segNode)
        pn.doseMethod = pn.doseMethod.__class__("dvk")
        seen = []

        def progress(fraction, message):
            seen.append(message)
            if "dose map" in message:
                raise CancelledError("stopped by the user (Cancel)")

        with self.assertRaises(CancelledError):
            logic.process(pn, progress=progress, show=False)
        self.assertIsNone(pn.resultRecord)
        self.assertFalse(any("metrics" in m for m in seen), "the run went on after Cancel")

    def test_dicom_folder_input(self):
        self.delayDisplay("A DICOM series folder as the SPECT/PET of a file case (the batch's inputs)")
        import SimpleITK as sitk

        from TAREDosimetryLib.imaging.images import read_image

        folder = os.path.join(self.tempDir, "pet")
        os.makedirs(folder)
        arr = np.random.default_rng(0).integers(0, 1000, (4, 8, 9)).astype(np.int16)
        image = sitk.GetImageFromArray(arr)
        image.SetSpacing((2.0, 2.0, 3.0))
        image.SetOrigin((10.0, 20.0, 30.0))
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for i in range(image.GetDepth()):
            s = image[:, :, i]
            pos = "\\".join(str(c) for c in image.TransformIndexToPhysicalPoint((0, 0, i)))
            for k, val in (("0008|0060", "PT"), ("0020|000e", "1.2.826.0.1.3680043.2.1125.91"), ("0020|0032", pos),
                           ("0020|0013", str(i)), ("0020|0037", "1\\0\\0\\0\\1\\0")):
                s.SetMetaData(k, val)
            writer.SetFileName(os.path.join(folder, f"{i}.dcm"))
            writer.Execute(s)
        node = TAREDosimetryLogic().loadImageNode(folder, "PET image")
        expected = read_image(folder)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), expected.array)
        self.assertTrue(TAREDosimetryLogic().volumeFromNode(node).grid.same_as(expected.grid))

    def test_demo_patient_sample_data(self):
        self.delayDisplay("Sample Data's demo patient reaches a PASS/FAIL with Apply")
        from .sampledata import loadDemoPatient

        nodes = loadDemoPatient(selectModule=False)
        logic = TAREDosimetryLogic()
        pn = logic.getParameterNode()
        self.assertIs(pn.activityVolume, nodes["spect"])
        self.assertEqual(logic.whyNotRunnable(pn), "")
        result = logic.process(pn, show=False)
        self.assertIn(result.overall_status, ("PASS", "FAIL", "INCOMPLETE"))

    def test_default_activity_volume_is_never_the_ct(self):
        self.delayDisplay("The SPECT/PET selector offers an NM/PT volume or nothing")
        logic = TAREDosimetryLogic()
        slicer.util.addVolumeFromArray(np.zeros((3, 3, 3), np.float32), name="CT abdomen")
        self.assertIsNone(logic.defaultActivityVolume())
        spect = slicer.util.addVolumeFromArray(np.ones((3, 3, 3), np.float32), name="Y90 SPECT")
        self.assertIs(logic.defaultActivityVolume(), spect)
        self.assertEqual(json.loads(json.dumps(logic.activityCandidates()))[0]["name"], "CT abdomen")

    def test_an_existing_dose_volume_is_evaluated(self):
        self.delayDisplay("A dose volume in the scene (tagged as SlicerRT tags RT Dose) is evaluated, not computed")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, computed, outputs = self._run(case, activityNode, ctNode, segNode)
        doseNode = outputs["doseVolume"]  # Gy voxel units, DicomRtImport.DoseVolume, study unit GY
        self.assertTrue(logic.isDoseInput(doseNode))
        self.assertEqual(logic.doseUnitOfNode(doseNode)[0], "Gy")
        evaluated = TAREDosimetryLogic().run(doseNode, segNode, ctNode=ctNode, params=case.params.replace(density_from_ct=False),
                                             roles=case.roles, outputs={}, show=False, doseInput=True)
        self.assertEqual(evaluated.summary["dose_source"], "external")
        for seg in computed.segments:
            if seg.role in ("tumor", "liver", "normal_liver"):
                self.assertAlmostEqual(evaluated.segment(seg.name).metrics["mean_gy"] / seg.metrics["mean_gy"], 1.0, places=5, msg=seg.name)
        with self.assertRaises(InputError):  # a volume that does not say a dose unit (here the CT) is refused
            TAREDosimetryLogic().run(ctNode, segNode, outputs={}, show=False, doseInput=True, doseUnit="")
