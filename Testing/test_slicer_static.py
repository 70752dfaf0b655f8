"""Static checks of the Slicer layer, run with plain pytest (no Slicer needed).

They catch what would otherwise only show up when a user opens the module in Slicer: a widget the
code uses but the .ui lacks (or of the wrong class), a parameter bound to a widget the
parameterNodeWrapper cannot connect, an engine file missing from the module's CMakeLists (it would
not be installed), syntax newer than Slicer 5.8's Python 3.9, or an engine import of slicer/qt/ctk.
"""

import ast
import os
import re
import struct
import xml.etree.ElementTree as ET

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE_DIR = os.path.join(ROOT, "TAREDosimetry")
LIB_DIR = os.path.join(MODULE_DIR, "TAREDosimetryLib")
GLUE_DIR = os.path.join(MODULE_DIR, "TAREDosimetrySlicer")
MODULE_PY = os.path.join(MODULE_DIR, "TAREDosimetry.py")
SELFTEST_PY = os.path.join(GLUE_DIR, "selftest.py")
BATCH_PY = os.path.join(MODULE_DIR, "TAREDosimetryScripts", "TAREDosimetryBatch.py")
UI_FILE = os.path.join(MODULE_DIR, "Resources", "UI", "TAREDosimetry.ui")
MODULE_CMAKE = os.path.join(MODULE_DIR, "CMakeLists.txt")
TOP_CMAKE = os.path.join(ROOT, "CMakeLists.txt")
API_DOC = os.path.join(ROOT, "docs", "slicer_api_check.md")


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _engine_files(top=LIB_DIR):
    """Every file of the engine package (relative to the module folder), as CMake must list it."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
        for f in filenames:
            if f.endswith((".pyc", ".pyo")) or f.startswith("."):
                continue
            out.append(os.path.relpath(os.path.join(dirpath, f), MODULE_DIR).replace(os.sep, "/"))
    return sorted(out)


def _glue_files():
    """The Python files of the module's Slicer-side package (they may import slicer, qt, vtk)."""
    return [os.path.join(MODULE_DIR, f) for f in _engine_files(GLUE_DIR) if f.endswith(".py")]


def _slicer_side_files():
    """Every file that runs only inside Slicer: the module, its batch script and its glue package."""
    return [MODULE_PY, BATCH_PY] + _glue_files()


#: Glue files whose ``self.ui`` is a section's own .ui (not TAREDosimetry.ui).
OWN_UI_FILES = {"planningpanel.py": "TAREDosimetryPlanning.ui"}


def _ui_widgets(ui_file=UI_FILE):
    root = ET.parse(ui_file).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}, root


# -- .ui and its use in the code -----------------------------------------------------------------

# What a call on self.ui.<name> needs: method or property -> widget classes that have it.
USAGE_CLASSES = {
    "currentNode": {"qMRMLNodeComboBox"},
    "setCurrentNode": {"qMRMLNodeComboBox"},
    "setMRMLTableNode": {"qMRMLTableView"},
    "setRowCount": {"QTableWidget"},
    "rowCount": {"QTableWidget"},
    "columnCount": {"QTableWidget"},
    "setItem": {"QTableWidget"},
    "item": {"QTableWidget"},
    "setCellWidget": {"QTableWidget"},
    "cellWidget": {"QTableWidget"},
    "insertRow": {"QTableWidget"},
    "removeRow": {"QTableWidget"},
    "selectedIndexes": {"QTableWidget", "qMRMLTableView"},
    "setHorizontalHeaderLabels": {"QTableWidget"},
    "horizontalHeader": {"QTableWidget", "qMRMLTableView"},
    "resizeColumnsToContents": {"QTableWidget", "qMRMLTableView"},
    "addItems": {"QComboBox"},
    "findText": {"QComboBox"},
    "itemText": {"QComboBox"},
    "setItemData": {"QComboBox"},
    "setCurrentIndex": {"QComboBox"},
    "setValue": {"QProgressBar", "QDoubleSpinBox", "QSpinBox", "ctkSliderWidget"},
    "setFormat": {"QProgressBar"},
    "value": {"QDoubleSpinBox", "QSpinBox", "ctkSliderWidget", "QProgressBar"},
    "text": {"QLabel", "QPushButton", "QLineEdit", "QCheckBox"},
    "checked": {"QCheckBox", "QPushButton"},
}
SIGNAL_CLASSES = {
    "clicked(bool)": {"QPushButton", "QCheckBox", "QToolButton"},
    "toggled(bool)": {"QPushButton", "QCheckBox", "QToolButton"},
    "currentIndexChanged(int)": {"QComboBox"},
    "itemChanged(QTableWidgetItem*)": {"QTableWidget"},
    "valueChanged(double)": {"QDoubleSpinBox", "ctkSliderWidget"},
    "currentNodeChanged(vtkMRMLNode*)": {"qMRMLNodeComboBox"},
}


