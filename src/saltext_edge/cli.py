"""
Console script ``saltext-edge``.

``saltext-edge site-key SITE [-c CONFIG_DIR]`` reads the master configuration
the way ``salt-master`` does (``CONFIG_DIR/master`` plus ``master.d/``,
default ``/etc/salt``) and the fleet secret from ``edge:shared_secret_file``,
``edge:shared_secret`` or ``SALT_SHARED_SECRET`` (first found wins), and
prints the site key ``K_site`` on stdout, for provisioning pipelines. Nothing
is logged; errors go to stderr without secret material.

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
    return parser


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
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
