"""Stand-ins for the parts of 3D Slicer the module's glue uses, for tests without Slicer.

Real VTK (``vtk``) is used; ``slicer``, ``qt`` and ``vtkSegmentationCorePython`` are small Python
stand-ins that behave as the Slicer source does for the calls the glue makes (each call is checked
against Slicer's source in docs/slicer_api_check.md).  ``install(monkeypatch)`` puts them in
``sys.modules`` and imports ``TAREDosimetry`` (the module file) with them.
"""

import contextlib
import importlib
import os
import sys
import types

import numpy as np
import vtk
from vtk.util import numpy_support

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE_DIR = os.path.join(ROOT, "TAREDosimetry")


def _matrix_array(m):
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _vtk_matrix(a):
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r][c]))
    return m


# -- vtkSegmentationCore ----------------------------------------------------------------------------

class vtkOrientedImageData(vtk.vtkImageData):
    """vtkImageData with an ImageToWorld matrix (absolute voxel index -> RAS), as vtkOrientedImageData."""

    def __init__(self):
        super().__init__()
        self._m = np.eye(4)

    def SetImageToWorldMatrix(self, m):
        self._m = _matrix_array(m)

    def GetImageToWorldMatrix(self, m):
        m.DeepCopy(_vtk_matrix(self._m))

    def copy_from(self, other):
        self.DeepCopy(other)
        self._m = other._m.copy()


def image_from_mask(mask_zyx, image_to_world, extent_start=(0, 0, 0)):
    """A stand-in oriented image holding a (z, y, x) mask whose first voxel has index ``extent_start``."""
    nz, ny, nx = mask_zyx.shape
    i0, j0, k0 = extent_start
    image = vtkOrientedImageData()
    image.SetExtent(i0, i0 + nx - 1, j0, j0 + ny - 1, k0, k0 + nz - 1)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(mask_zyx, np.uint8).ravel(), deep=True))
    image.SetImageToWorldMatrix(_vtk_matrix(image_to_world))
    return image


def image_array(image):
    e = image.GetExtent()
    shape = (e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
    if min(shape) <= 0:
        return np.zeros((0, 0, 0), np.uint8)
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)


class vtkOrientedImageDataResample:
    calls = []

    @staticmethod
    def CalculateEffectiveExtent(image, extent, threshold=0.0):
        a = image_array(image)
        if a.size == 0 or not np.any(a > threshold):
            extent[:] = [0, -1, 0, -1, 0, -1]
            return False
        e = image.GetExtent()
        nz = np.flatnonzero(np.any(a > threshold, axis=(1, 2)))
        ny = np.flatnonzero(np.any(a > threshold, axis=(0, 2)))
        nx = np.flatnonzero(np.any(a > threshold, axis=(0, 1)))
        extent[:] = [e[0] + nx[0], e[0] + nx[-1], e[2] + ny[0], e[2] + ny[-1], e[4] + nz[0], e[4] + nz[-1]]
        return True

    @staticmethod
    def IsTransformLinear(transform, linear):
        linear.Identity()
        return True

    @staticmethod
    def TransformOrientedImage(image, transform, *args):
        raise AssertionError("no non-linear transform in these tests")

    @staticmethod
    def ResampleOrientedImageToReferenceOrientedImage(image, reference, output, linear=False, pad=False, *args):
        """Nearest neighbour onto the reference lattice, the output covering the input's bounds (pad)."""
        vtkOrientedImageDataResample.calls.append("resample")
        src = image_array(image)
        e = image.GetExtent()
        ref = reference._m
        corners = np.array([[i, j, k, 1.0] for i in (e[0] - 0.5, e[1] + 0.5) for j in (e[2] - 0.5, e[3] + 0.5) for k in (e[4] - 0.5, e[5] + 0.5)])
        idx = (np.linalg.inv(ref) @ (image._m @ corners.T)).T[:, :3]
        lo, hi = np.ceil(idx.min(axis=0) - 1e-6).astype(int), np.floor(idx.max(axis=0) + 1e-6).astype(int)
        kk, jj, ii = np.meshgrid(*(np.arange(lo[a], hi[a] + 1) for a in (2, 1, 0)), indexing="ij")
        pts = np.stack([ii.ravel(), jj.ravel(), kk.ravel(), np.ones(ii.size)])
        src_idx = np.rint((np.linalg.inv(image._m) @ (ref @ pts))[:3]).astype(int)
        inside = np.all((src_idx >= np.array(e[0::2])[:, None]) & (src_idx <= np.array(e[1::2])[:, None]), axis=0)
        values = np.zeros(ii.size, np.uint8)
        s = src_idx[:, inside] - np.array(e[0::2])[:, None]
        values[inside] = src[s[2], s[1], s[0]]
        result = image_from_mask(values.reshape(ii.shape), ref, tuple(lo))
        output.copy_from(result)
        return True


