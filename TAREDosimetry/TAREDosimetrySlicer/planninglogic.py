"""MRML glue of the Plan and Compare sections: nodes -> engine planning and comparison -> nodes.

Every number comes from the engine (``TAREDosimetryLib.planning``): the MAA case computed once at
1 GBq and scaled (``PlanExplorer``), the registration (``planning.registration``) and the
comparison (``planning.compare``).  This class only converts nodes (with the main logic's
``volumeFromNode`` / ``segmentationFromNode``), writes transforms and volumes back, and colours
segments.  Transforms: the engine's registration maps planning points to post-treatment points
(ITK's convention); it is stored as the *TransformFromParent* of a linear transform node, and the
post-treatment nodes are placed under that node, so the user sees them aligned with the planning
images and can correct the transform in the Transforms module; Compare reads the (corrected) matrix
back (``mrmlconvert.ras_matrix_from_lps`` / ``lps_matrix_from_ras`` convert RAS and LPS).
"""

import json

import numpy as np
import vtk

import slicer

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.planning.compare import compare_doses
from TAREDosimetryLib.planning.imageplan import case_lsf, voxel_model_from_images
from TAREDosimetryLib.planning.interactive import PlanExplorer
from TAREDosimetryLib.planning.lsf import LsfEstimate
from TAREDosimetryLib.planning.plan import closed_form_models
from TAREDosimetryLib.planning.registration import matrix_lps, rigid_register, transform_from_matrix_lps

#: Node attribute listing the segment IDs the Plan section coloured (restored on request).
PLAN_COLORED_ATTRIBUTE = "TAREDosimetry.PlanColoredSegmentIDs"
DIFFERENCE_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"


