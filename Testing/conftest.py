"""Shared fixtures: the engine on sys.path, the shared test data, tiny synthetic cases."""

import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIB_PARENT = os.path.join(REPO, "TAREDosimetry")
if _LIB_PARENT not in sys.path:
    sys.path.insert(0, _LIB_PARENT)


def test_data_dir():
    """Folder of the shared reference data (env TARE_DOSIMETRY_TEST_DATA, default ../shared/data)."""
    return os.environ.get("TARE_DOSIMETRY_TEST_DATA", os.path.join(REPO, "..", "shared", "data"))


test_data_dir.__test__ = False  # not a test


@pytest.fixture(scope="session")
def data_dir():
    d = test_data_dir()
    if not os.path.isdir(d):
        pytest.skip(f"shared test data not found at {d} (set TARE_DOSIMETRY_TEST_DATA)")
    return d


@pytest.fixture(scope="session")
def maa_paths(data_dir):
    spect = os.path.join(data_dir, "maa-spect-patient2", "patient_2_SPECT.nrrd")
    seg = os.path.join(data_dir, "maa-spect-patient2", "patient_2_Segmentation.seg.nrrd")
    if not (os.path.isfile(spect) and os.path.isfile(seg)):
        pytest.skip(f"MAA case not found under {data_dir}/maa-spect-patient2")
    return spect, seg


@pytest.fixture(scope="session")
def analytic_phantom():
    from TAREDosimetryLib.imaging.phantom import make_phantom

    return make_phantom(analytic=True, spacing_mm=5.0)


@pytest.fixture(scope="session")
def demo_phantom():
    from TAREDosimetryLib.imaging.phantom import make_phantom

    return make_phantom(analytic=False)


def box_case(shape=(20, 24, 28), spacing=(2.0, 2.0, 2.0), tumour_uptake=5.0):
    """A liver box with a cubic tumour, uptake known exactly; returns (activity Volume, Segmentation)."""
    from TAREDosimetryLib import Segmentation, Volume
    from TAREDosimetryLib.volume import Grid

    grid = Grid(shape, spacing, (0.0, 0.0, 0.0))
    liver = np.zeros(shape, bool)
    liver[2:-2, 2:-2, 2:-2] = True
    tumour = np.zeros(shape, bool)
    tumour[8:12, 8:12, 8:12] = True
    counts = np.zeros(shape, np.float32)
    counts[liver] = 10.0
    counts[tumour] = 10.0 * tumour_uptake
    seg = Segmentation.from_masks({"liver": liver, "tumour": tumour}, grid)
    return Volume(counts, grid=grid, name="box"), seg


def lung_liver_labels():
    """(Grid, uint8 label map) of a liver with a tumour under lungs, 5 mm voxels: 1 liver (750 mL),
    2 tumour (8 mL, inside the liver's box), 3 lungs (the first 12 planes, 1350 mL), 0 elsewhere."""
    from TAREDosimetryLib.volume import Grid

    grid = Grid((40, 30, 30), (5.0, 5.0, 5.0), (-75.0, -75.0, 0.0))
    lab = np.zeros(grid.shape, np.uint8)
    lab[0:12] = 3
    lab[15:30, 5:25, 5:25] = 1
    lab[18:22, 8:12, 8:12] = 2
    return grid, lab