class vtkSegmentationConverter:
    @staticmethod
    def GetSegmentationBinaryLabelmapRepresentationName():
        return "Binary labelmap"

    @staticmethod
    def GetReferenceImageGeometryParameterName():
        return "Reference image geometry"


class vtkSegment:
    def __init__(self):
        self.name, self.color, self.representations = "", (0.5, 0.5, 0.5), {}

    def SetName(self, name):
        self.name = name

    def GetName(self):
        return self.name

    def SetColor(self, r, g, b):
        self.color = (r, g, b)

    def GetColor(self):
        return self.color

    def AddRepresentation(self, name, data):
        self.representations[name] = data
        return True


class vtkSegmentation:
    SegmentAdded, SegmentRemoved, SegmentModified = 62100, 62101, 62102

    def __init__(self):
        self.segments, self.order, self.parameters = {}, [], {}

    def GetNumberOfSegments(self):
        return len(self.order)

    def GetNthSegmentID(self, i):
        return self.order[i]

    def GetSegment(self, segment_id):
        return self.segments.get(segment_id)

    def ContainsRepresentation(self, name):
        return True

    def GetSourceRepresentationName(self):
        return vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()

    def GenerateUniqueSegmentID(self, segment_id=""):
        out, n = segment_id or "Segment", 1
        while out in self.segments:
            out, n = f"{segment_id}_{n}", n + 1
        return out

    def AddSegment(self, segment, segment_id):
        self.segments[segment_id] = segment
        self.order.append(segment_id)
        return True

    def GetConversionParameter(self, name):
        return self.parameters.get(name, "")


class FakeNode:
    """Attributes, a name and an ID, as vtkMRMLNode has them."""

    _next = 0

    def __init__(self, name="node", class_name="vtkMRMLNode"):
        FakeNode._next += 1
        self.name, self.class_name, self.attributes, self.id = name, class_name, {}, f"{class_name}{FakeNode._next}"
        self.parent_transform = None

    def GetName(self):
        return self.name

    def GetID(self):
        return self.id

    def SetAttribute(self, key, value):
        self.attributes[key] = value

    def GetAttribute(self, key):
        return self.attributes.get(key)

    def IsA(self, class_name):
        return class_name == self.class_name

    def GetParentTransformNode(self):
        return self.parent_transform


class FakeSegmentationNode(FakeNode):
    def __init__(self, name="segments"):
        super().__init__(name, "vtkMRMLSegmentationNode")
        self.segmentation = vtkSegmentation()
        self.created_labelmaps = 0

    def GetSegmentation(self):
        return self.segmentation

    def CreateDefaultDisplayNodes(self):
        pass

    def CreateBinaryLabelmapRepresentation(self):
        self.created_labelmaps += 1
        return True

    def GetBinaryLabelmapRepresentation(self, segment_id, image):
        source = self.segmentation.GetSegment(segment_id).representations["Binary labelmap"]
        image.copy_from(source)
        return True


class FakeTextNode(FakeNode):
    def __init__(self, name="text"):
        super().__init__(name, "vtkMRMLTextNode")
        self.text = ""

    def SetText(self, text, encoding=-1):
        self.text = text

    def GetText(self):
        return self.text

    def SetForceCreateStorageNode(self, value):
        self.force_storage = value


