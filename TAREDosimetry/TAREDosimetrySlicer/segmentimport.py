"""Segments into a segmentation node: from a .seg.nrrd, a label map (one segment per label) or a folder of masks.

Mixed into ``TAREDosimetryLogic``.
"""

import os

import numpy as np

import slicer

from TAREDosimetryLib.errors import InputError


class SegmentImport:
    """Create the case's segmentation node and import segments into it."""

    @staticmethod
    def ensureSegmentationNode(pn):
        """The parameter node's segmentation, created (geometry from CT or SPECT) when missing."""
        if pn.segmentation is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "TARE segments")
            node.CreateDefaultDisplayNodes()
            reference = pn.ctVolume or pn.activityVolume
            if reference is not None:
                node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
            pn.segmentation = node
        return pn.segmentation

    def importSegments(self, path: str, segmentationNode, labelNames=None) -> list:
        """Add segments from a .seg.nrrd, a label map (one segment per label) or a folder of masks.

        labelNames : label names for label maps, anything the engine's ``io.parse_label_names``
            reads ({value: name}, 'v=name,v=name', a JSON file, 'totalsegmentator'); default names
            are 'label N', as the engine's own reader gives them.
        Returns the names of the segments added.
        """
        from TAREDosimetryLib.imaging.images import strip_image_suffix
        from TAREDosimetryLib.imaging.labels import parse_label_names

        labelNames = parse_label_names(labelNames)
        if os.path.isdir(path):
            added = []
            files = sorted(f for f in os.listdir(path) if f.lower().endswith((".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")))
            if not files:
                raise InputError(f"folder {path} holds no mask images (.nrrd, .nii, .nii.gz, .mha, .mhd)")
            for f in files:
                added += self._importLabelmapFile(os.path.join(path, f), segmentationNode, binary=True,
                                                  names={1: strip_image_suffix(f)})
            return added
        if not os.path.isfile(path):
            raise InputError(f"segmentation file not found: {path}")
        if path.lower().endswith(".seg.nrrd"):
            loaded = slicer.util.loadSegmentation(path)
            try:
                before = set(self._segmentIds(segmentationNode))
                for segmentId in self._segmentIds(loaded):
                    segmentationNode.GetSegmentation().CopySegmentFromSegmentation(loaded.GetSegmentation(), segmentId)
                return [segmentationNode.GetSegmentation().GetSegment(i).GetName()
                        for i in self._segmentIds(segmentationNode) if i not in before]
            finally:
                self._removeWithChildren(loaded)
        return self._importLabelmapFile(path, segmentationNode, binary=False, names=labelNames)

    def _importLabelmapFile(self, path: str, segmentationNode, binary: bool, names=None) -> list:
        # singleFile: a mask among similarly named files is not read as one image series; show: views untouched.
        labelNode = slicer.util.loadLabelVolume(path, {"singleFile": True, "show": False})
        try:
            array = slicer.util.arrayFromVolume(labelNode)
            if binary:
                array[:] = array != 0
                slicer.util.arrayFromVolumeModified(labelNode)
            values = [int(v) for v in np.unique(array) if v != 0]
            if not values:
                raise InputError(f"{path} holds no labelled voxels")
            before = set(self._segmentIds(segmentationNode))
            if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelNode, segmentationNode):
                raise InputError(f"label map {path} could not be imported")
            newIds = [i for i in self._segmentIds(segmentationNode) if i not in before]
            added = []
            # New segments come in increasing label order, one per label value.
            for value, segmentId in zip(values, newIds):
                name = (names or {}).get(value, f"label {value}")
                segmentationNode.GetSegmentation().GetSegment(segmentId).SetName(name)
                added.append(name)
            return added
        finally:
            self._removeWithChildren(labelNode)
