"""
Console script ``saltext-edge`` (run on the master, as root or as the master's
user; it does not drop privileges the way ``salt-run`` does).

``saltext-edge --version`` prints the installed version.

``saltext-edge master-config [-c CONFIG_DIR] [--write | --check]`` prints (or
writes to ``CONFIG_DIR/master.d/edge.conf``) the master drop-in that turns on
admission by token and the fleet alerts, installs the reactor SLS files at a
path that survives upgrades, and checks the fleet secret file: present, owner
and mode, readable by the master's ``user``, strong enough (see
``docs/quickstart.rst``, step 3). ``--check`` prints the effective
``reactor:`` and ``engines:`` lists instead, with the file that set each entry,
and fails when a list of the main file is lost to a drop-in's.

``saltext-edge site-key SITE [-c CONFIG_DIR]`` reads the master configuration
the way ``salt-master`` does (``CONFIG_DIR/master`` plus ``master.d/``,
default ``/etc/salt``) and the fleet secret from ``edge:shared_secret_file``,
``edge:shared_secret`` or ``SALT_SHARED_SECRET`` (first found wins), and
prints the site key ``K_site`` on stdout, for provisioning pipelines. Nothing
is logged; errors go to stderr without secret material.

``saltext-edge new-secret [--out FILE]`` makes a fleet secret good enough for
the master (256 random bits, URL-safe base64) and prints it, or writes it to a
NEW file readable by the master's user only (``root:salt 0640``, or 0600 on a
master running as root).

``saltext-edge enrollment-key --site SITE --path FILE [--uses N] [--expires
DURATION] [--ids GLOB] [--note TEXT] [-c CONFIG_DIR]`` creates an enrollment
key like ``salt-run edge.enrollment_key`` (docs/enrollment.rst): the key
string goes to the NEW file FILE (mode 0600), its public summary to stdout
as JSON.

Exit codes: 0 success, 1 no usable secret / bad config / a failed check,
2 usage error.
"""

import argparse
import os
import sys

import saltext_edge
from saltext_edge import master_config as _master_config

DEFAULT_CONFIG_DIR = os.environ.get("SALT_CONFIG_DIR", "/etc/salt")


def _add_config_dir(cmd):
    cmd.add_argument(
        "-c",
        "--config-dir",
        default=DEFAULT_CONFIG_DIR,
        help="Salt configuration directory holding the 'master' file (default: /etc/salt)",
    )


def _parser():
    """
    Return the argument parser. Each subcommand sets ``func`` (called with
    the parsed arguments, returns the exit code): add one with
    ``sub.add_parser(...)`` and ``set_defaults(func=...)``.
    """
    parser = argparse.ArgumentParser(
        prog="saltext-edge", description="saltext-edge helper commands (run on the master)"
    )
    parser.add_argument(
        "--version", action="version", version=f"saltext-edge {saltext_edge.__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    site = sub.add_parser(
        "site-key",
        help="print the site key K_site of SITE, derived from the master's fleet secret",
    )
    site.add_argument("site", metavar="SITE", help="site name: 1-64 of [A-Za-z0-9._-]")
    _add_config_dir(site)
    site.set_defaults(func=lambda args: site_key_main(args.site, args.config_dir))

    mc = sub.add_parser(
        "master-config",
        help="print or write the master drop-in for admission by token, and check the secret",
    )
    _add_config_dir(mc)
    mc.add_argument(
        "--secret-file",
        default=None,
        help="the fleet secret file (default: CONFIG_DIR/edge-secret, i.e. /etc/salt/edge-secret)",
    )
    mc.add_argument(
        "--reactor-dir",
        default=_master_config.DEFAULT_REACTOR_DIR,
        help="where the reactor SLS is installed, outside Salt's Python so upgrades "
        f"keep the path (default: {_master_config.DEFAULT_REACTOR_DIR})",
    )
    mc.add_argument(
        "--no-auto-admit",
        dest="auto_admit",
        action="store_false",
        help="only record tokens; admit with 'salt-run edge.accept_pending'",
    )
    mode = mc.add_mutually_exclusive_group()
    mode.add_argument(
        "--write",
        action="store_true",
        help="write CONFIG_DIR/master.d/edge.conf and the reactor SLS files (default: print)",
    )
    mode.add_argument(
        "--check",
        action="store_true",
        help="print the effective reactor: and engines: lists and which file set each entry",
    )
    mc.add_argument(
        "--force",
        action="store_true",
        help="with --write: replace a different existing drop-in (kept as edge.conf.bak)",
    )
    mc.set_defaults(func=_master_config.run)

    enroll = sub.add_parser(
        "enrollment-key",
        help="create an enrollment key (limited uses, expiry) and write it to a new 0600 file",
    )
    enroll.add_argument("--site", required=True, help="site name: 1-64 of [A-Za-z0-9._-]")
    enroll.add_argument(
        "--path", required=True, metavar="FILE", help="new file for the key string (mode 0600)"
    )
    enroll.add_argument(
        "--uses", type=int, default=1, help="how many nodes it may admit (default: 1)"
    )
    enroll.add_argument(
        "--expires", default="24h", help="validity: 90s, 30m, 24h, 7d, 2w (default: 24h)"
    )
    enroll.add_argument(
        "--ids", default=None, metavar="GLOB", help="minion-id glob the nodes must match"
    )
    enroll.add_argument("--note", default=None, help="free text shown in the listing")
    _add_config_dir(enroll)
    enroll.set_defaults(func=enrollment_key_main)
    new = sub.add_parser("new-secret", help="make a random fleet secret (256 bits)")
    new.add_argument("--out", metavar="FILE", help="write it to this new file instead of stdout")
    _add_config_dir(new)
    new.set_defaults(func=lambda args: new_secret_main(args.out, args.config_dir))
    return parser