def _ui_uses():
    """[(widget name, attribute, signal or None, 'file:line')] for every self.ui.<name>.<attr> in the module
    and its glue package (the widget's sections hold the same ``ui``)."""
    uses = []
    for path in [MODULE_PY] + _glue_files():
        if os.path.basename(path) in OWN_UI_FILES:
            continue
        for n, line in enumerate(_read(path).splitlines(), 1):
            for m in re.finditer(r"self\.ui\.(\w+)(?:\.(\w+))?(?:\(\s*\"([^\"]+)\")?", line):
                uses.append((m.group(1), m.group(2), m.group(3), f"{os.path.basename(path)}:{n}"))
    return uses


def test_ui_file_parses_and_has_a_qmrmlwidget_root():
    widgets, root = _ui_widgets()
    assert root.tag == "ui"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "TAREDosimetry"
    assert len(widgets) == len(set(widgets)), "widget names must be unique"


def _own_ui_uses(glue_name):
    uses = []
    for n, line in enumerate(_read(os.path.join(GLUE_DIR, glue_name)).splitlines(), 1):
        for m in re.finditer(r"self\.ui\.(\w+)(?:\.(\w+))?(?:\(\s*\"([^\"]+)\")?", line):
            uses.append((m.group(1), m.group(2), m.group(3), f"{glue_name}:{n}"))
    return uses


@pytest.mark.parametrize("glue_name", [None] + sorted(OWN_UI_FILES))
def test_every_ui_widget_the_code_uses_exists_with_a_suitable_class(glue_name):
    ui_name = OWN_UI_FILES.get(glue_name, "TAREDosimetry.ui")
    widgets, _ = _ui_widgets(os.path.join(os.path.dirname(UI_FILE), ui_name))
    uses = _ui_uses() if glue_name is None else _own_ui_uses(glue_name)
    assert uses, "the module should use its .ui widgets"
    problems = []
    for name, attr, signal, line in uses:
        if name not in widgets:
            problems.append(f"{line}: self.ui.{name} is not in {ui_name}")
            continue
        cls = widgets[name]
        if attr in USAGE_CLASSES and cls not in USAGE_CLASSES[attr]:
            problems.append(f"{line}: self.ui.{name}.{attr} needs one of {sorted(USAGE_CLASSES[attr])}, the .ui has {cls}")
        if attr == "connect":
            if signal not in SIGNAL_CLASSES:
                problems.append(f"{line}: signal {signal!r} of self.ui.{name} is not in the table of known signals")
            elif cls not in SIGNAL_CLASSES[signal]:
                problems.append(f"{line}: {cls} {name} has no signal {signal}")
    assert not problems, "\n".join(problems)


def test_every_mrml_widget_receives_the_scene():
    widgets, root = _ui_widgets()
    receivers = {
        c.findtext("receiver") for c in root.iter("connection")
        if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)" and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    mrml = {n for n, c in widgets.items() if c in ("qMRMLNodeComboBox", "qMRMLTableView")}
    assert mrml, "the panel should have MRML widgets"
    assert mrml <= receivers, f"no mrmlSceneChanged -> setMRMLScene connection for {sorted(mrml - receivers)}"


def test_custom_widgets_are_declared():
    widgets, root = _ui_widgets()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    custom = {c for c in widgets.values() if c.startswith(("qMRML", "ctk", "qSlicer"))}
    assert custom <= declared, f"undeclared custom widget classes: {sorted(custom - declared)}"


