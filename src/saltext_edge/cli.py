"""
Console script ``saltext-edge``.

``saltext-edge site-key SITE [-c CONFIG_DIR]`` reads the master configuration
the way ``salt-master`` does (``CONFIG_DIR/master`` plus ``master.d/``,
default ``/etc/salt``) and the fleet secret from ``edge:shared_secret_file``,
``edge:shared_secret`` or ``SALT_SHARED_SECRET`` (first found wins), and
prints the site key ``K_site`` on stdout, for provisioning pipelines. Nothing
is logged; errors go to stderr without secret material.

``saltext-edge new-secret [--out FILE]`` makes a fleet secret good enough for
the master (256 random bits, URL-safe base64) and prints it, or writes it to a
NEW file with mode 0600.

``saltext-edge enrollment-key --site SITE --path FILE [--uses N] [--expires
DURATION] [--ids GLOB] [--note TEXT] [-c CONFIG_DIR]`` creates an enrollment
key like ``salt-run edge.enrollment_key`` (docs/enrollment.rst): the key
string goes to the NEW file FILE (mode 0600), its public summary to stdout
as JSON.

Exit codes: 0 success, 1 no usable secret / bad config, 2 usage error.
"""

import argparse
import os
import sys


def _parser():
    parser = argparse.ArgumentParser(
        prog="saltext-edge", description="saltext-edge helper commands (run on the master)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    site = sub.add_parser(
        "site-key",
        help="print the site key K_site of SITE, derived from the master's fleet secret",
    )
    site.add_argument("site", metavar="SITE", help="site name: 1-64 of [A-Za-z0-9._-]")
    site.add_argument(
        "-c",
        "--config-dir",
        default=os.environ.get("SALT_CONFIG_DIR", "/etc/salt"),
        help="Salt configuration directory holding the 'master' file (default: /etc/salt)",
    )
    enroll = sub.add_parser(
        "enrollment-key",
        help="create an enrollment key (limited uses, expiry) and write it to a new 0600 file",
    )
    enroll.add_argument("--site", required=True, help="site name: 1-64 of [A-Za-z0-9._-]")
    enroll.add_argument("--path", required=True, metavar="FILE", help="new file for the key string (mode 0600)")
    enroll.add_argument("--uses", type=int, default=1, help="how many nodes it may admit (default: 1)")
    enroll.add_argument("--expires", default="24h", help="validity: 90s, 30m, 24h, 7d, 2w (default: 24h)")
    enroll.add_argument("--ids", default=None, metavar="GLOB", help="minion-id glob the nodes must match")
    enroll.add_argument("--note", default=None, help="free text shown in the listing")
    enroll.add_argument(
        "-c",
        "--config-dir",
        default=os.environ.get("SALT_CONFIG_DIR", "/etc/salt"),
        help="Salt configuration directory holding the 'master' file (default: /etc/salt)",
    )
    new = sub.add_parser("new-secret", help="make a random fleet secret (256 bits)")
    new.add_argument("--out", metavar="FILE", help="write it to this new file (mode 0600) instead of stdout")
    return parser


def new_secret_main(out=None, stdout=None, stderr=None):
    """
    Make a fleet secret (``secrets.token_urlsafe(32)``: 256 random bits) and
    print it, or write it to the new file ``out`` (mode 0600, never
    overwritten). Returns the process exit code.
    """
    import secrets  # pylint: disable=import-outside-toplevel

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    value = secrets.token_urlsafe(32)
    if out is None:
        print(value, file=stdout)
        return 0
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        print(f"saltext-edge: cannot create {out}: {exc.strerror}", file=stderr)
        return 1
    with os.fdopen(fd, "w", encoding="ascii") as fh_:
        fh_.write(value + "\n")
    print(f"saltext-edge: wrote a new fleet secret to {out}", file=stderr)
    return 0


def _master_opts(config_dir, stderr):
    """The master options of ``config_dir``, or None (the reason printed)."""
    conf_file = os.path.join(config_dir, "master")
    if not os.path.isdir(config_dir):
        print(f"saltext-edge: no such configuration directory: {config_dir}", file=stderr)
        return None
    try:
        import salt.config  # pylint: disable=import-outside-toplevel

        return salt.config.master_config(conf_file)
    except Exception as exc:  # pylint: disable=broad-except
        print(
            f"saltext-edge: cannot read the master configuration {conf_file}: "
            f"{exc.__class__.__name__}",
            file=stderr,
        )
        return None


def enrollment_key_main(args, stdout=None, stderr=None):
    """
    Create an enrollment key from the parsed ``args`` (see the module
    docstring) with the master config in ``args.config_dir``. Returns the
    process exit code; prints the public summary (JSON) on success.
    """
    import json  # pylint: disable=import-outside-toplevel

    from saltext_edge import enrollment as _enr  # pylint: disable=import-outside-toplevel
    from saltext_edge import shared_secret as _secrets  # pylint: disable=import-outside-toplevel
    from saltext_edge.admission.policy import AdmissionError  # pylint: disable=import-outside-toplevel

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        _enr.new_record(args.site, uses=args.uses, expires=args.expires, ids=args.ids, note=args.note)
        _enr.check_new_path(args.path)
    except (_enr.EnrollmentError, _enr.KeyFileError, ValueError) as exc:
        print(f"saltext-edge: {exc}", file=stderr)
        return 2
    opts = _master_opts(args.config_dir, stderr)
    if opts is None:
        return 1
    try:
        ret = _enr.create(opts, args.site, args.path, uses=args.uses, expires=args.expires,
                          ids=args.ids, note=args.note)
    except (_enr.EnrollmentError, _enr.KeyFileError, _secrets.SecretError, AdmissionError) as exc:
        print(f"saltext-edge: {exc}", file=stderr)
        return 1
    print(json.dumps(ret, sort_keys=True), file=stdout)
    return 0


def site_key_main(site, config_dir, stdout=None, stderr=None):
    """
    Print ``K_site`` of ``site`` using the master config in ``config_dir``.
    Returns the process exit code.
    """
    from saltext_edge import shared_secret as _secrets  # pylint: disable=import-outside-toplevel
    from saltext_edge import tokens as _token  # pylint: disable=import-outside-toplevel

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        _token.validate_site(site)
    except _token.TokenError as exc:
        print(f"saltext-edge: {exc}", file=stderr)
        return 2
    conf_file = os.path.join(config_dir, "master")
    if not os.path.isdir(config_dir):
        print(f"saltext-edge: no such configuration directory: {config_dir}", file=stderr)
        return 1
    try:
        import salt.config  # pylint: disable=import-outside-toplevel

        opts = salt.config.master_config(conf_file)
    except Exception as exc:  # pylint: disable=broad-except
        print(
            f"saltext-edge: cannot read the master configuration {conf_file}: "
            f"{exc.__class__.__name__}",
            file=stderr,
        )
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
    if args.command == "site-key":
        return site_key_main(args.site, args.config_dir)
    if args.command == "enrollment-key":
        return enrollment_key_main(args)
    if args.command == "new-secret":
        return new_secret_main(args.out)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
