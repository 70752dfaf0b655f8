"""The Slicer Plan and Compare sections without Slicer: their .ui checked against the code that uses it,
the CMake list, the few lines that insert them in the module panel, and the glue logic
(``TAREDosimetrySlicer/planninglogic.py``) run with stand-ins for slicer and vtk on engine data:
plan -> slider step -> PASS/FAIL colours; registration into a transform node and back (RAS/LPS,
TransformFromParent); comparison and difference map."""

import ast
import importlib
import math
import os
import re
import sys
import types
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import box_case
from test_slicer_static import MODULE_CMAKE, MODULE_DIR, MODULE_PY, SIGNAL_CLASSES, USAGE_CLASSES, _cmake_entries, _parameter_fields

UI_FILE = os.path.join(MODULE_DIR, "Resources", "UI", "TAREDosimetryPlanning.ui")
PANEL_PY = os.path.join(MODULE_DIR, "TAREDosimetrySlicer", "planningpanel.py")
USAGE = dict(USAGE_CLASSES, setColumnCount={"QTableWidget"}, currentText={"QComboBox"}, enabled={"ctkSliderWidget", "QPushButton"},
             value={"QDoubleSpinBox", "ctkSliderWidget"}, text={"QLineEdit", "QLabel"}, setCurrentNode={"qMRMLNodeComboBox"})


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _widgets():
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}, root


# -- the .ui and the code that uses it ----------------------------------------------------------------
def test_planning_ui_root_and_unique_names():
    widgets, root = _widgets()
    top = root.find("widget")
    assert (top.get("class"), top.get("name")) == ("qMRMLWidget", "TAREDosimetryPlanning")
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names))


def test_every_planning_widget_the_code_uses_exists_with_a_suitable_class():
    widgets, _ = _widgets()
    problems, uses = [], 0
    for n, line in enumerate(_read(PANEL_PY).splitlines(), 1):
        for m in re.finditer(r"self\.ui\.(\w+)(?:\.(\w+))?(?:\(\s*\"([^\"]+)\")?", line):
            name, attr, signal = m.groups()
            uses += 1
            cls = widgets.get(name)
            if cls is None:
                problems.append(f"line {n}: self.ui.{name} is not in TAREDosimetryPlanning.ui")
            elif attr in USAGE and cls not in USAGE[attr]:
                problems.append(f"line {n}: self.ui.{name}.{attr} needs one of {sorted(USAGE[attr])}, the .ui has {cls}")
            elif attr == "connect" and cls not in SIGNAL_CLASSES.get(signal, ()):
                problems.append(f"line {n}: {cls} {name} has no signal {signal}")
    assert uses > 30 and not problems, "\n".join(problems)


def test_planning_mrml_widgets_get_the_scene_and_custom_widgets_are_declared():
    widgets, root = _widgets()
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)" and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    mrml = {n for n, c in widgets.items() if c.startswith("qMRML") and c != "qMRMLWidget"}
    assert len(mrml) == 6 and mrml <= receivers
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    assert {c for c in widgets.values() if c.startswith(("qMRML", "ctk"))} <= declared
    types_of = {w.get("name"): [s.text for s in w.iter("string") if s.text and s.text.startswith("vtkMRML")] for w in root.iter("widget")}
    assert types_of["compareTransformSelector"] == ["vtkMRMLLinearTransformNode"]
    assert types_of["compareSegmentationSelector"] == ["vtkMRMLSegmentationNode"]


def test_planning_ui_and_glue_are_installed_and_inserted_in_a_few_lines():
    listed = _cmake_entries()
    assert {"Resources/UI/TAREDosimetryPlanning.ui", "TAREDosimetrySlicer/planningpanel.py", "TAREDosimetrySlicer/planninglogic.py"} <= listed
    assert "${MODULE_NAME}Planning.ui" in _read(MODULE_CMAKE)
    src = _read(MODULE_PY)
    lines = [ln for ln in src.splitlines() if "PlanningPanel" in ln or "planningPanel" in ln]
    assert len(lines) <= 3 and 'resourcePath("UI/TAREDosimetryPlanning.ui")' in src