def test_rule_table_has_one_column_per_rule_field():
    from TAREDosimetryLib.mrmlconvert import RULE_COLUMNS

    _, root = _ui_widgets()
    table = next(w for w in root.iter("widget") if w.get("name") == "rulesTable")
    assert len(table.findall("column")) == len(RULE_COLUMNS)


# -- parameter node bindings ------------------------------------------------------------------------

def _enum_classes(tree):
    """Names of the module's enum classes: derived from enum.Enum, directly or through another of them."""
    enums, changed = set(), True
    while changed:
        changed = False
        for n in tree.body:
            if isinstance(n, ast.ClassDef) and n.name not in enums and any(
                    (isinstance(b, ast.Attribute) and b.attr == "Enum") or (isinstance(b, ast.Name) and b.id in enums)
                    for b in n.bases):
                enums.add(n.name)
                changed = True
    return enums


def _parameter_fields():
    """{name: annotation source} of the @parameterNodeWrapper class."""
    tree = ast.parse(_read(MODULE_PY))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(d, ast.Name) and d.id == "parameterNodeWrapper") for d in node.decorator_list
        ):
            return {
                s.target.id: ast.get_source_segment(_read(MODULE_PY), s.annotation)
                for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            }, _enum_classes(tree)
    raise AssertionError("no @parameterNodeWrapper class in TAREDosimetry.py")


def _bound_widgets():
    _, root = _ui_widgets()
    out = {}
    for w in root.iter("widget"):
        for p in w.findall("property"):
            if p.get("name") == "SlicerParameterName":
                out[p.findtext("string")] = (w.get("name"), w.get("class"), w)
    return out


def test_every_engine_parameter_and_input_option_has_a_widget_of_the_panel():
    """Sampling, phase, allow_negative... and the dose-map, DICOM-header and export options are on the panel
    (bound in TAREDosimetry.ui), not only in the parameter node."""
    from TAREDosimetryLib import panel

    bound = _bound_widgets()
    wanted = [name for name, _engine, _to, _from in panel.PANEL_FIELDS]
    wanted += ["inputIsDose", "doseUnit", "allowOtherRadionuclide", "exportPdf", "exportRtDose", "exportDicomSeg",
               "exportDicomSr", "exportToDicomDatabase"]
    missing = [name for name in wanted if name not in bound]
    assert not missing, f"parameters without a widget in TAREDosimetry.ui: {missing}"
    for name, cls in (("sampling", "QComboBox"), ("phase", "QComboBox"), ("allowNegative", "QCheckBox"), ("doseUnit", "QComboBox")):
        assert bound[name][1] == cls, name
    widgets, _ = _ui_widgets()
    for name in ("readDicomTimingButton", "checkInputsButton", "exportSlicerRtButton"):
        assert widgets.get(name) == "QPushButton", name
    assert widgets.get("checkInputsText") == "QPlainTextEdit"


def test_every_bound_widget_has_a_parameter_of_a_type_its_connector_accepts():
    fields, enums = _parameter_fields()
    bound = _bound_widgets()
    assert bound, "the panel should bind widgets to the parameter node"
    problems = []
    for param, (wname, cls, elem) in bound.items():
        ann = fields.get(param)
        if ann is None:
            problems.append(f"{wname}: SlicerParameterName {param!r} is not a field of the parameter node")
            continue
        base = re.sub(r"^Annotated\[\s*([\w.]+).*\]$", r"\1", ann.strip())
        bounded = "WithinRange" in ann or ("Minimum" in ann and "Maximum" in ann)
        if cls == "qMRMLNodeComboBox":
            ok = base.startswith("vtkMRML")
            types = [s.text for s in elem.iter("string") if s.text and s.text.startswith("vtkMRML")]
            if ok and base not in types:
                problems.append(f"{wname}: nodeTypes {types} do not include the parameter's class {base}")
        elif cls in ("QDoubleSpinBox", "ctkSliderWidget"):
            # The wrapper sets the widget's range from the annotation (or -inf..inf when unbounded).
            ok = base == "float" and bounded
        elif cls in ("QComboBox", "ctkComboBox"):
            ok = base in enums or "Choice" in ann
        elif cls == "QCheckBox":
            ok = base == "bool"
        elif cls == "ctkDirectoryButton":
            ok = base in ("pathlib.Path", "Path")
        elif cls == "QLineEdit":
            ok = base == "str"
        else:
            ok = False
        if not ok:
            problems.append(f"{wname} ({cls}) cannot be connected to {param}: {ann}")
    assert not problems, "\n".join(problems)


