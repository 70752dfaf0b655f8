"""Cohort analysis: dose against response, toxicity and survival over many cases."""
