"""
The master side of ``saltext-edge master-config`` (docs/quickstart.rst, step
3): read the master configuration the way ``salt-master`` does, render the
drop-in ``master.d/edge.conf`` that turns on admission by token, install the
reactor SLS at a path that survives upgrades, and check the fleet secret
file. The console script (:mod:`saltext_edge.cli`) parses the arguments.
"""

import os
import shutil
import sys

import saltext_edge
from saltext_edge import fileio as _fileio

SECRET_NAME = "edge-secret"
# outside site-packages, so onedir upgrades (new Python, new path) keep it
DEFAULT_REACTOR_DIR = "/srv/reactor"
REACTOR_NAME = "edge_auth.sls"
DROPIN_NAME = "edge.conf"


def render_master_dropin(secret_file, reactor_path, auto_admit=True):
    """
    Return the text of ``master.d/edge.conf``: auth events carrying the
    token grain, the reactor, the master data cache (for ``edge.report``)
    and the ``edge:`` block.
    """
    return f"""\
# Written by 'saltext-edge master-config' (saltext-edge {saltext_edge.__version__}).
# Admission by token: docs/quickstart.rst (step 3) and docs/configuration.rst.
# Salt 3008+: pending and denied sign-ins carry the minion's edge_token grain
auth_events: true
auth_events_autosign_grains:
  - pend
  - denied
# admission in batches in its own process (docs/concepts.rst, "The admission
# engine"); the salt/auth reactor below then leaves sign-ins to it. An engines
# list in the master file itself is replaced by this one: list its engines here
engines:
  - edge_admission: {{}}
# edge.report reads the grains the master caches
minion_data_cache: true
reactor:
  - 'salt/auth':
    - {reactor_path}
# fleet health (docs/howto/site-goes-dark.rst): add "- edge_fleet: {{}}" to the
# master's own engines list; a list set here would replace it, not extend it
edge:
  shared_secret_file: {secret_file}
  auto_admit: {"true" if auto_admit else "false"}
  on_invalid: keep
"""


def packaged_reactor():
    """Return the path of the reactor SLS shipped in the package."""
    return os.path.join(
        os.path.dirname(os.path.abspath(saltext_edge.__file__)), "reactor", REACTOR_NAME
    )


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


def run(args, stdout=None, stderr=None):
    """
    ``saltext-edge master-config``: print or write the drop-in, install the
    reactor SLS (with ``--write``), check the secret file. Returns the exit
    code: 0 all done and all checks passed, 1 a check failed or a file could
    not be written (nothing half-written), 2 usage.
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
    text = render_master_dropin(args.secret_file, reactor_path, args.auto_admit)
    status = 0
    if not args.write:
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
            with open(packaged_reactor(), encoding="utf-8") as fh_:
                reactor_text = fh_.read()
            _fileio.atomic_write(reactor_path, reactor_text.encode("utf-8"), 0o644)
            if current is not None and current != text:
                shutil.copy2(dropin, dropin + ".bak")
            if current != text:
                _fileio.atomic_write(dropin, text.encode("utf-8"), 0o644)
        except OSError as exc:
            print(f"saltext-edge: cannot write {exc.filename}: {exc.strerror}", file=stderr)
            return 1
        print(f"wrote {dropin} and {reactor_path}; restart salt-master to apply", file=stdout)
    for problem in check_master_secret(args.secret_file, user):
        print(f"saltext-edge: check failed: {problem}", file=stderr)
        status = 1
    if status == 0:
        print(
            f"saltext-edge: ok: {args.secret_file} is readable by the master's user {user} "
            "and by no other user",
            file=stderr,
        )
    return status
