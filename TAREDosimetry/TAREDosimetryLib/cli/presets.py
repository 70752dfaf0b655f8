"""``tare-dosimetry presets``: the threshold presets, their rules and sources."""

HELP = "list the threshold presets and their sources"


def add_parser(sub):
    return sub.add_parser("presets", help=HELP)


def main(args):
    from ..evaluation.rules import DEFAULT_PRESET, PRESETS

    for name, rs in PRESETS.items():
        print(f"{name}{' (default)' if name == DEFAULT_PRESET else ''}: {rs.description}")
        for r in rs.rules:
            print(f"    {r.role:13s} {r.text:32s} {r.label} [{r.source}]")
    return 0
