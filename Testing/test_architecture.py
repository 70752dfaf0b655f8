"""The engine's shape: functions of one step, run_case as the list of the pipeline's steps, and the
stage packages the architecture notes describe (docs/architecture.md).

The import layers themselves are checked by import-linter in CI (contracts in pyproject.toml).
"""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "TAREDosimetry", "TAREDosimetryLib")
MAX_FUNCTION_LINES = 60


def _engine_py_files():
    out = []
    for dirpath, dirnames, filenames in os.walk(LIB):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        out += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py")]
    return sorted(out)


def _code_lines(func):
    """Lines of a function from its first statement after the docstring to its end."""
    body = func.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        start = body[1].lineno if len(body) > 1 else first.end_lineno
    else:
        start = first.lineno
    return func.end_lineno - start + 1


@pytest.mark.parametrize("path", _engine_py_files(), ids=lambda p: os.path.relpath(p, LIB))
def test_every_engine_function_is_one_step_of_at_most_60_lines(path):
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    long = [(n.name, _code_lines(n)) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(n) > MAX_FUNCTION_LINES]
    assert not long, f"split these into steps of at most {MAX_FUNCTION_LINES} lines: {long}"


def test_run_case_calls_the_pipeline_steps_in_data_flow_order():
    with open(os.path.join(LIB, "pipeline.py"), encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    run_case = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run_case")
    called = [n.func.id for n in ast.walk(run_case) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    steps = ["check_inputs", "resolve_roles", "check_required_inputs", "build_metrics_grid", "whole_liver_step",
             "derive_normal_liver", "derive_perfused_normal", "activity_step", "density_step", "dose_step",
             "dose_method_check", "sample_maps", "segment_results_step",
             "lung_step", "partial_volume_step", "tn_ratio_step", "rules_step", "scope_step"]
    order = [called.index(s) for s in steps]
    assert order == sorted(order), f"run_case calls the steps out of order: {called}"


def test_architecture_notes_name_every_stage_package_and_module():
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as fh:
        notes = fh.read()
    for path in _engine_py_files():
        rel = os.path.relpath(path, LIB).replace(os.sep, "/")
        name = os.path.basename(rel)
        if name in ("__init__.py", "__main__.py") or rel.startswith("cli/"):
            continue
        assert re.search(rf"`[^`]*{re.escape(name)}`|\b{re.escape(name[:-3])}\b", notes), f"docs/architecture.md does not mention {rel}"
    for package in ("imaging/", "dose/", "evaluation/", "reporting/", "cli/"):
        assert package in notes, package


def test_the_packages_import_their_modules_when_a_name_is_first_used():
    """`import TAREDosimetryLib` loads neither NumPy nor a stage; a public name of the package,
    of imaging/ or of batch/ imports its module on first use; unknown names are AttributeErrors."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import TAREDosimetryLib as T, TAREDosimetryLib.imaging as I, TAREDosimetryLib.batch as B\n"
        "print('BEFORE', 'numpy' in sys.modules, 'TAREDosimetryLib.pipeline' in sys.modules)\n"
        "print('NAMES', T.run_case.__module__, I.read_segmentation.__module__, B.run_manifest.__module__, 'run_case' in dir(T))\n"
        "try:\n    T.no_such_name\nexcept AttributeError as exc:\n    print('MISSING', exc)\n"
    )
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "TAREDosimetry")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert "BEFORE False False" in r.stdout, r.stdout + r.stderr
    assert ("NAMES TAREDosimetryLib.pipeline TAREDosimetryLib.imaging.segmentation_io TAREDosimetryLib.batch.runner True"
            in r.stdout), r.stdout + r.stderr
    assert "MISSING module 'TAREDosimetryLib' has no attribute 'no_such_name'" in r.stdout
