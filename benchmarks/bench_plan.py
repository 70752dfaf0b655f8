"""Planning and comparison speed on the shared MAA case (ratios in one run).

* voxel plan step: VoxelDoseModel.predict(A) (the Slicer activity slider) against run_case at A
  (the baseline: recomputing the case); goal < 100 ms per step.
* compare: mapping a delivered dose onto the planning segments with Dice and gamma (engine), and a
  rigid registration of the SPECT to a moved copy of itself.

Run: PYTHONPATH=TAREDosimetry python3 benchmarks/bench_plan.py [data dir]
"""

import json
import os
import sys
import time

import numpy as np
import SimpleITK as sitk

HERE = os.path.dirname(os.path.abspath(__file__))


def _best(fn, n=3):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(data_dir):
    from TAREDosimetryLib import DosimetryParams, imaging, run_case
    from TAREDosimetryLib.planning.compare import compare_doses
    from TAREDosimetryLib.planning.registration import resample_onto, rigid_register
    from TAREDosimetryLib.planning.voxel import VoxelDoseModel

    d = os.path.join(data_dir, "maa-spect-patient2")
    spect = imaging.read_image(os.path.join(d, "patient_2_SPECT.nrrd"))
    seg = imaging.read_segmentation(os.path.join(d, "patient_2_Segmentation.seg.nrrd"))
    p = DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.06)
    base = run_case(spect, seg, params=p, rules="hcc-glass")
    model = VoxelDoseModel(base)
    t_run = _best(lambda: run_case(spect, seg, params=p.replace(administered_activity_gbq=2.3), rules="hcc-glass"))
    t_step = _best(lambda: model.predict(2.3), n=10)
    delivered = base.dose_gy.with_array(base.dose_gy.array * np.float32(1.1))
    t_cmp = _best(lambda: compare_doses(base.dose_gy, delivered, seg, p, gamma_options={"implementation": "engine"}), n=2)
    moved_t = sitk.Euler3DTransform()
    moved_t.SetTranslation((5.0, -3.0, 4.0))
    moved = resample_onto(spect, spect.grid, moved_t)
    t_reg = _best(lambda: rigid_register(spect, moved), n=1)
    out = {"run_case_s": t_run, "voxel_plan_step_s": t_step, "speedup_step_vs_run_case": t_run / t_step,
           "compare_map_dice_gamma_s": t_cmp, "rigid_registration_spect_s": t_reg}
    print(json.dumps(out, indent=2))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "plan.json"), "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared", "data"))