def test_the_panel_reads_only_existing_parameter_node_fields():
    """_mainInputs and the activity button read the main parameter node: the fields must exist there."""
    fields, _ = _parameter_fields()
    tree = ast.parse(_read(PANEL_PY))
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "pn"}
    assert used and used <= set(fields), sorted(used - set(fields))


# -- the glue logic with stand-ins -----------------------------------------------------------------------
class FakeMatrix:
    def __init__(self, a=None):
        self.a = np.eye(4) if a is None else np.array(a, dtype=float)


class FakeDisplay:
    def __init__(self):
        self.override, self.calls = {}, []

    def SetSegmentOverrideColor(self, segment_id, r, g, b):
        self.override[segment_id] = (r, g, b)

    def UnsetSegmentOverrideColor(self, segment_id):
        self.override.pop(segment_id, None)

    def __getattr__(self, name):  # SetAndObserveColorNodeID, AutoWindowLevelOff, SetWindowLevelMinMax...
        return lambda *args: self.calls.append((name, args))


class FakeNode:
    _count = 0

    def __init__(self, name, volume=None, segmentation=None):
        FakeNode._count += 1
        self.name, self.id, self.volume, self.seg = name, f"node{FakeNode._count}", volume, segmentation
        self.parent, self.display, self.attributes, self.matrix = None, FakeDisplay(), {}, None

    def GetName(self):
        return self.name

    def GetID(self):
        return self.id

    def GetParentTransformNode(self):
        return self.parent

    def SetAndObserveTransformNodeID(self, node_id):
        self.parent = node_id

    def SetMatrixTransformFromParent(self, m):
        self.matrix = m.a.copy()
        return 1

    def GetMatrixTransformFromParent(self, m):
        m.a[...] = self.matrix
        return 1

    def GetDisplayNode(self):
        return self.display

    def CreateDefaultDisplayNodes(self):
        pass

    def SetAttribute(self, k, v):
        self.attributes[k] = v

    def GetAttribute(self, k):
        return self.attributes.get(k)

    def SetIJKToRASMatrix(self, m):
        self.ijk_to_ras = m.a

    def GetSegmentation(self):
        names = self.seg.names
        return types.SimpleNamespace(GetSegment=lambda i: i if i in names else None,
                                     GetSegmentIdBySegmentName=lambda n: n if n in names else "")


class FakeMainLogic:
    @staticmethod
    def volumeFromNode(node, name="", unit=""):
        return node.volume

    @staticmethod
    def segmentationFromNode(node):
        return node.seg


@pytest.fixture
def glue(monkeypatch):
    """planninglogic imported with stand-ins for slicer and vtk."""
    calls = {"layers": [], "arrays": {}}

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)
        return m

    util = module("slicer.util", vtkMatrixFromArray=lambda a: FakeMatrix(a), arrayFromVTKMatrix=lambda m: m.a.copy(),
                  setSliceViewerLayers=lambda **kw: calls["layers"].append(kw),
                  updateVolumeFromArray=lambda node, arr: calls["arrays"].__setitem__(node.name, arr))
    scene = types.SimpleNamespace(AddNewNodeByClass=lambda cls, name: FakeNode(name), GenerateUniqueName=lambda n: n,
                                  GetNodeByID=lambda i: object())
    module("slicer", util=util, mrmlScene=scene)
    module("vtk", vtkMatrix4x4=FakeMatrix)
    monkeypatch.syspath_prepend(MODULE_DIR)
    monkeypatch.delitem(sys.modules, "TAREDosimetrySlicer.planninglogic", raising=False)
    mod = importlib.import_module("TAREDosimetrySlicer.planninglogic")
    return mod, calls