class FakeScene:
    """Holds nodes; ``strict`` makes AddNewNodeByClass fail (no temporary nodes allowed)."""

    def __init__(self):
        self.nodes, self.strict, self.sh = [], False, None

    def AddNewNodeByClass(self, class_name, name=""):
        if self.strict:
            raise AssertionError(f"a {class_name} node was created")
        node = FakeTextNode(name) if class_name == "vtkMRMLTextNode" else (
            FakeSegmentationNode(name) if class_name == "vtkMRMLSegmentationNode" else FakeNode(name, class_name))
        self.nodes.append(node)
        return node

    def GenerateUniqueName(self, name):
        return name

    def GetNodeByID(self, node_id):
        return next((n for n in self.nodes if n.GetID() == node_id), None)

    def GetSubjectHierarchyNode(self):
        return self.sh

    def GetFirstNodeByClass(self, class_name):
        return next((n for n in self.nodes if n.class_name == class_name), None)


# -- slicer, qt -----------------------------------------------------------------------------------

def _module(monkeypatch, name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, m)
    return m


def install(monkeypatch):
    """Stand-in slicer/qt/vtkSegmentationCorePython; returns (TAREDosimetry module, slicer stand-in)."""

    def base(name):
        return type(name, (), {"__init__": lambda self, *args, **kwargs: None,
                               "getParameterNode": lambda self: None})

    scene = FakeScene()
    node_classes = {n: type(n, (), {}) for n in ("vtkMRMLPlotChartNode", "vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode",
                                                 "vtkMRMLTableNode")}
    node_classes["vtkMRMLTextNode"] = type("vtkMRMLTextNode", (), {"CreateStorageNodeAlways": 1})
    transform_node = type("vtkMRMLTransformNode", (), {"GetTransformBetweenNodes": staticmethod(lambda a, b, t: None)})
    sh_constants = type("vtkMRMLSubjectHierarchyConstants", (), {"GetDICOMLevelStudy": staticmethod(lambda: "Study"),
                                                                 "GetDICOMSeriesModalityAttributeName": staticmethod(lambda: "DICOM.Modality")})
    app = types.SimpleNamespace(processEvents=lambda: None, testingEnabled=lambda: True, layoutManager=lambda: None,
                                connect=lambda *a: None)
    slicer = _module(monkeypatch, "slicer", mrmlScene=scene, app=app, vtkMRMLTransformNode=transform_node,
                     vtkMRMLSubjectHierarchyConstants=sh_constants, **node_classes)
    slicer.i18n = _module(monkeypatch, "slicer.i18n", tr=lambda s: s, translate=lambda ctx, s: s)
    slicer.parameterNodeWrapper = _module(monkeypatch, "slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls,
                                          WithinRange=lambda lo, hi: ("WithinRange", lo, hi), Choice=lambda c: ("Choice", tuple(c)))
    slicer.ScriptedLoadableModule = _module(monkeypatch, "slicer.ScriptedLoadableModule", **{
        n: base(n) for n in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest",
                             "ScriptedLoadableModuleWidget")})

    @contextlib.contextmanager
    def node_modify(node):
        yield

    @contextlib.contextmanager
    def try_with_error_display(message=None, show=True, waitCursor=False):
        yield  # re-raises, as Slicer's does

    slicer.util = _module(monkeypatch, "slicer.util", VTKObservationMixin=base("VTKObservationMixin"),
                          arrayFromVTKMatrix=_matrix_array, vtkMatrixFromArray=_vtk_matrix, NodeModify=node_modify,
                          tryWithErrorDisplay=try_with_error_display,
                          getNodesByClass=lambda cls: [n for n in scene.nodes if n.class_name == cls])
    _module(monkeypatch, "qt")
    _module(monkeypatch, "vtkSegmentationCorePython", vtkOrientedImageData=vtkOrientedImageData,
            vtkOrientedImageDataResample=vtkOrientedImageDataResample, vtkSegmentationConverter=vtkSegmentationConverter,
            vtkSegment=vtkSegment, vtkSegmentation=vtkSegmentation)
    monkeypatch.syspath_prepend(MODULE_DIR)
    for name in [m for m in sys.modules if m == "TAREDosimetry" or m.startswith("TAREDosimetrySlicer")]:
        monkeypatch.delitem(sys.modules, name)
    return importlib.import_module("TAREDosimetry"), slicer
