"""``tare-dosimetry presets``: every threshold preset with its scope, rules, table rows and sources."""

import json

HELP = "list the threshold presets with their scope, rules and sources"


def add_parser(sub):
    p = sub.add_parser("presets", help=HELP,
                       description="Every threshold preset: what its thresholds were derived from (scope), each rule "
                       "with its conditions on clinical inputs and the table row it comes from, and the full sources.")
    p.add_argument("--json", action="store_true", help="print the presets as JSON (the rule-file format, with scope)")
    return p


def _scope_lines(rs):
    from ..evaluation.scope import IMAGING_LABELS

    sc = rs.scope
    parts = []
    for key, words in (("indication", "tumour type"), ("microsphere", "microsphere")):
        if sc.get(key):
            parts.append(f"{words}: {', '.join(sc[key])}")
    if sc.get("imaging"):
        parts.append("imaging: " + "; ".join(IMAGING_LABELS.get(i, i) for i in sc["imaging"]))
    for key in ("derived_from", "population", "notes"):
        if sc.get(key):
            parts.append(f"{key.replace('_', ' ')}: {sc[key]}")
    if sc.get("auto_select") is False:
        parts.append("chosen only by name (not from --indication/--microsphere)")
    return parts


def _print_preset(name, rs, default):
    print(f"{name}{' (default)' if name == default else ''}: {rs.description}")
    for line in _scope_lines(rs):
        print(f"  scope  {line}")
    sources = []
    for r in rs.rules:
        if r.source not in sources:
            sources.append(r.source)
        when = f"  [when {r.conditions_text}]" if r.when else ""
        print(f"  rule   {r.role or r.segment:15s} {r.text:30s} {r.label}{when} [{sources.index(r.source) + 1}]")
        if r.row:
            print(f"         {'':15s} row: {r.row}")
    for n, src in enumerate(sources, 1):
        print(f"  [{n}] {src}")
    print()


def main(args):
    from ..evaluation.rules import DEFAULT_PRESET, PRESETS

    if getattr(args, "json", False):
        print(json.dumps({name: rs.to_dict() for name, rs in PRESETS.items()}, indent=2, ensure_ascii=False))
        return 0
    for name, rs in PRESETS.items():
        _print_preset(name, rs, DEFAULT_PRESET)
    print("Clinical inputs (--microsphere, --indication, --treatment-approach, --bilirubin-mg-dl, --hepatic-reserve-pct) "
          "select the conditional rules; a rule whose input is not given is N/A and the case INCOMPLETE.")
    return 0
