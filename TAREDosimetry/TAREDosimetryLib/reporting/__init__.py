"""Results for people and files: the metrics table (:mod:`.tables`), figures (:mod:`.figures`,
needs matplotlib), the HTML report (:mod:`.html`) and result folders (:mod:`.outputs`).
"""
