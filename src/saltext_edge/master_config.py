"""
The master side of ``saltext-edge master-config`` (docs/quickstart.rst, step
3): read the master configuration the way ``salt-master`` does, render the
drop-in ``master.d/edge.conf`` that turns on admission by token and the fleet
alerts, install the reactor SLS files at a path that survives upgrades, check
the fleet secret file, and (``--check``) show the effective ``reactor:`` and
``engines:`` lists and which file set each entry. The console script
(:mod:`saltext_edge.cli`) parses the arguments.

Salt 3008 (``salt/config/__init__.py``, ``master_config`` and
``include_config``) merges the lists of the drop-ins in ``master.d/`` (in file
name order, duplicates dropped), but a drop-in's list *replaces* the same list
of the main ``master`` file. So the drop-in written here holds every reactor
the product needs and the admission engine; a main file that sets
``reactor:`` is refused with the fix (move it into a drop-in of its own), and
one that sets ``engines:`` gets a drop-in without the engine and a note with
the same fix (admission then runs through the reactor).
"""

import glob
import json
import os
import shutil
import sys

import saltext_edge
from saltext_edge import config as _config
from saltext_edge import fileio as _fileio

SECRET_NAME = "edge-secret"
# outside site-packages, so onedir upgrades (new Python, new path) keep it
DEFAULT_REACTOR_DIR = "/srv/reactor"
REACTOR_NAME = "edge_auth.sls"
ALERT_REACTOR_NAME = "edge_alert.sls"
#: the engine's transition events the alert reactor listens to
ALERT_TAGS = (
    "edge/node/*/offline",
    "edge/node/*/online",
    "edge/site/*/degraded",
    "edge/site/*/recovered",
)
DROPIN_NAME = "edge.conf"
LIST_KEYS = ("reactor", "engines")


def render_master_dropin(secret_file, reactor_path, auto_admit=True, engine=True):
    """
    Return the text of ``master.d/edge.conf``: auth events carrying the
    token grain, the admission engine (``engine``; left out when the main
    file has an ``engines:`` list, which a drop-in's list would replace),
    the reactors (admission at ``reactor_path`` when there is no engine, the
    alert reactor beside it), the master data cache (for ``edge.report``)
    and the ``edge:`` block.
    """
    alert_path = os.path.join(os.path.dirname(reactor_path), ALERT_REACTOR_NAME)
    alerts = "".join(f"  - '{tag}':\n    - {alert_path}\n" for tag in ALERT_TAGS)
    engines = (
        '# admission in batches in its own process (docs/concepts.rst, "The\n'
        '# admission engine"); the salt/auth reactor below then leaves sign-ins to\n'
        "# it. Salt merges the engines: lists of the drop-ins in master.d/, but a\n"
        "# list here REPLACES the one of the main 'master' file: keep your own\n"
        "# engines in a drop-in of their own\n"
        "engines:\n"
        "  - edge_admission: {}\n"
        if engine
        else '# the faster admission engine (docs/concepts.rst, "The admission engine")\n'
        "# is left out: the main 'master' file has an engines: list, which a list\n"
        "# here would replace. Move that list into a drop-in of its own and run\n"
        "# 'saltext-edge master-config --write --force' again\n"
    )
    return f"""\
# Written by 'saltext-edge master-config' (saltext-edge {saltext_edge.__version__}).
# Admission by token: docs/quickstart.rst (step 3) and docs/configuration.rst.
# Salt 3008+: pending and denied sign-ins carry the minion's edge_token grain
auth_events: true
auth_events_autosign_grains:
  - pend
  - denied
{engines}# edge.report reads the grains the master caches
minion_data_cache: true
# Salt merges the reactor: lists of the drop-ins in master.d/, but a list here
# REPLACES the one of the main 'master' file: keep your own reactors in a
# drop-in of their own ('saltext-edge master-config --check' shows the lists)
reactor:
  - 'salt/auth':
    - {reactor_path}
  # fleet alerts (docs/howto/site-goes-dark.rst): post to edge:alerts:url
{alerts}# fleet health: the edge_fleet engine and edge:fleet / edge:alerts go in a
# drop-in of your own, e.g. master.d/edge-fleet.conf (docs/howto/site-goes-dark.rst)
edge:
  shared_secret_file: {secret_file}
  auto_admit: {"true" if auto_admit else "false"}
  on_invalid: keep
"""


def packaged_reactor(name=REACTOR_NAME):
    """Return the path of the reactor SLS ``name`` shipped in the package."""
    return os.path.join(os.path.dirname(os.path.abspath(saltext_edge.__file__)), "reactor", name)


