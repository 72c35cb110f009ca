"""
Settings of the minion's other configuration files (the main ``minion``
file, the other ``minion.d/*.conf``) that contradict the drop-in of
``edge.minion_config``, and which value wins. Values of secret-looking
options are masked.
"""

import json
import os

import yaml

HIDDEN = "<hidden>"
_CREDENTIAL_KEYS = (
    "site_key",
    "site_key_file",
    "shared_secret",
    "shared_secret_file",
    "enrollment_key",
    "enrollment_key_file",
)
_SECRET_KEY_HINTS = (
    "secret",
    "password",
    "passwd",
    "site_key",
    "enrollment_key",
    "token",
    "private",
)


def mask(value, key=""):
    """Hide values of secret-looking keys (recursively) before showing them."""
    lowered = key.lower()
    if value is None:
        return None
    if (
        any(hint in lowered for hint in _SECRET_KEY_HINTS)
        and not lowered.endswith("_file")
        and not isinstance(value, (dict, list))
    ):
        return HIDDEN
    if isinstance(value, dict):
        return {str(k): mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(item, key) for item in value]
    return value


def config_files(name, main_config=None):
    """
    The other files that make up the minion's configuration, in the order
    Salt reads them: the main file, then ``minion.d/*.conf`` sorted.
    Returns ``[(path, position)]`` where position is ``"main"``, ``"before"``
    or ``"after"`` (relative to the drop-in, which wins over earlier files).
    """
    dropin_dir = os.path.dirname(os.path.abspath(name))
    if main_config is None:
        main_config = os.path.join(os.path.dirname(dropin_dir), "minion")
    files = []
    if main_config and os.path.isfile(main_config):
        files.append((main_config, "main"))
    try:
        entries = sorted(os.listdir(dropin_dir))
    except OSError:
        entries = []
    base = os.path.basename(name)
    for entry in entries:
        if not entry.endswith(".conf") or entry == base:
            continue
        path = os.path.join(dropin_dir, entry)
        if os.path.isfile(path):
            files.append((path, "before" if entry < base else "after"))
    return files


def find_conflicts(plan, main_config=None):
    """
    Return ``(conflicts, problems)``: each conflict is ``{"file", "option",
    "value", "managed", "effective"}`` where ``effective`` says whose value the
    minion ends up with (``"drop-in"``, ``"other file"`` or ``"merged"``);
    problems are files that could not be read or parsed. Values of
    secret-looking options are masked.
    """
    conflicts, problems = [], []
    managed = plan["data"]
    for path, position in config_files(plan["path"], main_config):
        try:
            with open(path, encoding="utf-8") as fh_:
                loaded = yaml.safe_load(fh_)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            problems.append(f"{path}: cannot be read as YAML ({err.__class__.__name__})")
            continue
        if loaded is None:
            continue
        if not isinstance(loaded, dict):
            problems.append(f"{path}: not a mapping of options")
            continue
        for option, ours in managed.items():
            if option not in loaded:
                continue
            theirs = loaded[option]
            if option == "edge" and isinstance(theirs, dict) and isinstance(ours, dict):
                items = []
                for sub in sorted(theirs, key=str):
                    if sub in ours:
                        if theirs[sub] != ours[sub]:
                            items.append((f"edge:{sub}", theirs[sub], ours[sub]))
                    elif sub in _CREDENTIAL_KEYS:
                        items.append((f"edge:{sub}", theirs[sub], None))
            elif theirs != ours:
                items = [(option, theirs, ours)]
            else:
                items = []
            for label, value, mine in items:
                if position == "main":
                    effective = "drop-in"
                elif position == "after" and not isinstance(mine, (list, dict)):
                    effective = "other file"
                elif isinstance(mine, (list, dict)) or isinstance(value, (list, dict)):
                    effective = "merged"
                else:
                    effective = "drop-in"
                leaf = label.split(":")[-1]
                conflicts.append(
                    {
                        "file": path,
                        "option": label,
                        "value": mask(value, leaf),
                        "managed": mask(mine, leaf),
                        "effective": effective,
                    }
                )
    return conflicts, problems


def describe_conflicts(conflicts):
    """One line per conflict, for the state's comment."""
    lines = []
    for item in conflicts:
        how = {
            "drop-in": "the drop-in wins",
            "other file": "that file wins over the drop-in",
            "merged": "Salt merges lists/dicts across minion.d files",
        }[item["effective"]]
        lines.append(
            f"{item['option']} is {json.dumps(item['value'], default=str)} in {item['file']} "
            f"(managed: {json.dumps(item['managed'], default=str)}; {how})"
        )
    return lines
