"""Planning and comparison speed on the shared MAA case (ratios in one run).

* voxel plan step: VoxelDoseModel.predict(A), and the Slicer activity slider's whole step
  (PlanExplorer.step: predicted metrics and the rule evaluations that colour the segments) against
  run_case at A (the baseline: recomputing the case); goal < 100 ms per slider step.
* compare: mapping a delivered dose onto the planning segments with Dice and gamma (engine), and a
  rigid registration of the SPECT to a copy of itself moved by a known rigid transform (time and the
  largest error where there are counts; 74 s before the masked, sampled registration).

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
    from TAREDosimetryLib.planning.interactive import PlanExplorer
    from TAREDosimetryLib.planning.prescription import build_prescription
    from TAREDosimetryLib.planning.registration import resample_onto, rigid_register, transform_error_mm
    from TAREDosimetryLib.planning.voxel import VoxelDoseModel

    d = os.path.join(data_dir, "maa-spect-patient2")
    spect = imaging.read_image(os.path.join(d, "patient_2_SPECT.nrrd"))
    seg = imaging.read_segmentation(os.path.join(d, "patient_2_Segmentation.seg.nrrd"))
    p = DosimetryParams(administered_activity_gbq=1.0, lung_shunt_fraction=0.06)
    base = run_case(spect, seg, params=p, rules="hcc-glass")
    model = VoxelDoseModel(base)
    t_run = _best(lambda: run_case(spect, seg, params=p.replace(administered_activity_gbq=2.3), rules="hcc-glass"))
    t_step = _best(lambda: model.predict(2.3), n=10)
    explorer = PlanExplorer(model, build_prescription("glass", tumor_target_gy=205))
    t_slider = _best(lambda: explorer.step(2.3), n=10)
    delivered = base.dose_gy.with_array(base.dose_gy.array * np.float32(1.1))
    t_cmp = _best(lambda: compare_doses(base.dose_gy, delivered, seg, p, gamma_options={"implementation": "engine"}), n=2)
    moved_t = sitk.Euler3DTransform()
    lo, hi = spect.grid.physical_bounds_mm()
    moved_t.SetCenter(tuple(float(v) for v in (lo + hi) / 2))
    moved_t.SetRotation(np.radians(2.0), np.radians(-1.5), np.radians(2.5))
    moved_t.SetTranslation((5.0, -3.0, 4.0))
    moved = resample_onto(spect, spect.grid, moved_t)
    found = {}
    t_reg = _best(lambda: found.update(t=rigid_register(spect, moved)[0]), n=1)
    hot = np.argwhere(spect.array > 0.05 * spect.array.max())
    box = spect.grid.crop(tuple(slice(a, b + 1) for a, b in zip(hot.min(0), hot.max(0))))
    out = {"run_case_s": t_run, "voxel_plan_step_s": t_step, "slider_step_s": t_slider, "speedup_slider_step_vs_run_case": t_run / t_slider,
           "speedup_step_vs_run_case": t_run / t_step, "compare_map_dice_gamma_s": t_cmp, "rigid_registration_spect_s": t_reg,
           "rigid_registration_error_mm": transform_error_mm(found["t"], moved_t.GetInverse(), box),
           "rigid_registration_spect_s_before": 74.1}
    print(json.dumps(out, indent=2))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "plan.json"), "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared", "data"))