def config_files(config_dir):
    """
    Return the files ``salt-master`` reads in ``config_dir``, in its order:
    the main ``master`` file, then every file matched by its
    ``default_include`` (``master.d/*.conf``) and ``include`` globs,
    each as ``(path, options)``; a file that does not parse has ``{}``.
    """
    import salt.config

    main = os.path.join(config_dir, "master")

    def read(path):
        try:
            return salt.config._read_conf_file(path) or {}
        except Exception:  # Salt logs and skips it the same way
            return {}

    main_opts = read(main) if os.path.isfile(main) else {}
    out = [(main, main_opts)]
    includes = [main_opts.get("default_include") or "master.d/*.conf"]
    extra = main_opts.get("include") or []
    includes += [extra] if isinstance(extra, str) else list(extra)
    for pattern in includes:
        pattern = os.path.expanduser(str(pattern))
        if not os.path.isabs(pattern):
            pattern = os.path.join(config_dir, pattern)
        out.extend((path, read(path)) for path in sorted(glob.glob(pattern)))
    return out


def lists_report(config_dir, opts):
    """
    Where the effective ``reactor:`` and ``engines:`` of ``opts`` (the master
    options read from ``config_dir``) come from. Returns ``(lines, problems)``:
    ``lines`` to print, one entry a line with the file(s) that set it;
    ``problems``: a main-file list that a drop-in's list replaces (its
    entries are lost), with the fix.
    """
    files = config_files(config_dir)
    main, main_opts = files[0]
    lines, problems = [], []
    for key in LIST_KEYS:
        effective = opts.get(key) or []
        if not isinstance(effective, list):
            effective = [effective]
        setters = [(p, o[key]) for p, o in files if isinstance(o.get(key), list) and o[key]]
        dropins = [p for p, _ in setters if p != main]
        # Salt uses the drop-ins' lists when there are any, else the main file's
        used = [(p, v) for p, v in setters if p != main] if dropins else setters
        lines.append(f"{key}: ({len(effective)} effective)")
        for entry in effective:
            where = [os.path.relpath(p, config_dir) for p, v in used if entry in v]
            text = json.dumps(entry, sort_keys=True)
            lines.append(f"  - {text}    # {', '.join(where) or 'Salt default'}")
        main_list = main_opts.get(key) if isinstance(main_opts.get(key), list) else []
        lost = [e for e in main_list if e not in effective]
        if dropins and lost:
            problems.append(
                f"{main} sets {key}: but {', '.join(dropins)} also set(s) it, and a drop-in's "
                f"list replaces the main file's: {len(lost)} entr{'y' if len(lost) == 1 else 'ies'}"
                f" of {main} {'is' if len(lost) == 1 else 'are'} ignored"
                f" ({', '.join(json.dumps(e) for e in lost)}); move them into a drop-in of"
                f" their own, e.g. {os.path.join(config_dir, 'master.d', key + '.conf')}"
                " (the drop-ins' lists are merged)"
            )
    return lines, problems


def _alerts_notes(opts, reactor_dir):
    notes = []
    engines = opts.get("engines") or []
    names = {e if isinstance(e, str) else next(iter(e), None) for e in engines if e}
    if "edge_fleet" not in names:
        notes.append(
            "the edge_fleet engine is not in the effective engines: list: no fleet health, "
            "no alerts (docs/howto/site-goes-dark.rst)"
        )
    alert_sls = os.path.join(reactor_dir, ALERT_REACTOR_NAME)
    wired = any(
        isinstance(r, dict) and any(alert_sls in (v or []) for v in r.values())
        for r in opts.get("reactor") or []
    )
    if not wired:
        notes.append(f"{alert_sls} is not in the effective reactor: list: no alerts")
    alerts = _config.edge_conf(opts, lenient=True).get("alerts")
    url = alerts.get("url") if isinstance(alerts, dict) else None
    if not url:
        notes.append("edge:alerts:url is not set: the alert reactor posts nothing")
    return notes


def read_master_opts(config_dir, stderr):
    """Return the master options read from ``config_dir`` or ``None`` (message on stderr)."""
    conf_file = os.path.join(config_dir, "master")
    if not os.path.isdir(config_dir):
        print(f"saltext-edge: no such configuration directory: {config_dir}", file=stderr)
        return None
    try:
        import salt.config

        return salt.config.master_config(conf_file)
    except Exception as exc:
        print(
            f"saltext-edge: cannot read the master configuration {conf_file}: "
            f"{exc.__class__.__name__}",
            file=stderr,
        )
        return None


def check_master_secret(secret_file, user):
    """
    Check the fleet secret file for a master running as ``user``: owner,
    mode, readable by ``user`` (:mod:`saltext_edge.fsperm`) and usable as a
    secret (``shared_secret.master_secrets``: length and any strength rule it
    enforces). Returns a list of problems (empty: all good); no message holds
    the secret.
    """
    from saltext_edge import fsperm
    from saltext_edge import shared_secret as _secrets

    problems = fsperm.secret_file_problems(secret_file, user)
    if os.path.exists(secret_file):
        try:
            _secrets.master_secrets({"edge": {"shared_secret_file": secret_file}}, environ={})
        except _secrets.SecretError as exc:
            problems.append(str(exc))
    return problems


