"""MRML nodes to engine objects: volumes and segmentations as engine Volumes (LPS) and Segmentations.

Mixed into ``TAREDosimetryLogic``; every method works on nodes of the current scene.
"""

import numpy as np
import vtk

import slicer

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.imaging.segmentation import Segmentation
from TAREDosimetryLib.volume import Volume


class NodeConversion:
    """Nodes -> engine objects, and removal of temporary nodes with what only they use."""

    @staticmethod
    def _checkNoTransform(node, what: str) -> None:
        if node is not None and node.GetParentTransformNode() is not None:
            raise InputError(f"{what} '{node.GetName()}' is under a transform; harden the transform (Data module) before computing dose")

    @staticmethod
    def volumeFromNode(volumeNode, name: str = "", unit: str = "") -> Volume:
        """An engine Volume (LPS) with a float32 copy of the node's voxels."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise InputError(f"volume {name or '(none)'} has no image data")
        array = np.array(slicer.util.arrayFromVolume(volumeNode), dtype=np.float32, copy=True)
        if array.ndim != 3:
            raise InputError(f"volume '{volumeNode.GetName()}' must be a 3-D scalar volume, got array shape {array.shape}")
        grid = NodeConversion._gridOfNode(volumeNode, array.shape)
        return Volume(array, grid=grid, name=name or volumeNode.GetName(), unit=unit)

    @staticmethod
    def _gridOfNode(volumeNode, shape):
        """Engine Grid (LPS) of a volume node whose voxel array has ``shape`` (k, j, i)."""
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        return mc.grid_from_ijk_to_ras(slicer.util.arrayFromVTKMatrix(ijkToRas), shape)

    @staticmethod
    def segmentNames(segmentationNode) -> list:
        seg = segmentationNode.GetSegmentation()
        return [seg.GetSegment(seg.GetNthSegmentID(i)).GetName() for i in range(seg.GetNumberOfSegments())]

    @staticmethod
    def _segmentIds(segmentationNode) -> list:
        seg = segmentationNode.GetSegmentation()
        return [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]

    def segmentationFromNode(self, segmentationNode) -> Segmentation:
        """Engine Segmentation: one mask per segment (overlaps kept) on the segmentation's own
        geometry, cropped to the union of all segments."""
        import vtkSegmentationCorePython as vtkSegmentationCore

        seg = segmentationNode.GetSegmentation()
        ids = self._segmentIds(segmentationNode)
        if not ids:
            raise InputError(f"segmentation '{segmentationNode.GetName()}' has no segments")
        names = [seg.GetSegment(i).GetName() for i in ids]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"segment names must be unique; repeated: {', '.join(dup)}")
        idArray = vtk.vtkStringArray()
        for i in ids:
            idArray.InsertNextValue(i)
        # A merged labelmap only fixes the common geometry (union of the segments); each mask is
        # then exported on it separately so that overlapping segments stay whole.
        geometryNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__TAREDosimetry_geometry__")
        try:
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentationNode, idArray, geometryNode, None, vtkSegmentationCore.vtkSegmentation.EXTENT_UNION_OF_EFFECTIVE_SEGMENTS
            ):
                raise InputError(f"segments of '{segmentationNode.GetName()}' could not be exported as a label map")
            shape = slicer.util.arrayFromVolume(geometryNode).shape
            grid = self._gridOfNode(geometryNode, shape)
            masks, colors, segIds = {}, {}, {}
            for segmentId, name in zip(ids, names):
                mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, geometryNode)
                if mask.shape != shape:
                    raise InputError(f"segment {name!r}: exported mask shape {mask.shape} differs from the common geometry {shape}")
                masks[name] = mask != 0
                colors[name] = tuple(seg.GetSegment(segmentId).GetColor())
                segIds[name] = segmentId
        finally:
            # The export made a colour table of its own for this label map: remove it with the node.
            if geometryNode.GetDisplayNode() and geometryNode.GetDisplayNode().GetColorNode():
                slicer.mrmlScene.RemoveNode(geometryNode.GetDisplayNode().GetColorNode())
            self._removeWithChildren(geometryNode)
        return Segmentation.from_masks(masks, grid, colors=colors, ids=segIds, source=segmentationNode.GetName())

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
