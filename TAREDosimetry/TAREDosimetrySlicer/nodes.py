"""MRML nodes to engine objects: volumes as engine Volumes (LPS), the candidates for the SPECT/PET
selector, and removal of temporary nodes with what only they use.

Mixed into ``TAREDosimetryLogic``; every method works on nodes of the current scene.  Segmentations
are read in :mod:`.segmentread`.
"""

import numpy as np
import vtk

import slicer

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.volume import Volume


class NodeConversion:
    """Nodes -> engine objects, and removal of temporary nodes with what only they use."""

    @staticmethod
    def transformNote(node, what: str) -> str:
        """'' for a node in world coordinates, else how its parent transform is taken into account."""
        parent = node.GetParentTransformNode() if node is not None else None
        if parent is None:
            return ""
        how = "applied to its geometry (linear, exact)" if parent.IsTransformToWorldLinear() else \
            "applied by resampling a hardened copy (non-linear)"
        return f"{what} '{node.GetName()}' is under the transform '{parent.GetName()}': {how}"

    def volumeFromNode(self, volumeNode, name: str = "", unit: str = "") -> Volume:
        """An engine Volume (LPS, world coordinates) with a float32 copy of the node's voxels.

        A parent transform is used, never refused: a linear one is folded into the geometry (no
        resampling); a non-linear one is applied to a hardened copy (removed afterwards)."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise InputError(f"volume {name or '(none)'} has no image data")
        parent = volumeNode.GetParentTransformNode()
        if parent is not None and not parent.IsTransformToWorldLinear():
            return self._volumeFromHardenedCopy(volumeNode, name, unit)
        array = np.array(slicer.util.arrayFromVolume(volumeNode), dtype=np.float32, copy=True)
        if array.ndim != 3:
            raise InputError(f"volume '{volumeNode.GetName()}' must be a 3-D scalar volume, got array shape {array.shape}")
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        m = slicer.util.arrayFromVTKMatrix(ijkToRas)
        if parent is not None:
            toWorld = vtk.vtkMatrix4x4()
            parent.GetMatrixTransformToWorld(toWorld)
            m = mc.compose_ras(slicer.util.arrayFromVTKMatrix(toWorld), m)
        grid = mc.grid_from_ijk_to_ras(m, array.shape)
        return Volume(array, grid=grid, name=name or volumeNode.GetName(), unit=unit)

    def _volumeFromHardenedCopy(self, volumeNode, name, unit):
        clone = slicer.modules.volumes.logic().CloneVolume(slicer.mrmlScene, volumeNode, "__TAREDosimetry_hardened__")
        try:
            clone.SetAndObserveTransformNodeID(volumeNode.GetParentTransformNode().GetID())
            if not slicer.vtkSlicerTransformLogic.hardenTransform(clone):
                raise InputError(f"the transform of '{volumeNode.GetName()}' could not be applied; harden it in the Data module")
            return self.volumeFromNode(clone, name=name or volumeNode.GetName(), unit=unit)
        finally:
            self._removeWithChildren(clone)

    @staticmethod
    def segmentNames(segmentationNode) -> list:
        seg = segmentationNode.GetSegmentation()
        return [seg.GetSegment(seg.GetNthSegmentID(i)).GetName() for i in range(seg.GetNumberOfSegments())]

    @staticmethod
    def _segmentIds(segmentationNode) -> list:
        seg = segmentationNode.GetSegmentation()
        return [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]

    @staticmethod
    def activityCandidates() -> list:
        """Scalar volumes of the scene as ``panel.pick_activity_volume`` candidates (DICOM modality from
        the subject hierarchy; label maps, dose volumes and this module's outputs excluded)."""
        from .outputnodes import DOSE_VOLUME_ATTRIBUTE, OUTPUT_ROLE_ATTRIBUTE

        shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
        out = []
        for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            item = shNode.GetItemByDataNode(node) if shNode else 0
            modality = shNode.GetItemAttribute(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMSeriesModalityAttributeName()) if item else ""
            excluded = (node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetAttribute(DOSE_VOLUME_ATTRIBUTE) is not None
                        or node.GetAttribute(OUTPUT_ROLE_ATTRIBUTE) is not None)
            out.append({"id": node.GetID(), "name": node.GetName(), "modality": modality or "", "excluded": excluded})
        return out

    @staticmethod
    def _removeWithChildren(node) -> None:
        """Remove a node with the nodes only it uses: its display nodes (colour legend and volume
        rendering included), its storage node and, for a chart, its plot series.  vtkMRMLScene.RemoveNode
        alone leaves them in the scene."""
        if node is None or not slicer.mrmlScene.IsNodePresent(node):
            return
        dependents = []
        if node.IsA("vtkMRMLPlotChartNode"):
            dependents += [node.GetNthPlotSeriesNode(i) for i in range(node.GetNumberOfPlotSeriesNodes())]
        if node.IsA("vtkMRMLDisplayableNode"):
            dependents += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        if node.IsA("vtkMRMLStorableNode"):
            dependents.append(node.GetStorageNode())
        slicer.mrmlScene.RemoveNode(node)
        for dependent in dependents:
            if dependent is not None and slicer.mrmlScene.IsNodePresent(dependent):
                slicer.mrmlScene.RemoveNode(dependent)
