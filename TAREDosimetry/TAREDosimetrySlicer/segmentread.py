"""A segmentation node as an engine Segmentation, each segment read on its own geometry.

Every segment's binary labelmap representation is read as it is stored
(``vtkMRMLSegmentationNode.GetBinaryLabelmapRepresentation``, as SegmentStatistics does): no
export through the segmentation's reference geometry (which would resample every segment onto
the SPECT or CT grid), no temporary MRML node, and the user's segmentation (its reference
geometry included) is never changed.  Segments that share a lattice (the usual case: one layer,
or layers on one geometry) are placed on the union of their extents without any resampling;
a segment on another lattice, or a segmentation under a non-linear transform, is resampled with
nearest neighbour onto the common lattice and a note says so (it reaches the result's warnings).
A linear parent transform is folded into the geometry (exact).
"""

import numpy as np
import vtk

import slicer

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.imaging.segmentation import Segmentation


def _matrixArray(vtkMatrix) -> np.ndarray:
    return slicer.util.arrayFromVTKMatrix(vtkMatrix)


class SegmentReading:
    """Mixed into the logic: :meth:`segmentationFromNode`."""

    @staticmethod
    def _segmentLabelmaps(segmentationNode, ids):
        """{segment ID: vtkOrientedImageData (0/1) in world (RAS) coordinates}, and notes."""
        import vtkSegmentationCorePython as vtkSegmentationCore

        segmentation = segmentationNode.GetSegmentation()
        labelmapName = vtkSegmentationCore.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
        if not segmentation.ContainsRepresentation(labelmapName):
            # Closed-surface segmentations (e.g. RT structures): the labelmap is made on the segmentation's
            # reference geometry, as Slicer does to show them in the slice views.
            segmentationNode.CreateBinaryLabelmapRepresentation()
        toWorld = vtk.vtkGeneralTransform()
        slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(segmentationNode.GetParentTransformNode(), None, toWorld)
        linear = vtk.vtkTransform()
        isLinear = vtkSegmentationCore.vtkOrientedImageDataResample.IsTransformLinear(toWorld, linear)
        images, notes = {}, []
        for segmentId in ids:
            image = vtkSegmentationCore.vtkOrientedImageData()
            if not segmentationNode.GetBinaryLabelmapRepresentation(segmentId, image):
                raise InputError(f"segment {segmentation.GetSegment(segmentId).GetName()!r} of '{segmentationNode.GetName()}' "
                                 "has no binary labelmap")
            if segmentationNode.GetParentTransformNode() is not None:
                if isLinear:
                    imageToNode = vtk.vtkMatrix4x4()
                    image.GetImageToWorldMatrix(imageToNode)
                    composed = mc.compose_ras(_matrixArray(linear.GetMatrix()), _matrixArray(imageToNode))
                    image.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(composed))
                else:
                    vtkSegmentationCore.vtkOrientedImageDataResample.TransformOrientedImage(image, toWorld)
            images[segmentId] = image
        if segmentationNode.GetParentTransformNode() is not None:
            notes.append(f"segmentation '{segmentationNode.GetName()}' is under the transform "
                         f"'{segmentationNode.GetParentTransformNode().GetName()}': "
                         + ("applied to its geometry (linear, exact)" if isLinear else
                            "segments resampled through it (non-linear, nearest neighbour)"))
        return images, notes

    @staticmethod
    def _commonLattice(images, names):
        """(reference segment ID, {segment ID: lattice offset or None}): the lattice most segments share."""
        matrices = {}
        for segmentId, image in images.items():
            m = vtk.vtkMatrix4x4()
            image.GetImageToWorldMatrix(m)
            matrices[segmentId] = _matrixArray(m)
        best, bestOffsets = None, {}
        for candidate in matrices:
            offsets = {s: mc.lattice_offset(matrices[candidate], m) for s, m in matrices.items()}
            if best is None or sum(o is not None for o in offsets.values()) > sum(o is not None for o in bestOffsets.values()):
                best, bestOffsets = candidate, offsets
        return best, bestOffsets, matrices

    @staticmethod
    def _effectiveExtent(image):
        import vtkSegmentationCorePython as vtkSegmentationCore

        extent = [0, -1, 0, -1, 0, -1]
        if not vtkSegmentationCore.vtkOrientedImageDataResample.CalculateEffectiveExtent(image, extent):
            return (0, -1, 0, -1, 0, -1)
        return tuple(int(v) for v in extent)

    @staticmethod
    def _resampleOnto(image, referenceMatrix, notes, name):
        """The segment resampled (nearest neighbour) onto the reference lattice, covering its own bounds."""
        import vtkSegmentationCorePython as vtkSegmentationCore

        reference = vtkSegmentationCore.vtkOrientedImageData()
        reference.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(referenceMatrix))
        reference.SetExtent(0, -1, 0, -1, 0, -1)
        out = vtkSegmentationCore.vtkOrientedImageData()
        vtkSegmentationCore.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            image, reference, out, False, True)  # nearest neighbour; pad the reference to hold the segment
        notes.append(f"segment {name!r} lies on another voxel lattice than the other segments: resampled onto theirs "
                     "(nearest neighbour) for the calculation")
        return out

    def segmentationFromNode(self, segmentationNode, progress=None) -> Segmentation:
        """Engine Segmentation of a segmentation node: one mask per segment (overlaps kept) on the
        segments' own lattice, cropped to the union of their voxels.  ``progress(fraction, message)``
        is called per segment (it may raise to cancel)."""
        segmentation = segmentationNode.GetSegmentation()
        ids = self._segmentIds(segmentationNode)
        if not ids:
            raise InputError(f"segmentation '{segmentationNode.GetName()}' has no segments")
        names = [segmentation.GetSegment(i).GetName() for i in ids]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"segment names must be unique; repeated: {', '.join(dup)}")
        images, notes = self._segmentLabelmaps(segmentationNode, ids)
        extents = {s: self._effectiveExtent(images[s]) for s in ids}
        painted = [s for s in ids if min(mc.extent_shape(extents[s])) > 0]
        if not painted:
            raise InputError(f"every segment of '{segmentationNode.GetName()}' is empty: paint or import the segments first")
        # Empty segments have no voxels to place (and may carry no geometry): the engine refuses them by name.
        reference, offsets, matrices = self._commonLattice({s: images[s] for s in painted}, names)
        for segmentId, name in zip(ids, names):
            if segmentId in painted and offsets[segmentId] is None:
                images[segmentId] = self._resampleOnto(images[segmentId], matrices[reference], notes, name)
                extents[segmentId] = self._effectiveExtent(images[segmentId])
        # Extents of segments on the reference lattice, in the reference's voxel indices.
        shifted = {}
        for s in painted:
            m = vtk.vtkMatrix4x4()
            images[s].GetImageToWorldMatrix(m)
            d = mc.lattice_offset(matrices[reference], _matrixArray(m))
            e = extents[s]
            shifted[s] = (e[0] + d[0], e[1] + d[0], e[2] + d[1], e[3] + d[1], e[4] + d[2], e[5] + d[2])
        union = mc.union_extent(shifted.values())
        grid = mc.grid_from_image_to_world(matrices[reference], union)
        masks, colors, segIds = {}, {}, {}
        for n, (segmentId, name) in enumerate(zip(ids, names)):
            if progress is not None:
                progress(n / len(ids), f"reading segment {name}")
            if segmentId in painted:
                masks[name] = self._maskOnUnion(images[segmentId], extents[segmentId], shifted[segmentId], union)
            else:
                masks[name] = np.zeros(mc.extent_shape(union), dtype=bool)
            colors[name] = tuple(segmentation.GetSegment(segmentId).GetColor())
            segIds[name] = segmentId
        seg = Segmentation.from_masks(masks, grid, colors=colors, ids=segIds, source=segmentationNode.GetName())
        seg.notes.extend(notes)
        return seg

    @staticmethod
    def _maskOnUnion(image, ownExtent, shiftedExtent, union):
        """The segment's voxels (its effective extent) placed in a bool array of the union extent."""
        from vtk.util import numpy_support

        if min(mc.extent_shape(ownExtent)) == 0:
            return np.zeros(mc.extent_shape(union), dtype=bool)
        full = image.GetExtent()
        nx, ny = full[1] - full[0] + 1, full[3] - full[2] + 1
        nz = full[5] - full[4] + 1
        array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(nz, ny, nx)
        i0, i1, j0, j1, k0, k1 = ownExtent
        own = array[k0 - full[4]:k1 - full[4] + 1, j0 - full[2]:j1 - full[2] + 1, i0 - full[0]:i1 - full[0] + 1] != 0
        return mc.place_in_extent(own, shiftedExtent, union)
