"""The Plan and Compare sections of the module panel (``Resources/UI/TAREDosimetryPlanning.ui``).

Plan: device, model, targets and limits, the LSF (typed in, or from the lung and liver segments
with one click); *Plan* computes the MAA case once at 1 GBq and finds the recommended activity
and its binding constraint; the activity slider then shows the predicted doses and colours the
segments PASS/FAIL live (the engine's ``PlanExplorer`` scales the dose per GBq: milliseconds per
step).  Compare: predicted and delivered doses, the planning segments, a rigid registration into a
transform node the user can inspect and correct (Transforms module), the comparison table and the
difference map.  The widget only gathers inputs; the work is in :class:`.planninglogic.PlanningLogic`.

The main panel's inputs (MAA SPECT, CT, segmentation, roles, densities) are read from its
parameter node in :meth:`PlanningPanel._mainInputs`, the one place that knows its field names.
"""

import time

import qt

import slicer

from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.params import DosimetryParams
from TAREDosimetryLib.planning.interactive import compare_rows, slider_range_gbq
from TAREDosimetryLib.planning.plan import json_clean
from TAREDosimetryLib.planning.prescription import build_prescription

from .planninglogic import PlanningLogic

PLAN_COLUMNS = ("segment", "role", "mean_gy", "d70_gy", "v100_pct", "status")


def _cell(value, digits=4):
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return f"{value:.{digits}g}" if value == value else "n/a"


def _reached_words(choice):
    """The recommendation's words on the targets: reached, NOT reached, or not judged (a target the model cannot evaluate)."""
    words = {True: "; targets reached", False: "; targets NOT reached"}.get(choice.target_reached, "")
    if choice.targets_not_judged:
        words += "; not judged (the model cannot evaluate them): " + "; ".join(choice.targets_not_judged)
    return words