def new_secret_main(out=None, config_dir=None, stdout=None, stderr=None):
    """
    Make a fleet secret (``secrets.token_urlsafe(32)``: 256 random bits) and
    print it, or write it to the new file ``out`` (never overwritten) with the
    owner and mode the master in ``config_dir`` needs (``root:salt 0640`` for
    a master running as ``salt``, else 0600). Returns the process exit code.
    """
    import secrets

    from saltext_edge import fsperm

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    value = secrets.token_urlsafe(32)
    if out is None:
        print(value, file=stdout)
        return 0
    opts = {}
    if config_dir and os.path.isfile(os.path.join(config_dir, "master")):
        opts = _master_config.read_master_opts(config_dir, stderr)
        if opts is None:
            return 1
    try:
        mode = fsperm.write_secret_file(out, value + "\n", opts)
    except OSError as exc:
        print(f"saltext-edge: cannot create {out}: {exc.strerror}", file=stderr)
        return 1
    print(f"saltext-edge: wrote a new fleet secret to {out} (mode {mode:04o})", file=stderr)
    return 0


def enrollment_key_main(args, stdout=None, stderr=None):
    """
    Create an enrollment key from the parsed ``args`` (see the module
    docstring) with the master config in ``args.config_dir``. Returns the
    process exit code; prints the public summary (JSON) on success.
    """
    import json

    from saltext_edge import enrollment as _enr
    from saltext_edge import enrollment_admin as _enr_admin
    from saltext_edge import shared_secret as _secrets
    from saltext_edge.admission.policy import AdmissionError

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        _enr.new_record(
            args.site, uses=args.uses, expires=args.expires, ids=args.ids, note=args.note
        )
        _enr_admin.check_new_path(args.path)
    except (_enr.EnrollmentError, _enr_admin.KeyFileError, ValueError) as exc:
        print(f"saltext-edge: {exc}", file=stderr)
        return 2
    opts = _master_config.read_master_opts(args.config_dir, stderr)
    if opts is None:
        return 1
    try:
        ret = _enr_admin.create(
            opts,
            args.site,
            args.path,
            uses=args.uses,
            expires=args.expires,
            ids=args.ids,
            note=args.note,
        )
    except (
        _enr.EnrollmentError,
        _enr_admin.KeyFileError,
        _secrets.SecretError,
        AdmissionError,
    ) as exc:
        print(f"saltext-edge: {exc}", file=stderr)
        return 1
    print(json.dumps(ret, sort_keys=True), file=stdout)
    return 0


def site_key_main(site, config_dir, stdout=None, stderr=None):
    """
    Print ``K_site`` of ``site`` using the master config in ``config_dir``.
    Returns the process exit code.
    """
    from saltext_edge import shared_secret as _secrets
    from saltext_edge import tokens as _token

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        _token.validate_site(site)
    except _token.TokenError as exc:
        print(f"saltext-edge: {exc}", file=stderr)
        return 2
    opts = _master_config.read_master_opts(config_dir, stderr)
    if opts is None:
        return 1
    try:
        key = _secrets.master_site_key(opts, site)
    except (_secrets.SecretError, _token.TokenError) as exc:
        print(f"saltext-edge: {exc}", file=stderr)
        return 1
    print(key, file=stdout)
    return 0


def main(argv=None):
    """Entry point of the ``saltext-edge`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