def test_parameter_annotations_evaluate_on_python_39():
    """``X | None`` in an annotation is evaluated when the class is made and fails on Python 3.9."""
    tree = ast.parse(_read(MODULE_PY))
    bad = []
    for node in ast.walk(tree):
        anns = []
        if isinstance(node, ast.AnnAssign):
            anns.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            anns += [a.annotation for a in node.args.args + node.args.kwonlyargs if a.annotation is not None]
            if node.returns is not None:
                anns.append(node.returns)
        for a in anns:
            for sub in ast.walk(a):
                if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.BitOr):
                    bad.append(getattr(node, "lineno", "?"))
    assert not bad, f"PEP 604 unions in annotations at lines {bad} (use Optional[...] for Slicer 5.8)"


# -- CMake -----------------------------------------------------------------------------------------

def _cmake_entries():
    text = _read(MODULE_CMAKE).replace("${MODULE_NAME}", "TAREDosimetry")
    return set(re.findall(r"^\s+([\w./-]+\.\w+)\s*$", text, flags=re.M))


def test_every_engine_and_glue_file_is_listed_in_the_module_cmakelists():
    listed = _cmake_entries()
    missing = [f for f in _engine_files() + _engine_files(GLUE_DIR) if f not in listed]
    assert not missing, f"add to TAREDosimetry/CMakeLists.txt: {missing}"


def test_every_file_the_module_cmakelists_lists_exists():
    listed = _cmake_entries()
    assert "TAREDosimetry.py" in listed and "Resources/UI/TAREDosimetry.ui" in listed
    absent = [f for f in sorted(listed) if not os.path.isfile(os.path.join(MODULE_DIR, f))]
    assert not absent, f"listed in TAREDosimetry/CMakeLists.txt but missing: {absent}"


def test_only_the_module_script_is_a_python_file_of_the_module_folder():
    """Slicer registers every .py file directly in a scripted-module folder as a module
    (qSlicerAbstractModuleFactoryManager::registerModules) and reports an error at start-up when the
    file has no class of its own name: helpers belong in sub-folders."""
    top = sorted(f for f in os.listdir(MODULE_DIR) if f.lower().endswith((".py", ".pyc")))
    assert top == ["TAREDosimetry.py"], f"move these into a sub-folder of {MODULE_DIR}: {[f for f in top if f != 'TAREDosimetry.py']}"
    listed_top = sorted(f for f in _cmake_entries() if "/" not in f and f.endswith(".py"))
    assert listed_top == ["TAREDosimetry.py"], f"CMakeLists installs these into the module folder: {listed_top}"


def test_module_cmakelists_builds_the_module_and_registers_its_unittest():
    text = _read(MODULE_CMAKE)
    assert "slicerMacroBuildScriptedModule(" in text
    assert re.search(r"slicer_add_python_unittest\(\s*SCRIPT \$\{MODULE_NAME\}\.py\s*\)", text)


def test_top_level_cmakelists_is_a_slicer_extension():
    text = _read(TOP_CMAKE)
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({key} \"[^\"]+\"\)", text), key
    assert 'set(EXTENSION_CATEGORY "Nuclear Medicine")' in text
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(TAREDosimetry)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text, line


def test_extension_icon_and_screenshot_urls_name_files_of_this_repository():
    """The Extensions Index shows these URLs: each must point at a file the repository holds (on its main branch)."""
    text = _read(TOP_CMAKE)
    urls = re.findall(r"https://raw\.githubusercontent\.com/[^/\s\"]+/[^/\s\"]+/main/([^\s\"]+)", text)
    assert len(urls) >= 2, "icon and at least one screenshot"
    missing = [u for u in urls if not os.path.isfile(os.path.join(ROOT, u))]
    assert not missing, f"EXTENSION_ICONURL / EXTENSION_SCREENSHOTURLS name missing files: {missing}"


# -- Python version, layering ------------------------------------------------------------------------

def _python_files():
    return _slicer_side_files() + [os.path.join(MODULE_DIR, f) for f in _engine_files() if f.endswith(".py")]


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_parses_with_python_39_grammar(path):
    ast.parse(_read(path), filename=path, feature_version=(3, 9))