class PlanningPanel:
    """Loads the planning .ui under the main panel and wires it to :class:`PlanningLogic`.

    Parameters
    ----------
    parentLayout : the module widget's layout.
    uiPath : path of TAREDosimetryPlanning.ui.
    mainLogic : the module's TAREDosimetryLogic (node conversions, engine parameters, roles).
    parameterNode : callable returning the main parameter node (or None).
    """

    def __init__(self, parentLayout, uiPath, mainLogic, parameterNode):
        uiWidget = slicer.util.loadUI(uiPath)
        parentLayout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.mainLogic = mainLogic
        self.logic = PlanningLogic(mainLogic)
        self._parameterNode = parameterNode
        self._differenceNode = None
        self.ui.planPredictedTable.setColumnCount(len(PLAN_COLUMNS))
        self.ui.planPredictedTable.horizontalHeader().setStretchLastSection(True)
        self.ui.compareTable.horizontalHeader().setStretchLastSection(True)
        self.ui.planComputeButton.connect("clicked(bool)", self.onPlan)
        self.ui.planLsfFromSegmentsButton.connect("clicked(bool)", self.onLsfFromSegments)
        self.ui.planActivitySliderWidget.connect("valueChanged(double)", self.onActivityChanged)
        self.ui.planUseActivityButton.connect("clicked(bool)", self.onUseActivity)
        self.ui.planRestoreColorsButton.connect("clicked(bool)", self.onRestoreColors)
        self.ui.compareRegisterButton.connect("clicked(bool)", self.onRegister)
        self.ui.compareEditTransformButton.connect("clicked(bool)", self.onEditTransform)
        self.ui.compareButton.connect("clicked(bool)", self.onCompare)

    # -- inputs of the main panel ------------------------------------------------------------
    def _mainInputs(self):
        """(MAA/activity node, segmentation node, CT node, DosimetryParams, roles) of the main panel."""
        pn = self._parameterNode()
        if pn is None:
            raise InputError("the module has no parameter node yet")
        # The Plan's microspheres are the case's; the other clinical inputs (indication, treatment approach,
        # bilirubin, hepatic reserve) come from the main panel and select the preset's conditional rules.
        params = self.mainLogic.engineParams(pn).replace(calibration="relative", administered_activity_gbq=1.0,
                                                         lung_shunt_fraction=self.ui.planLsfSpinBox.value / 100.0,
                                                         microsphere=self.ui.planDeviceComboBox.currentText)
        return pn.activityVolume, pn.segmentation, pn.ctVolume, params, self.mainLogic.savedRoles(pn)

    def _prescription(self, params):
        def given(spinBox):
            return spinBox.value if spinBox.value > 0 else None

        extra = [t.strip() for t in self.ui.planExtraRulesLineEdit.text.split(";") if t.strip()]
        return build_prescription(self.ui.planDeviceComboBox.currentText, params.indication, clinical=params.clinical_inputs(),
                                  target_gy=given(self.ui.planPerfusedTargetSpinBox),
                                  tumor_target_gy=given(self.ui.planTumorTargetSpinBox),
                                  normal_liver_limit_gy=given(self.ui.planNormalLiverLimitSpinBox),
                                  lung_limit_gy=given(self.ui.planLungLimitSpinBox), extra_rules=extra)

    def _run(self, message, job, label=None):
        """Run ``job`` showing errors in a dialog and in ``label`` (default: the Plan result label)."""
        try:
            with slicer.util.tryWithErrorDisplay(message, waitCursor=True):
                return job()
        except Exception as exc:  # tryWithErrorDisplay showed it and re-raised
            (label or self.ui.planResultLabel).text = f"{message} {exc}"
            return None

    # -- plan ----------------------------------------------------------------------------------
    def onLsfFromSegments(self) -> None:
        def job():
            activity, seg, _ct, _p, roles = self._mainInputs()
            est = self.logic.lsfFromSegments(activity, seg, roles)
            self.ui.planLsfSpinBox.value = 100.0 * est.value
            self.ui.planResultLabel.text = (f"LSF {100 * est.value:.2f} % ({est.method}: lung {est.counts.get('lung', 0):.4g}, "
                                            f"liver {est.counts.get('liver', 0):.4g} counts)" + "".join(f"\nWarning: {w}" for w in est.warnings))
        self._run("Could not compute the LSF.", job)

    def onPlan(self) -> None:
        def job():
            activity, seg, ct, params, roles = self._mainInputs()
            explorer, choice = self.logic.plan(activity, seg, ct, params, roles, self._prescription(params),
                                               self.ui.planModelComboBox.currentText, self.ui.planDeviceComboBox.currentText)
            lo, hi, step = slider_range_gbq(choice.activity_gbq)
            slider = self.ui.planActivitySliderWidget
            slider.blockSignals(True)
            slider.minimum, slider.maximum, slider.singleStep = lo, hi, step
            slider.blockSignals(False)
            slider.enabled = True
            self._recommendation = (f"Recommended {choice.activity_gbq:.3f} GBq ({explorer.model.name}); binding constraint: "
                                    f"{choice.binding_constraint}" + _reached_words(choice))
            slider.value = choice.activity_gbq
            self.onActivityChanged(choice.activity_gbq)
        self._run("Planning failed.", job)

    def onActivityChanged(self, value) -> None:
        if self.logic.explorer is None:
            return
        start = time.perf_counter()
        step = self.logic.step(value)
        self._fillPlanTable(step.rows)
        pn = self._parameterNode()
        if pn is not None and pn.segmentation is not None:
            self.logic.showStepColors(pn.segmentation, step)
        ms = 1000.0 * (time.perf_counter() - start)
        failed = f" failed: {', '.join(step.failed_rules)}" if step.failed_rules else ""
        self.ui.planResultLabel.text = (f"{getattr(self, '_recommendation', '')}\nAt {value:.3f} GBq: {step.overall}{failed} "
                                        f"({ms:.0f} ms)")

    def _fillPlanTable(self, rows) -> None:
        table = self.ui.planPredictedTable
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, key in enumerate(PLAN_COLUMNS):
                table.setItem(r, c, qt.QTableWidgetItem(_cell(row.get(key))))

    def onUseActivity(self) -> None:
        pn = self._parameterNode()
        if pn is not None and self.ui.planActivitySliderWidget.enabled:
            pn.administeredActivityGBq = float(self.ui.planActivitySliderWidget.value)

    def onRestoreColors(self) -> None:
        pn = self._parameterNode()
        if pn is not None:
            self.logic.restoreStepColors(pn.segmentation)

    # -- compare -------------------------------------------------------------------------------
    def onRegister(self) -> None:
        def job():
            node = self.ui.compareTransformSelector.currentNode()
            if node is None:
                node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "planning to post-treatment")
                self.ui.compareTransformSelector.setCurrentNode(node)
            info = self.logic.register(self.ui.comparePlanningImageSelector.currentNode(), self.ui.compareDeliveredImageSelector.currentNode(),
                                       node, alsoMove=(self.ui.compareDeliveredDoseSelector.currentNode(),))
            self.ui.compareSummaryLabel.text = (f"Registered: rotation {info['rotation_deg']:.2f} deg, translation "
                                                + ", ".join(f"{v:.1f}" for v in info["translation_mm_xyz"])
                                                + " mm (LPS). Check it in the slice views; correct it with 'Inspect / correct'.")
        self._run("Registration failed.", job, self.ui.compareSummaryLabel)

    def onEditTransform(self) -> None:
        node = self.ui.compareTransformSelector.currentNode()
        if node is not None:
            slicer.app.openNodeModule(node)

    def onCompare(self) -> None:
        def job():
            pn = self._parameterNode()
            params = self.mainLogic.engineParams(pn) if pn is not None else DosimetryParams()
            roles = self.mainLogic.savedRoles(pn) if pn is not None else {}
            comp, self._differenceNode = self.logic.compare(
                self.ui.comparePlannedDoseSelector.currentNode(), self.ui.compareDeliveredDoseSelector.currentNode(),
                self.ui.compareSegmentationSelector.currentNode(), self.ui.compareTransformSelector.currentNode(), params, roles,
                self.ui.comparePlannedActivitySpinBox.value, self.ui.compareDeliveredActivitySpinBox.value, self._differenceNode)
            d = json_clean(comp.to_dict())
            self._fillCompareTable(compare_rows(d))
            self.ui.compareSummaryLabel.text = self._compareSummary(d)
        self._run("Comparison failed.", job, self.ui.compareSummaryLabel)

    def _fillCompareTable(self, rows) -> None:
        table = self.ui.compareTable
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                table.setItem(r, c, qt.QTableWidgetItem(text))

    @staticmethod
    def _compareSummary(d) -> str:
        parts = []
        if d.get("activity"):
            a = d["activity"]
            parts.append(f"activity {a['delivered_gbq']:.3f} vs {a['planned_gbq']:.3f} GBq ({a['difference_pct']:+.1f} %, {a['band']})")
        g = d.get("gamma") or {}
        if g.get("pass_rate_pct") is not None:
            parts.append(f"gamma {g['criteria']}: {g['pass_rate_pct']:.1f} % pass")
        parts += [f"Dice {x['level_gy']:g} Gy: {'n/a' if x['dice'] is None else format(x['dice'], '.3f')}" for x in d.get("isodose_dice", [])]
        return "; ".join(parts) + "".join(f"\nWarning: {w}" for w in d.get("warnings", []))