class PlanningLogic:
    """Plan and Compare on nodes; ``mainLogic`` is the module's TAREDosimetryLogic (node conversions)."""

    def __init__(self, mainLogic):
        self.main = mainLogic
        self.explorer = None
        self.choice = None
        self._segmentIds = {}

    # -- plan --------------------------------------------------------------------------------
    def lsfFromSegments(self, activityNode, segmentationNode, roles):
        """LsfEstimate from the MAA SPECT counts in the segments with roles lung and liver."""
        if activityNode is None or segmentationNode is None:
            raise InputError("select the MAA SPECT and the segmentation in Inputs first")
        spect = self.main.volumeFromNode(activityNode, unit="counts")
        seg = self.main.segmentationFromNode(segmentationNode)
        return case_lsf(spect, seg, roles, None, "images")

    def plan(self, activityNode, segmentationNode, ctNode, params, roles, prescription, modelName="voxel", device="glass", progress=None):
        """Compute the MAA case once at 1 GBq, build the chosen model, find the recommended activity.

        Returns the :class:`PlanExplorer` (kept as ``self.explorer``) and the ActivityChoice."""
        if activityNode is None or segmentationNode is None:
            raise InputError("select the MAA SPECT and the segmentation in Inputs first")
        spect = self.main.volumeFromNode(activityNode, unit="counts")
        seg = self.main.segmentationFromNode(segmentationNode)
        ct = self.main.volumeFromNode(ctNode, unit="HU") if ctNode is not None else None
        lsf = LsfEstimate(params.lung_shunt_fraction or 0.0, "given (panel)")
        model, inputs, p = voxel_model_from_images(spect, seg, params, roles=roles, ct=ct, rules=prescription.case_rules, lsf=lsf,
                                                   progress=progress)
        if modelName != "voxel":
            skipped = {}
            models = closed_form_models(inputs, p, prescription, (modelName,), skipped)
            if modelName not in models:
                raise InputError(f"{modelName} model: {skipped.get(modelName, 'not available with these inputs')}")
            model = models[modelName]
        self.explorer = PlanExplorer(model, prescription)
        self.choice = self.explorer.recommend()
        self._segmentIds = {s.name: s.segment_id for s in model.base.segments} if modelName == "voxel" else {}
        return self.explorer, self.choice

    def step(self, activityGBq):
        if self.explorer is None:
            raise InputError("compute a plan first")
        return self.explorer.step(activityGBq)

    def showStepColors(self, segmentationNode, step) -> list:
        """Green/red override colours of the segments with evaluated rules at this step; returns the IDs coloured."""
        if segmentationNode is None or not self._segmentIds:
            return []
        if segmentationNode.GetDisplayNode() is None:
            segmentationNode.CreateDefaultDisplayNodes()
        display = segmentationNode.GetDisplayNode()
        seg = segmentationNode.GetSegmentation()
        colored = []
        for name, status in step.segment_status.items():
            for token in str(self._segmentIds.get(name, "")).split(","):
                segmentId = token.strip() if seg.GetSegment(token.strip()) is not None else seg.GetSegmentIdBySegmentName(token.strip())
                if segmentId and seg.GetSegment(segmentId) is not None:
                    display.SetSegmentOverrideColor(segmentId, *(mc.PASS_COLOR if status == "PASS" else mc.FAIL_COLOR))
                    colored.append(segmentId)
        segmentationNode.SetAttribute(PLAN_COLORED_ATTRIBUTE, json.dumps(sorted(set(colored))))
        return colored

    @staticmethod
    def restoreStepColors(segmentationNode) -> None:
        if segmentationNode is None or segmentationNode.GetDisplayNode() is None:
            return
        try:
            colored = json.loads(segmentationNode.GetAttribute(PLAN_COLORED_ATTRIBUTE) or "[]")
        except ValueError:
            colored = []
        seg = segmentationNode.GetSegmentation()
        for segmentId in colored:
            if seg.GetSegment(segmentId) is not None:
                segmentationNode.GetDisplayNode().UnsetSegmentOverrideColor(segmentId)
        segmentationNode.SetAttribute(PLAN_COLORED_ATTRIBUTE, "[]")

    # -- registration --------------------------------------------------------------------------
    @staticmethod
    def _checkTop(node, what):
        if node is not None and node.GetParentTransformNode() is not None:
            raise InputError(f"{what} '{node.GetName()}' is under a transform: the planning frame must be the scene's frame")

    def register(self, fixedNode, movingNode, transformNode, alsoMove=()):
        """Rigid registration of ``movingNode`` (post-treatment) to ``fixedNode`` (planning) into
        ``transformNode``; the moving node and ``alsoMove`` (e.g. the delivered dose) are placed under it."""
        if fixedNode is None or movingNode is None or transformNode is None:
            raise InputError("select the planning image, the post-treatment image and a transform (or create one)")
        self._checkTop(fixedNode, "planning image")
        self._checkTop(transformNode, "registration transform")
        fixed = self.main.volumeFromNode(fixedNode)
        moving = self.main.volumeFromNode(movingNode)  # its own geometry: a parent transform is not applied
        tfm, info = rigid_register(fixed, moving)
        transformNode.SetMatrixTransformFromParent(slicer.util.vtkMatrixFromArray(mc.ras_matrix_from_lps(matrix_lps(tfm))))
        for node in (movingNode,) + tuple(n for n in alsoMove if n is not None):
            node.SetAndObserveTransformNodeID(transformNode.GetID())
        slicer.util.setSliceViewerLayers(background=fixedNode, foreground=movingNode, foregroundOpacity=0.5)
        return info

    @staticmethod
    def transformOf(transformNode):
        """The engine transform (planning -> post-treatment, LPS) of a linear transform node, or None."""
        if transformNode is None:
            return None
        if transformNode.GetParentTransformNode() is not None:
            raise InputError(f"registration transform '{transformNode.GetName()}' is under another transform; harden it first")
        matrix = vtk.vtkMatrix4x4()
        if not transformNode.GetMatrixTransformFromParent(matrix):
            raise InputError(f"transform '{transformNode.GetName()}' is not linear")
        return transform_from_matrix_lps(mc.lps_matrix_from_ras(slicer.util.arrayFromVTKMatrix(matrix)))

    # -- comparison ----------------------------------------------------------------------------
    def compare(self, plannedNode, deliveredNode, segmentationNode, transformNode, params, roles, plannedGBq=None, deliveredGBq=None,
                differenceNode=None):
        """(Comparison, difference volume node): the delivered dose mapped onto the planning segments."""
        if plannedNode is None or deliveredNode is None or segmentationNode is None:
            raise InputError("select the predicted dose, the delivered dose and the planning segments")
        self._checkTop(plannedNode, "predicted dose")
        self._checkTop(segmentationNode, "planning segments")
        planned = self.main.volumeFromNode(plannedNode, unit="Gy")
        delivered = self.main.volumeFromNode(deliveredNode, unit="Gy")
        seg = self.main.segmentationFromNode(segmentationNode)
        comp = compare_doses(planned, delivered, seg, params, transform=self.transformOf(transformNode), roles=roles,
                             planned_activity_gbq=plannedGBq or None, delivered_activity_gbq=deliveredGBq or None,
                             registration={"method": f"transform node {transformNode.GetName()}" if transformNode else "none (same frame)"})
        return comp, self.differenceVolumeNode(comp.difference_gy, differenceNode)

    @staticmethod
    def differenceVolumeNode(differenceGy, node=None):
        """Write the dose difference (delivered - predicted, Gy) into a volume node with a diverging colour map."""
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", slicer.mrmlScene.GenerateUniqueName("dose difference (Gy)"))
        slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(differenceGy.array, dtype=np.float32))
        node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(mc.ijk_to_ras_from_grid(differenceGy.grid)))
        node.SetAttribute("TAREDosimetry.Unit", "Gy")
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        if slicer.mrmlScene.GetNodeByID(DIFFERENCE_COLOR_NODE_ID) is not None:
            display.SetAndObserveColorNodeID(DIFFERENCE_COLOR_NODE_ID)
        bound = float(np.nanpercentile(np.abs(differenceGy.array), 99.5)) or 1.0
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(-bound, bound)
        slicer.util.setSliceViewerLayers(foreground=node, foregroundOpacity=0.5)
        return node