@pytest.mark.parametrize("path", [os.path.join(MODULE_DIR, f) for f in _engine_files() if f.endswith(".py")],
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_engine_imports_no_slicer_qt_ctk_and_vtk_only_in_its_filter(path):
    tree = ast.parse(_read(path))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    forbidden = imported & {"slicer", "qt", "ctk", "mrml", "vtkSegmentationCorePython"}
    assert not forbidden, f"{os.path.basename(path)} imports {sorted(forbidden)}"
    if os.path.basename(path) != "vtkfilter.py":
        assert "vtk" not in imported, f"{os.path.basename(path)} imports vtk; only vtkfilter.py may"


@pytest.mark.parametrize("path", _slicer_side_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_no_function_rebinds_a_module_level_import(path):
    """``import slicer.packaging`` (or ``import vtk.util.x``) inside a function makes ``slicer`` (``vtk``)
    a local name of the whole function: every use before that line raises UnboundLocalError."""
    tree = ast.parse(_read(path))
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top |= {a.asname or a.name for a in node.names}
    bad = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                bad += [f"line {node.lineno}: import {a.name}" for a in node.names
                        if a.asname is None and a.name.split(".")[0] in top]
    assert not bad, "in-function imports that shadow module-level names: " + "; ".join(sorted(set(bad)))


def test_module_category_and_test_class_follow_the_template():
    src = _read(MODULE_PY)
    assert 'translate("qSlicerAbstractCoreModule", "Nuclear Medicine")' in src
    tree = ast.parse(src)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    # The self-test lives in the glue package and is imported into the module, where Slicer's
    # runTest (getattr(module, '<Module>Test')) and ctest's unittest loader look for it.
    assert re.search(r"^from TAREDosimetrySlicer\.selftest import TAREDosimetryTest\b", src, flags=re.M)
    classes.update({n.name: n for n in ast.parse(_read(SELFTEST_PY)).body if isinstance(n, ast.ClassDef)})
    for name, base in (("TAREDosimetry", "ScriptedLoadableModule"), ("TAREDosimetryWidget", "ScriptedLoadableModuleWidget"),
                       ("TAREDosimetryLogic", "ScriptedLoadableModuleLogic"), ("TAREDosimetryTest", "ScriptedLoadableModuleTest")):
        assert name in classes, name
        assert base in {getattr(b, "id", None) for b in classes[name].bases}, f"{name} should derive from {base}"
    tests = [f.name for f in classes["TAREDosimetryTest"].body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")]
    assert len(tests) >= 4
    run_test = next(f for f in classes["TAREDosimetryTest"].body if isinstance(f, ast.FunctionDef) and f.name == "runTest")
    called = {n.attr for n in ast.walk(run_test) if isinstance(n, ast.Attribute)}
    assert set(tests) <= called, f"runTest (slicer.selfTests) does not run {sorted(set(tests) - called)}"


# -- every Slicer call is on the checked list ---------------------------------------------------------

def test_every_slicer_util_and_module_logic_call_is_documented_as_checked():
    doc = _read(API_DOC)
    calls = set()
    for path in _slicer_side_files():
        src = _read(path)
        calls |= set(re.findall(r"slicer\.util\.(\w+)", src))
        calls |= {f"slicer.modules.{m}.logic" for m in re.findall(r"slicer\.modules\.(\w+)\.logic\(\)", src)}
        calls |= set(re.findall(r"slicer\.(vtk\w+)", src))
    missing = sorted(c for c in calls if c not in doc)
    assert not missing, f"not listed in docs/slicer_api_check.md: {missing}"


# -- icons ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [os.path.join(ROOT, "TAREDosimetry.png"),
                                  os.path.join(MODULE_DIR, "Resources", "Icons", "TAREDosimetry.png")],
                         ids=["extension", "module"])
def test_icon_is_a_128_pixel_png(path):
    with open(path, "rb") as fh:
        head = fh.read(33)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    assert (width, height) == (128, 128)
    assert os.path.getsize(path) > 2000, "the icon looks empty"


# -- the module's node-free logic, imported with stand-ins for Slicer's Python packages -------------------

def _import_module_with_stubs(monkeypatch):
    """Import TAREDosimetry.py with minimal stand-ins for slicer/qt/vtk: the class bodies (enums,
    parameter annotations, defaults) are evaluated, and the node-free logic methods can run."""
    import importlib
    import sys
    import types

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)
        return m

    def base(name):
        return type(name, (), {"__init__": lambda self, *args, **kwargs: None})

    node_classes = {n: type(n, (), {}) for n in ("vtkMRMLPlotChartNode", "vtkMRMLScalarVolumeNode",
                                                 "vtkMRMLSegmentationNode", "vtkMRMLTableNode", "vtkMRMLTextNode")}
    slicer = module("slicer", **node_classes)
    slicer.i18n = module("slicer.i18n", tr=lambda s: s, translate=lambda ctx, s: s)
    slicer.parameterNodeWrapper = module("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls,
                                         WithinRange=lambda lo, hi: ("WithinRange", lo, hi),
                                         Choice=lambda choices: ("Choice", tuple(choices)))
    slicer.ScriptedLoadableModule = module("slicer.ScriptedLoadableModule", **{
        n: base(n) for n in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest",
                             "ScriptedLoadableModuleWidget")})
    slicer.util = module("slicer.util", VTKObservationMixin=base("VTKObservationMixin"))
    module("qt")
    module("vtk")
    monkeypatch.syspath_prepend(MODULE_DIR)
    for name in [m for m in sys.modules if m == "TAREDosimetry" or m.startswith("TAREDosimetrySlicer")]:
        monkeypatch.delitem(sys.modules, name)
    return importlib.import_module("TAREDosimetry")