def _shadowed(config_dir, key):
    """What is wrong with a ``key:`` list in the main file a list of ours would replace, and the fix."""
    return (
        f"{os.path.join(config_dir, 'master')} sets {key}:, and the {key}: list of "
        f"{DROPIN_NAME} would replace it (Salt does not merge a drop-in's list into the main "
        "file's); move that list into a drop-in of its own, e.g. "
        f"{os.path.join(config_dir, 'master.d', key + '.conf')}"
    )


def run(args, stdout=None, stderr=None):
    """
    ``saltext-edge master-config``: print or write the drop-in, install the
    reactor SLS files (with ``--write``), or (``--check``) print the effective
    ``reactor:`` and ``engines:`` lists with the file that set each entry;
    always check the secret file and that no list of the main file is lost.
    Returns the exit code: 0 all done and all checks passed, 1 a check failed
    or a file could not be written (nothing half-written), 2 usage.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if args.secret_file is None:
        args.secret_file = os.path.join(os.path.abspath(args.config_dir), SECRET_NAME)
    for name in ("secret_file", "reactor_dir"):
        if not os.path.isabs(getattr(args, name)):
            print(f"saltext-edge: --{name.replace('_', '-')} must be an absolute path", file=stderr)
            return 2
    opts = read_master_opts(args.config_dir, stderr)
    if opts is None:
        return 1
    from saltext_edge import fsperm

    user = fsperm.master_user(opts)
    reactor_path = os.path.join(args.reactor_dir, REACTOR_NAME)
    main_conf = config_files(args.config_dir)[0][1] or {}
    main_engines = bool(main_conf.get("engines"))
    text = render_master_dropin(
        args.secret_file, reactor_path, args.auto_admit, engine=not main_engines
    )
    status = 0
    check = getattr(args, "check", False)
    lines, problems = lists_report(args.config_dir, opts)
    if args.write and main_conf.get("reactor"):
        print(
            f"saltext-edge: {_shadowed(args.config_dir, 'reactor')}, and run this again",
            file=stderr,
        )
        return 1
    if check:
        stdout.write("\n".join(lines) + "\n")
        for note in _alerts_notes(opts, args.reactor_dir):
            print(f"saltext-edge: note: {note}", file=stderr)
    elif not args.write:
        stdout.write(text)
    else:
        dropin_dir = os.path.join(args.config_dir, "master.d")
        dropin = os.path.join(dropin_dir, DROPIN_NAME)
        try:
            with open(dropin, encoding="utf-8") as fh_:
                current = fh_.read()
        except FileNotFoundError:
            current = None
        except OSError as exc:
            print(f"saltext-edge: cannot read {dropin}: {exc.strerror}", file=stderr)
            return 1
        if current is not None and current != text and not args.force:
            print(
                f"saltext-edge: {dropin} exists and differs; not replacing it "
                "(compare with 'saltext-edge master-config', or use --force to replace it "
                "and keep the old one as edge.conf.bak)",
                file=stderr,
            )
            return 1
        try:
            os.makedirs(dropin_dir, mode=0o755, exist_ok=True)
            os.makedirs(args.reactor_dir, mode=0o755, exist_ok=True)
            for name in (REACTOR_NAME, ALERT_REACTOR_NAME):
                with open(packaged_reactor(name), encoding="utf-8") as fh_:
                    reactor_text = fh_.read()
                _fileio.atomic_write(
                    os.path.join(args.reactor_dir, name), reactor_text.encode("utf-8"), 0o644
                )
            if current is not None and current != text:
                shutil.copy2(dropin, dropin + ".bak")
            if current != text:
                _fileio.atomic_write(dropin, text.encode("utf-8"), 0o644)
        except OSError as exc:
            print(f"saltext-edge: cannot write {exc.filename}: {exc.strerror}", file=stderr)
            return 1
        print(
            f"wrote {dropin}, {reactor_path} and "
            f"{os.path.join(args.reactor_dir, ALERT_REACTOR_NAME)}; restart salt-master to apply",
            file=stdout,
        )
        if main_engines:
            print(
                f"saltext-edge: note: {_shadowed(args.config_dir, 'engines')}, and run this "
                f"again with --force: until then {DROPIN_NAME} leaves the admission engine out "
                "and admission runs through the salt/auth reactor",
                file=stderr,
            )
    for problem in problems + check_master_secret(args.secret_file, user):
        print(f"saltext-edge: check failed: {problem}", file=stderr)
        status = 1
    if status == 0:
        print(
            f"saltext-edge: ok: {args.secret_file} is readable by the master's user {user} "
            "and by no other user",
            file=stderr,
        )
    return status
