"""The module's self-test: the engine's analytic phantom as MRML nodes, run through the logic, checked.

Imported by TAREDosimetry.py, so that ``slicer.selfTests['TAREDosimetry']`` and ctest's
``py_TAREDosimetry`` (slicer_add_python_unittest) find ``TAREDosimetryTest`` in the module.
"""

import numpy as np

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib.errors import InputError

from .outputnodes import DOSE_VOLUME_ATTRIBUTE


def TAREDosimetryLogic():
    """A new logic of the module (imported when called: the module file imports this one)."""
    from TAREDosimetry import TAREDosimetryLogic as logicClass

    return logicClass()


class TAREDosimetryTest(ScriptedLoadableModuleTest):
    """Builds the engine's analytic phantom as MRML nodes, runs the logic, checks the numbers.

    Runs under ctest (slicer_add_python_unittest: every test_* method) and through
    ``slicer.selfTests['TAREDosimetry']()`` (runTest).
    """

    # Loose enough for the nearest-neighbour round trip through Slicer's segment export,
    # tight enough to catch a wrong unit, axis order or RAS/LPS flip.
    MEAN_DOSE_RTOL = 0.01

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_geometry_round_trip, self.test_phantom_mean_doses, self.test_dvh_and_chart,
                     self.test_pass_fail_colors_and_restore, self.test_rerun_reuses_output_nodes,
                     self.test_vtk_filter_matches_the_engine_dose, self.test_invalid_input_is_reported):
            self.setUp()
            test()

    # -- helpers ---------------------------------------------------------------------------------
    def _phantomNodes(self, spacing_mm=5.0):
        from TAREDosimetryLib.imaging.phantom import make_phantom

        case = make_phantom(analytic=True, spacing_mm=spacing_mm)
        activityNode = slicer.util.addVolumeFromArray(
            case.activity.array, ijkToRAS=mc.ijk_to_ras_from_grid(case.activity.grid), name="phantom SPECT")
        ctNode = slicer.util.addVolumeFromArray(case.ct.array, ijkToRAS=mc.ijk_to_ras_from_grid(case.ct.grid), name="phantom CT")
        segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "phantom segments")
        segNode.CreateDefaultDisplayNodes()
        segNode.SetReferenceImageGeometryParameterFromVolumeNode(ctNode)
        seg = case.segmentation
        for info in seg.segments:
            segmentId = segNode.GetSegmentation().AddEmptySegment(info.segment_id, info.name, info.color)
            slicer.util.updateSegmentBinaryLabelmapFromArray(seg.mask(info).astype(np.uint8), segNode, segmentId, ctNode)
        return case, activityNode, ctNode, segNode

    def _run(self, case, activityNode, ctNode, segNode, outputs=None, rules=None):
        logic = TAREDosimetryLogic()
        outputs = {} if outputs is None else outputs
        result = logic.run(activityNode, segNode, ctNode=ctNode, params=case.params.replace(density_from_ct=False),
                           roles=case.roles, rules=rules, outputs=outputs, show=True)
        return logic, result, outputs

    # -- tests -----------------------------------------------------------------------------------
    def test_geometry_round_trip(self):
        self.delayDisplay("Volume node geometry to engine grid and back")
        case, activityNode, _ct, _seg = self._phantomNodes()
        vol = TAREDosimetryLogic().volumeFromNode(activityNode)
        self.assertTrue(vol.grid.same_as(case.activity.grid), f"{vol.grid} != {case.activity.grid}")
        np.testing.assert_array_equal(vol.array, case.activity.array)
        self.delayDisplay("Test passed")

    def test_phantom_mean_doses(self):
        self.delayDisplay("Mean doses of the analytic phantom")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, result, outputs = self._run(case, activityNode, ctNode, segNode)
        checked = 0
        for seg in result.segments:
            expected = case.expected_mean_gy.get(seg.name)
            if expected is None:
                continue
            measured = seg.metrics["mean_gy"]
            self.assertAlmostEqual(measured / expected, 1.0, delta=self.MEAN_DOSE_RTOL,
                                   msg=f"{seg.name}: mean {measured:.3f} Gy, analytic {expected:.3f} Gy")
            checked += 1
        self.assertGreaterEqual(checked, 4)
        # The dose node holds the engine's dose, in Gy, on the SPECT grid, tagged for SlicerRT.
        doseNode = outputs["doseVolume"]
        self.assertEqual(doseNode.GetAttribute(DOSE_VOLUME_ATTRIBUTE), "1")
        np.testing.assert_allclose(slicer.util.arrayFromVolume(doseNode), result.dose_gy.array, rtol=1e-6)
        # Inputs are untouched.
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(activityNode), case.activity.array)
        self.assertIsNone(activityNode.GetAttribute(DOSE_VOLUME_ATTRIBUTE))
        # Metrics table: one row per segment result, mean dose column in Gy.
        table = outputs["metricsTable"]
        self.assertEqual(table.GetNumberOfRows(), len(result.segments))
        means = slicer.util.arrayFromTableColumn(table, "mean_gy")
        np.testing.assert_allclose(means, [s.metrics["mean_gy"] for s in result.segments], rtol=1e-9)
        self.delayDisplay("Test passed")

    def test_dvh_and_chart(self):
        self.delayDisplay("DVH table and chart")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, result, outputs = self._run(case, activityNode, ctNode, segNode)
        dvh = outputs["dvhTable"]
        dose = slicer.util.arrayFromTableColumn(dvh, "dose_gy")
        self.assertEqual(dose[0], 0.0)
        chart = outputs["dvhChart"]
        withDvh = [s for s in result.segments if s.dvh is not None]
        nLines = len(mc.threshold_lines_gy(result.rules))
        self.assertEqual(chart.GetNumberOfPlotSeriesNodes(), len(withDvh) + nLines)
        for i, seg in enumerate(withDvh):
            series = chart.GetNthPlotSeriesNode(i)
            np.testing.assert_allclose(series.GetColor(), seg.color, atol=1e-6)
            column = slicer.util.arrayFromTableColumn(dvh, series.GetYColumnName())
            self.assertAlmostEqual(float(column[0]), 100.0, places=3)
            self.assertLessEqual(float(column[-1]), 1e-6)
            # The curve's dose at 50 % agrees with the engine's median within one table step.
            d50 = float(np.interp(-50.0, -column, dose))
            self.assertAlmostEqual(d50, seg.dvh.dose_at_volume_pct(50.0), delta=2 * (dose[1] - dose[0]) + 1e-6)
        self.delayDisplay("Test passed")

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
            # An unset override colour reads as SEGMENT_COLOR_NO_OVERRIDE (-1): the segment's own colour shows.
            color = display.GetSegmentOverrideColor(segmentId)
            self.assertLess(color[0], 0.0, f"override colour of {segmentId} should be unset after restore")
        self.delayDisplay("Test passed")

    def test_rerun_reuses_output_nodes(self):
        self.delayDisplay("Re-running updates the same output nodes")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic, result, outputs = self._run(case, activityNode, ctNode, segNode)
        counts = {c: slicer.mrmlScene.GetNumberOfNodesByClass(c) for c in
                  ("vtkMRMLScalarVolumeNode", "vtkMRMLTableNode", "vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode")}
        first = dict(outputs)
        self._run(case, activityNode, ctNode, segNode, outputs=outputs, rules="hcc-glass")
        for key, node in first.items():
            self.assertIs(outputs[key], node, key)
        for c, n in counts.items():
            self.assertLessEqual(slicer.mrmlScene.GetNumberOfNodesByClass(c), n + (2 if c == "vtkMRMLPlotSeriesNode" else 0), c)
        self.delayDisplay("Test passed")

    def test_vtk_filter_matches_the_engine_dose(self):
        self.delayDisplay("The dose computed through the engine's VTK filter equals the engine's own dose_map_gy")
        from TAREDosimetryLib.dose.dosemap import dose_map_gy

        case, activityNode, ctNode, segNode = self._phantomNodes()
        for method in ("ldm", "dvk"):
            params = case.params.replace(density_from_ct=False, method=method, device="cpu")
            result = TAREDosimetryLogic().run(activityNode, segNode, ctNode=ctNode, params=params, roles=case.roles,
                                              outputs={}, show=False)
            engine = dose_map_gy(result.activity_gbq, result.density_g_ml, result.params)
            np.testing.assert_allclose(result.dose_gy.array, engine.array, rtol=1e-5, atol=1e-6, err_msg=method)
        self.delayDisplay("Test passed")

    def test_invalid_input_is_reported(self):
        self.delayDisplay("Errors name the problem")
        case, activityNode, ctNode, segNode = self._phantomNodes()
        logic = TAREDosimetryLogic()
        with self.assertRaises(InputError):
            logic.run(activityNode, segNode, params=case.params, outputs={"doseVolume": activityNode})
        pn = logic.getParameterNode()
        # The singleton parameter node may be bound to an open panel whose selector already picked the
        # phantom segmentation: set both inputs explicitly.
        with slicer.util.NodeModify(pn):
            pn.activityVolume = activityNode
            pn.segmentation = None
        self.assertIn("segmentation", logic.whyNotRunnable(pn).lower())
        self.delayDisplay("Test passed")