def _panel_values(mod, **changes):
    """A stand-in parameter node: the parameter class's defaults, with ``changes``."""
    from types import SimpleNamespace

    cls = mod.TAREDosimetryParameterNode
    values = {name: getattr(cls, name, None) for name in cls.__annotations__}
    values.update(calibration=mod.CalibrationMode.relative, administeredActivityGBq=1.8, residualPercent=2.0,
                  lungShuntFractionPercent=8.0, rulePreset="hcc-glass")
    values.update(changes)
    return SimpleNamespace(**values)


def test_panel_values_become_engine_params_with_fractions(monkeypatch):
    mod = _import_module_with_stubs(monkeypatch)
    p = mod.TAREDosimetryLogic.engineParams(_panel_values(mod))
    assert p.calibration == "relative" and p.administered_activity_gbq == 1.8
    assert abs(p.residual_fraction - 0.02) < 1e-12 and abs(p.lung_shunt_fraction - 0.08) < 1e-12
    assert (p.method, p.device, p.reference_region) == ("ldm", "auto", "liver")
    a = mod.TAREDosimetryLogic.engineParams(_panel_values(mod, calibration=mod.CalibrationMode.absolute, administeredActivityGBq=0.0,
                                                          doseMethod=mod.DoseMethod.dvk, hoursAfterAdministration=20.0))
    assert a.calibration == "absolute" and a.administered_activity_gbq is None and a.method == "dvk"
    assert a.hours_since_administration == 20.0
    # With absolute calibration an administered activity is optional (the LSF lung model uses it).
    b = mod.TAREDosimetryLogic.engineParams(_panel_values(mod, calibration=mod.CalibrationMode.absolute))
    assert b.administered_activity_gbq == 1.8
    assert p.hours_since_administration is None and p.clinical_inputs() == dict.fromkeys(p.clinical_inputs())
    c = mod.TAREDosimetryLogic.engineParams(_panel_values(
        mod, microsphere=mod.Microsphere.glass, indication=mod.Indication.hcc, treatmentApproach=mod.TreatmentApproach.lobectomy,
        bilirubinMgDl=0.0, hepaticReservePercent=35.0, lungShuntFractionPercent=0.0, resolutionFwhmMm=15.0))
    assert c.clinical_inputs() == {"microsphere": "glass", "indication": "hcc", "treatment_approach": "lobectomy",
                                   "bilirubin_mg_dl": 0.0, "hepatic_reserve_pct": 35.0}
    assert c.lung_shunt_fraction == 0.0 and c.resolution_fwhm_mm == 15.0  # 0 given is 0, "not given" (-1) is None


