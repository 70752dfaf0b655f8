"""Run the module's Slicer self-test in a real 3D Slicer, when one is given.

Set ``SLICER_EXECUTABLE`` to the Slicer launcher (e.g. ``/opt/Slicer-5.8.1-linux-amd64/Slicer``)
to run it; without it the test is skipped with the reason.  The command is the one documented in
docs/slicer.md::

    Slicer --no-splash --testing --no-main-window --disable-cli-modules \\
        --additional-module-paths <repo>/TAREDosimetry \\
        --python-code "slicer.selfTests['TAREDosimetry']()"

``--testing`` makes Slicer exit after the code, with status 1 when it raised (qSlicerCoreApplication).
Optional: ``SLICER_SELFTEST_TIMEOUT`` (seconds, default 900), ``SLICER_SELFTEST_MAIN_WINDOW=1`` to run
with the main window (needs a display).
"""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE_DIR = os.path.join(ROOT, "TAREDosimetry")


def _slicer():
    exe = os.environ.get("SLICER_EXECUTABLE", "").strip()
    if not exe:
        pytest.skip("SLICER_EXECUTABLE is not set: no 3D Slicer to run the TAREDosimetry self-test in")
    found = exe if os.path.isfile(exe) else shutil.which(exe)
    if not found:
        pytest.fail(f"SLICER_EXECUTABLE={exe!r} does not name an executable file")
    return found


def slicer_selftest_command(slicer, main_window=False):
    cmd = [slicer, "--no-splash", "--testing", "--disable-cli-modules", "--additional-module-paths", MODULE_DIR,
           "--python-code", "slicer.selfTests['TAREDosimetry']()"]
    if not main_window:
        cmd.insert(2, "--no-main-window")
    return cmd


def test_command_names_the_module_folder_and_the_self_test():
    cmd = slicer_selftest_command("Slicer")
    assert cmd[cmd.index("--additional-module-paths") + 1] == MODULE_DIR
    assert os.path.isfile(os.path.join(MODULE_DIR, "TAREDosimetry.py"))
    assert "--testing" in cmd and cmd[-1] == "slicer.selfTests['TAREDosimetry']()"


def test_self_test_passes_in_slicer():
    slicer = _slicer()
    timeout = float(os.environ.get("SLICER_SELFTEST_TIMEOUT", "900"))
    main_window = os.environ.get("SLICER_SELFTEST_MAIN_WINDOW", "") == "1"
    proc = subprocess.run(slicer_selftest_command(slicer, main_window), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, universal_newlines=True)
    tail = proc.stdout[-6000:]
    assert proc.returncode == 0, f"Slicer self-test failed (exit status {proc.returncode}):\n{tail}"
    assert "Traceback" not in proc.stdout, f"Slicer printed a traceback:\n{tail}"
