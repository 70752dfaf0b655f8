"""Pre-treatment planning and predicted-vs-delivered comparison.

From an MAA SPECT/CT (or typed-in volumes) to the activity to order, and from the post-treatment
scan back to the plan.  One concept per module::

    compartments   closed-form formulas: MIRD single compartment, partition model, lung dose
    bsa            the empirical BSA method of resin microspheres
    lsf            lung shunt fraction from SPECT/CT counts or planar geometric means
    vials          decay to the infusion time, residual, glass vial sizes by day and hour
    inputs         volumes, masses, T/N and LSF: typed in, or measured on the MAA case
    models         MIRD and partition models as objects predicting compartment metrics
    voxel          the MAA dose map per GBq scaled to any activity (equals run_case at that activity)
    prescription   targets and limits as threshold rules (defaults from the device's preset)
    search         the activity meeting the targets under the limits, and the binding constraint
    plan           all models, the recommended activity, the what-if table (plan.json)
    territories    multi-compartment plans: one injection per territory, joint lung and liver limits on the sum
    territorymodels  each territory's model (typed-in volumes, or the MAA counts of its segment)
    territoryplan  the multi-territory plan (plan.json)
    registration   rigid (mutual information, multi-resolution) and B-spline registration, .tfm files
    gamma          gamma index (pymedphys when installed, else the engine's own search)
    compare        delivered dose mapped onto the planning segments; differences, Dice, gamma, activity bands
    planreport     the plan and comparison sections of report.html
    outputs        the plan and compare result folders (atomic, as ``run``'s)
"""