def test_plan_slider_and_status_colours_through_the_glue(glue):
    from TAREDosimetryLib import DosimetryParams
    from TAREDosimetryLib.planning.prescription import build_prescription

    mod, _ = glue
    counts, seg = box_case()
    spect, segnode = FakeNode("MAA", volume=counts), FakeNode("segments", segmentation=seg)
    logic = mod.PlanningLogic(FakeMainLogic())
    pr = build_prescription("resin", tumor_target_gy=100, normal_liver_limit_gy=40)
    explorer, choice = logic.plan(spect, segnode, None, DosimetryParams(lung_shunt_fraction=0.05), {}, pr)
    step = logic.step(choice.activity_gbq * 0.8)
    assert step.segment_status["tumour"] == "FAIL"
    logic.showStepColors(segnode, step)
    assert segnode.display.override["tumour"] == mod.mc.FAIL_COLOR
    logic.showStepColors(segnode, logic.step(choice.activity_gbq))
    assert segnode.display.override["tumour"] == mod.mc.PASS_COLOR
    logic.restoreStepColors(segnode)
    assert segnode.display.override == {}
    explorer, choice = logic.plan(spect, segnode, None, DosimetryParams(lung_shunt_fraction=0.05), {}, pr, modelName="partition")
    assert explorer.model.name == "partition" and choice.activity_gbq > 0
    assert logic.showStepColors(segnode, logic.step(choice.activity_gbq)) == []  # compartments are not segments: no colours
    with pytest.raises(mod.InputError, match="mird model: no target for the perfused volume"):
        logic.plan(spect, segnode, None, DosimetryParams(lung_shunt_fraction=0.05), {}, pr, modelName="mird")


def test_registration_lands_in_the_transform_node_and_compare_reads_it_back(glue):
    """The engine transform written as TransformFromParent (RAS) and read back gives the same mapping;
    the post-treatment nodes are placed under the transform; compare uses the transform read back."""
    from TAREDosimetryLib import DosimetryParams, run_case
    from TAREDosimetryLib.imaging.phantom import make_phantom
    from TAREDosimetryLib.planning.registration import resample_onto

    mod, calls = glue
    case = make_phantom(analytic=False)
    result = run_case(case.activity, case.segmentation, params=case.params, ct=case.ct)
    true = sitk.Euler3DTransform()
    lo, hi = case.ct.grid.physical_bounds_mm()
    true.SetCenter(tuple(float(v) for v in (lo + hi) / 2))
    true.SetRotation(0.0, 0.0, math.radians(2))
    true.SetTranslation((3.0, -2.0, 1.5))
    ct_node, post_ct = FakeNode("CT", volume=case.ct), FakeNode("post CT", volume=resample_onto(case.ct, case.ct.grid, true, default=-1000.0))
    planned, delivered = FakeNode("plan dose", volume=result.dose_gy), FakeNode("post dose", volume=resample_onto(result.dose_gy, result.dose_gy.grid, true))
    tnode, segnode = FakeNode("reg"), FakeNode("segments", segmentation=case.segmentation)
    logic = mod.PlanningLogic(FakeMainLogic())
    info = logic.register(ct_node, post_ct, tnode, alsoMove=(delivered,))
    assert post_ct.parent == tnode.id and delivered.parent == tnode.id and calls["layers"]
    tfm = logic.transformOf(tnode)
    p = np.array([10.0, -30.0, 40.0])
    assert np.linalg.norm(np.subtract(tfm.TransformPoint(tuple(p)), true.GetInverse().TransformPoint(tuple(p)))) < 1.0
    assert info["rotation_deg"] == pytest.approx(2.0, abs=0.5)
    comp, diff_node = logic.compare(planned, delivered, segnode, tnode, DosimetryParams(), {}, 1.8, 1.9)
    assert diff_node.name in calls["arrays"] and comp.activity["band"] == "within 10 %"
    organ = [s for s in comp.segments if s["role"] in ("liver", "normal_liver")]
    assert organ and all(abs(s["metrics"]["mean_gy"]["difference_pct"]) < 2.0 for s in organ)
    ct_node.parent = "somewhere"
    with pytest.raises(mod.InputError, match="under a transform"):
        logic.register(ct_node, post_ct, tnode)
