"""From a dose map to numbers and verdicts: the metrics grid (:mod:`.sampling`), DVHs
(:mod:`.dvh`), per-segment metrics (:mod:`.metrics`), the lungs (:mod:`.lung`), segment roles
(:mod:`.roles`), threshold rules and their presets (:mod:`.rules`, ``presets/*.json``), and the
result objects (:mod:`.results`).
"""