def test_panel_refuses_what_must_not_be_defaulted(monkeypatch):
    # The panel's "not given" LSF, PET time and an MBq-sized activity are said before Apply, with
    # the engine's own message (never a silent LSF 0 or decay factor 1).
    mod = _import_module_with_stubs(monkeypatch)
    why = lambda **kw: mod.TAREDosimetryLogic.whyInputsIncomplete(mod.TAREDosimetryLogic, _panel_values(mod, **kw), ["liver", "tumour"])  # noqa: E731
    assert why() == ""
    assert "lung_shunt_fraction" in why(lungShuntFractionPercent=-1.0)
    assert "time from administration" in why(calibration=mod.CalibrationMode.absolute)
    assert why(calibration=mod.CalibrationMode.absolute, hoursAfterAdministration=0.0) == ""
    assert why(calibration=mod.CalibrationMode.absolute, imageDecayCorrected=True) == ""
    assert "MBq" in why(administeredActivityGBq=1800.0) or "outside" in why(administeredActivityGBq=1800.0)
    assert why(administeredActivityGBq=30.0, allowUnusualActivity=True) == ""


def test_every_enum_offered_by_the_panel_is_accepted_by_the_engine(monkeypatch):
    from TAREDosimetryLib import params

    mod = _import_module_with_stubs(monkeypatch)
    assert {e.value for e in mod.CalibrationMode} == set(params.CALIBRATIONS)
    assert {e.value for e in mod.ReferenceRegion} == set(params.REFERENCE_REGIONS)
    assert {e.value for e in mod.DoseMethod} == set(params.DOSE_METHODS)
    assert {e.value for e in mod.ComputeDevice} == set(params.DEVICES)
    assert {e.value for e in mod.Microsphere} == set(params.MICROSPHERES) | {""}
    assert {e.value for e in mod.Indication} == set(params.INDICATIONS) | {""}
    assert {e.value for e in mod.TreatmentApproach} == set(params.TREATMENT_APPROACHES) | {""}
    for enum_cls in (mod.CalibrationMode, mod.ReferenceRegion, mod.DoseMethod, mod.ComputeDevice, mod.Microsphere,
                     mod.Indication, mod.TreatmentApproach):
        assert all(isinstance(e.label(), str) and e.label() for e in enum_cls)


def test_rules_and_roles_come_from_the_saved_text(monkeypatch):
    import json

    from TAREDosimetryLib.errors import InputError
    from TAREDosimetryLib.evaluation.rules import PRESETS

    mod = _import_module_with_stubs(monkeypatch)
    logic = mod.TAREDosimetryLogic
    assert logic.ruleSet(_panel_values(mod)).rules == PRESETS["hcc-glass"].rules
    custom = dict(PRESETS["hcc-glass"].to_dict(), name="mine")
    custom["rules"][0]["threshold"] = 150.0
    assert logic.ruleSet(_panel_values(mod, rulesJson=json.dumps(custom))).rules[0].threshold == 150.0
    with pytest.raises(InputError):
        logic.ruleSet(_panel_values(mod, rulesJson="{not json"))
    assert logic.savedRoles(_panel_values(mod, segmentRolesJson='{"Lesion A": "tumor"}')) == {"Lesion A": "tumor"}
    assert logic.savedRoles(_panel_values(mod, segmentRolesJson="garbage")) == {}
    assert logic.savedRoles(_panel_values(mod, segmentRolesJson="[1, 2]")) == {}


def test_no_deprecated_table_header_call():
    """SetUseColumnNameAsColumnHeader is deprecated (vtkMRMLTableNode.h) and logs a warning per call."""
    for path in _slicer_side_files():
        assert "SetUseColumnNameAsColumnHeader" not in _read(path), path
    assert "SetUseColumnTitleAsColumnHeader(True)" in _read(os.path.join(GLUE_DIR, "outputnodes.py"))


def test_module_file_stays_thin():
    """The module file holds the module, parameter node, widget and a thin logic; MRML helpers that
    outgrow it go to the TAREDosimetrySlicer package (docs/architecture.md)."""
    with open(MODULE_PY, encoding="utf-8") as fh:
        n_lines = sum(1 for _ in fh)
    assert n_lines < 900, f"TAREDosimetry.py has {n_lines} lines; move MRML helpers into TAREDosimetrySlicer/"
