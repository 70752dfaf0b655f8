"""Label tables: names for the values of a label-map image."""

import json
import os

from ..errors import InputError

__all__ = ["TOTALSEGMENTATOR_LABELS", "parse_label_names", "is_builtin_table"]

#: TotalSegmentator "total" task, classes 1-14 (the ones met in liver dosimetry).
TOTALSEGMENTATOR_LABELS = {
    1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach",
    7: "pancreas", 8: "adrenal_gland_right", 9: "adrenal_gland_left", 10: "lung_upper_lobe_left",
    11: "lung_lower_lobe_left", 12: "lung_upper_lobe_right", 13: "lung_middle_lobe_right",
    14: "lung_lower_lobe_right",
}


def parse_label_names(spec):
    """{label value: name} from a JSON file, 'v=name,v=name' text, a dict, or 'totalsegmentator'."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        items = spec.items()
    elif is_builtin_table(str(spec)):
        return dict(TOTALSEGMENTATOR_LABELS)
    elif os.path.isfile(str(spec)):
        def no_repeated_keys(pairs):
            keys = [k for k, _ in pairs]
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                raise InputError(f"label table {spec}: label value {twice[0]} is given twice; give each value once")
            return dict(pairs)

        try:
            with open(spec, encoding="utf-8") as fh:
                data = json.load(fh, object_pairs_hook=no_repeated_keys)
        except InputError:
            raise
        except (OSError, ValueError) as exc:
            raise InputError(f"label table {spec}: not valid JSON ({exc})") from None
        if isinstance(data, list):  # [{"value": 5, "name": "liver"}, ...]
            try:
                data = {d["value"]: d["name"] for d in data}
            except (KeyError, TypeError):
                raise InputError(f"label table {spec}: a list must hold objects with 'value' and 'name'") from None
        if not isinstance(data, dict):
            raise InputError(f"label table {spec}: expected an object {{\"5\": \"liver\", ...}}")
        items = data.items()
    else:
        items = []
        for part in str(spec).split(","):
            if "=" not in part:
                raise InputError(f"label names: expected VALUE=NAME pairs or a JSON file, got {part!r} in {spec!r}")
            items.append(tuple(part.split("=", 1)))
    return _checked_table(items, spec)


def _checked_table(items, spec):
    """{value: name} from (value, name) pairs; a value or a name given twice is refused (one of
    them would silently be lost, e.g. '1=liver,1=tumor 1' would keep only the tumour)."""
    out, value_of = {}, {}
    for value, name in items:
        try:
            v = int(str(value).strip())
        except ValueError:
            raise InputError(f"label names: label value {value!r} is not a whole number") from None
        if v <= 0:
            raise InputError(f"label names: label value must be positive, got {v}")
        name = str(name).strip()
        if not name:
            raise InputError(f"label names: label value {v} has an empty name in {spec!r}")
        if v in out:
            raise InputError(f"label names: label value {v} is given twice ({out[v]!r} and {name!r}) in {spec!r}; give each value once")
        if name in value_of:
            raise InputError(
                f"label names: the name {name!r} is given to label values {value_of[name]} and {v} in {spec!r}; give each "
                "label its own name (e.g. 'tumour 1', 'tumour 2')"
            )
        out[v], value_of[name] = name, v
    return out


def is_builtin_table(spec):
    """True when ``spec`` names a built-in label table ('totalsegmentator')."""
    return isinstance(spec, str) and spec.strip().lower() in ("totalsegmentator", "total")
