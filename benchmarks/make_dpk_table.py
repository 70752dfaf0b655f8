"""Regenerate the packaged Y-90 dose point kernel table from the shared reference csv.

Usage::

    python3 benchmarks/make_dpk_table.py [path/to/90Y_64.10H_beta.io_processed.csv]

Reads the Graves et al. (2019) Y-90 point kernel (EGSnrc, water, per decay) and writes
``TAREDosimetry/TAREDosimetryLib/dose/data/y90_dpk_graves2019.txt``: one row per spherical shell,
outer radius (cm) and energy deposited per decay (MeV), up to the last shell that holds energy.
The engine needs only these two columns (shell masses follow from the radii, water 1 g/mL).

Reference: Graves SA, Flynn RT, Hyer DE, "Dose point kernels for 2,174 radionuclides",
Med Phys 46 (2019) 5284-5293, doi:10.1002/mp.13789.
"""

import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.environ.get("TARE_DOSIMETRY_TEST_DATA", os.path.join(REPO, "..", "shared", "data"))
CSV_NAME = os.path.join("y90-dpk-graves2019", "90Y_64.10H_beta.io_processed.csv")
OUT = os.path.join(REPO, "TAREDosimetry", "TAREDosimetryLib", "dose", "data", "y90_dpk_graves2019.txt")

HEADER = """\
Y-90 beta dose point kernel in water, energy deposited per decay in spherical shells.
Source: Graves SA, Flynn RT, Hyer DE, "Dose point kernels for 2,174 radionuclides",
Med Phys 46 (2019) 5284-5293, doi:10.1002/mp.13789 (EGSnrc, water 1 g/mL, per decay;
csv as distributed with the MIT-licensed Taranis Slicer extension).
Total energy {total:.4f} MeV per decay; {frac12:.4f} of it within 1.2 cm.
Rows up to the last shell holding energy; shells are 0.01 cm wide to 10 cm, then coarser.
Regenerate with benchmarks/make_dpk_table.py.
columns: outer_radius_cm energy_per_decay_mev"""


def read_graves_csv(path):
    """(outer_radius_cm, energy_mev) arrays from the Graves csv (2 header lines)."""
    table = np.loadtxt(path, delimiter=",", skiprows=2)
    return table[:, 0].copy(), table[:, 1].copy()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else os.path.join(DEFAULT_DATA, CSV_NAME)
    r_cm, e_mev = read_graves_csv(path)
    last = int(np.nonzero(e_mev)[0][-1])
    r_cm, e_mev = r_cm[: last + 1], e_mev[: last + 1]
    header = HEADER.format(total=e_mev.sum(), frac12=e_mev[r_cm <= 1.2 + 1e-9].sum() / e_mev.sum())
    rows = "\n".join(f"{r!r} {e!r}" for r, e in zip(r_cm.tolist(), e_mev.tolist()))
    with open(OUT, "w", encoding="ascii") as f:
        f.write("".join(f"# {line}\n" for line in header.splitlines()))
        f.write(rows + "\n")
    print(f"wrote {OUT}: {len(r_cm)} shells, {e_mev.sum():.6f} MeV per decay")


if __name__ == "__main__":
    main()
