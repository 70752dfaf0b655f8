"""A case's files into the scene: images and segments read by the engine's own readers.

Images (NIfTI, NRRD, MHA, **DICOM series folders**) are read with
``TAREDosimetryLib.imaging.images.read_image`` and segments (.seg.nrrd, label maps with their label
table, mask folders) with ``TAREDosimetryLib.imaging.segmentation_io.read_segmentation``, exactly as
the command line reads them; each segment enters the segmentation node on its file's own voxel
lattice (a binary labelmap per segment, overlaps kept), without temporary nodes and without a
reference geometry that would resample it.  Mixed into ``TAREDosimetryLogic``.
"""

import os

import numpy as np
import vtk

import slicer

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib.errors import InputError


class CaseLoading:
    """Create the case's segmentation node, import segments, load a case from files and run it."""

    @staticmethod
    def ensureSegmentationNode(pn):
        """The parameter node's segmentation, created when missing.  No reference geometry is set: imported
        segments keep their own grid (the Segment Editor sets one from its source volume when painting)."""
        if pn.segmentation is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", slicer.mrmlScene.GenerateUniqueName("TARE segments"))
            node.CreateDefaultDisplayNodes()
            pn.segmentation = node
        return pn.segmentation

    @staticmethod
    def _orientedMask(mask, grid):
        """vtkOrientedImageData (uint8 0/1) of a (z, y, x) mask, cropped to its voxels, on the grid's lattice."""
        from vtk.util import numpy_support

        import vtkSegmentationCorePython as vtkSegmentationCore

        image = vtkSegmentationCore.vtkOrientedImageData()
        image.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(mc.ijk_to_ras_from_grid(grid)))
        nonzero = [np.flatnonzero(np.any(mask, axis=axes)) for axes in ((0, 1), (0, 2), (1, 2))]  # x, y, z
        if any(ix.size == 0 for ix in nonzero):
            image.SetExtent(0, -1, 0, -1, 0, -1)
            return image
        (i0, i1), (j0, j1), (k0, k1) = ((int(ix[0]), int(ix[-1])) for ix in nonzero)
        image.SetExtent(i0, i1, j0, j1, k0, k1)
        crop = np.ascontiguousarray(mask[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1], dtype=np.uint8)
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(crop.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
        return image

    def addEngineSegments(self, segmentation, segmentationNode) -> list:
        """Add every segment of an engine Segmentation to the node (name, colour, its own lattice)."""
        import vtkSegmentationCorePython as vtkSegmentationCore

        target = segmentationNode.GetSegmentation()
        labelmapName = vtkSegmentationCore.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
        if target.GetNumberOfSegments() and target.GetSourceRepresentationName() != labelmapName:
            raise InputError(f"segments can only be added to '{segmentationNode.GetName()}' when its source representation "
                             "is a binary labelmap (Segmentations module)")
        added = []
        for info in segmentation.segments:
            segment = vtkSegmentationCore.vtkSegment()
            segment.SetName(info.name)
            segment.SetColor(*info.color)
            segment.AddRepresentation(labelmapName, self._orientedMask(segmentation.mask(info), segmentation.grid))
            target.AddSegment(segment, target.GenerateUniqueSegmentID(str(info.segment_id or info.name)))
            added.append(info.name)
        return added

    def importSegments(self, path: str, segmentationNode, labelNames=None) -> list:
        """Add segments from a .seg.nrrd, a label map (one segment per label; ``labelNames``: anything the
        engine's ``labels.parse_label_names`` reads) or a folder of masks.  Returns the names added."""
        from TAREDosimetryLib.imaging.segmentation_io import read_segmentation

        segmentation = read_segmentation(path, label_names=labelNames)
        return self.addEngineSegments(segmentation, segmentationNode)

    def segmentationNodeFromEngine(self, segmentation, name: str):
        """A new segmentation node holding an engine Segmentation."""
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", slicer.mrmlScene.GenerateUniqueName(name))
        node.CreateDefaultDisplayNodes()
        self.addEngineSegments(segmentation, node)
        return node

    @staticmethod
    def volumeNodeFromEngine(volume, name: str):
        """A new scalar volume node with an engine Volume's voxels and geometry."""
        return slicer.util.addVolumeFromArray(np.ascontiguousarray(volume.array, dtype=np.float32),
                                              ijkToRAS=mc.ijk_to_ras_from_grid(volume.grid), name=slicer.mrmlScene.GenerateUniqueName(name))

    def loadImageNode(self, path: str, what: str):
        """A file or DICOM series folder read by the engine's reader, as a new volume node."""
        from TAREDosimetryLib.imaging.images import read_image, strip_image_suffix

        return self.volumeNodeFromEngine(read_image(path, what), strip_image_suffix(os.path.basename(os.path.normpath(path))))

    def runFromFiles(self, activityPath: str, segmentationPath: str, ctPath: str = None, params=None, roles=None,
                     rules=None, outDir: str = None, labelNames=None, report: bool = True, overwrite: bool = False,
                     keepNodes: bool = False, progress=None, caseName: str = ""):
        """Load a case (files or DICOM folders) into the scene, run it, write the engine's outputs into ``outDir``.

        Nodes created here are removed afterwards unless ``keepNodes``.  Returns the CaseResult."""
        from TAREDosimetryLib.imaging.segmentation_io import read_segmentation

        created = []
        try:
            activityNode = self.loadImageNode(activityPath, "SPECT/PET image")
            created.append(activityNode)
            ctNode = self.loadImageNode(ctPath, "CT image") if ctPath else None
            created.append(ctNode)
            segNode = self.segmentationNodeFromEngine(read_segmentation(segmentationPath, label_names=labelNames), "TARE segments")
            created.append(segNode)
            outputs = {}
            result = self.run(activityNode, segNode, ctNode=ctNode, params=params, roles=roles, rules=rules, outputs=outputs,
                              progress=progress, show=keepNodes and slicer.app.layoutManager() is not None, caseName=caseName,
                              group=keepNodes)
            if not keepNodes:
                created += [n for n in outputs.values() if n is not None]
            if outDir:
                self.exportResults(result, outDir, report=report and self.ensureReportDependencies(askUser=False),
                                   overwrite=overwrite, inputs=self.lastInputs)
            return result
        finally:
            if not keepNodes:
                for node in created:
                    self._removeWithChildren(node)
