"""
State module ``edge``: keep an edge minion attached (``docs/howto/keep-settings.rst``).

Thin layer: parse -> plan -> apply -> report. :mod:`saltext_edge.minion_config`
validates, renders, diffs and writes; :mod:`saltext_edge.minion_restart`
restarts the minion. Library modules are imported at load time (a synced copy
finds them in ``_utils`` only while Salt loads it).
"""

import logging
import os
import sys

import salt.utils.data

try:
    from saltext_edge import minion_config as _mc
    from saltext_edge import minion_restart as _restart
    from saltext_edge.minion_conflicts import describe_conflicts, find_conflicts
    from saltext_edge.minion_request import MinionConfigError

    HAS_LIB = True
except ImportError:  # pragma: no cover - depends on how the module was installed
    HAS_LIB = False

try:
    from salt.exceptions import CommandExecutionError
except ImportError:  # pragma: no cover
    CommandExecutionError = OSError

log = logging.getLogger(__name__)

__virtualname__ = "edge"


def __virtual__():
    if not HAS_LIB:
        return (
            False,
            "edge: the saltext_edge library is missing; pip install saltext-edge "
            "or sync it with saltutil.sync_all",
        )
    return __virtualname__


def _from_pillar(value, pillar_key, param):
    """``value``, or the pillar value at ``pillar_key`` (never both)."""
    if pillar_key is None:
        return value
    if value is not None:
        raise MinionConfigError(f"give {param} or {param}_pillar, not both")
    if not isinstance(pillar_key, str) or not pillar_key:
        raise MinionConfigError(f"{param}_pillar must be a pillar key such as edge:{param}")
    # __pillar__ itself, not pillar.get: Salt 3008 masks pillar.get's values
    # unless unmask=True, which 3006/3007 do not accept
    found = salt.utils.data.traverse_dict_and_list(__pillar__, pillar_key, None, ":")
    if found is None:
        raise MinionConfigError(f"pillar key {pillar_key} ({param}_pillar) is not set")
    return found


def minion_config(
    name,
    masters,
    master_alive_interval=30,
    failover=True,
    site=None,
    site_key=None,
    shared_secret=None,
    nat_keepalive=True,
    extra=None,
    restart=True,
    secret_file=None,
    site_key_pillar=None,
    shared_secret_pillar=None,
    enrollment_key=None,
    enrollment_key_pillar=None,
):
    """
    Manage one drop-in file in the minion's ``minion.d/`` holding the settings
    that keep an edge minion attached to its masters: the master list with
    ``master_type: failover``, ``master_alive_interval``, the NAT keep-alive
    and reconnect settings, and the enrollment settings for admission by
    token. Input is validated before anything is written; the file is written
    atomically (temporary file in the same directory, fsync, rename).

    name
        Absolute path of the drop-in file, ending in ``.conf``, e.g.
        ``/etc/salt/minion.d/edge.conf``. Written with mode ``0644``.

    masters
        Non-empty list of master addresses, each ``host`` or ``host:port``
        (IPv6 with a port as ``[addr]:port``). Duplicates are refused.

    master_alive_interval : 30
        Seconds (1-86400) between the minion's checks that its master is still
        there (``status.master``: is the publish connection established?);
        with ``failover`` the minion moves to the next master after a failed
        check. A stopped master closes the connection at once: failover
        within one interval and a sign-in. A master whose path silently drops
        every packet keeps the connection established until TCP keep-alive
        gives up (``tcp_keepalive_idle`` + ``tcp_keepalive_cnt`` x
        ``tcp_keepalive_intvl``, 40 s with the settings below): failover
        within 40 s + one interval + 15 s, **85 s** at the defaults (the
        field lab measured 48-49 s, docs/howto/field-lab.rst).

    failover : True
        ``True`` writes ``master_type: failover`` and the master list.
        ``False`` writes ``master_type: str`` and takes exactly one master.

    site
        Site name (1-64 of ``[A-Za-z0-9._-]``). When given, the drop-in gets
        ``autosign_grains: [edge_token]``, ``edge: {site: ...}`` and
        ``rejected_retry: True`` (keep signing in while a squatter's key
        holds the id) so a new minion can be admitted by the ``edge_token``
        grain, and ``acceptance_wait_time: 0.25`` with
        ``acceptance_wait_time_max: 10`` (a new node is in on its second
        sign-in, a quarter of a second after the first; a node left pending
        backs off to Salt's cadence).

    site_key
        The site key (64 hex characters) for ``site``, from
        ``salt-run edge.site_key``. Stored in a separate ``0600`` file (see
        ``secret_file``), referenced as ``edge: {site_key_file: ...}``; never
        written to the drop-in, the diff, the return or the logs (those show a
        fingerprint or ``<hidden>``). Needs ``site``; exclusive with
        ``shared_secret``.

    shared_secret
        The fleet secret itself (at least 16 characters) for the simple
        fleet-wide setup; the minion derives the site key. Stored like
        ``site_key``, referenced as ``edge: {shared_secret_file: ...}``.
        Prefer ``site_key``: a node that holds the fleet secret can make
        tokens for every site.

    site_key_pillar
        Pillar key (``:``-delimited, e.g. ``edge:site_key``) to read the site
        key from when the state runs, instead of ``site_key``. Prefer it:
        Salt logs every rendered SLS at debug level, so ``site_key: {{
        pillar[...] }}`` puts the key in the minion's debug log; read here,
        it never passes through a template. Write that pillar file with the
        ``#!yaml`` renderer (no Jinja) so the master does not log it either.

    shared_secret_pillar
        The same for ``shared_secret``.

    enrollment_key
        An enrollment key string (``edge-enroll:v2:SITE:ID:KEY``) from
        ``salt-run edge.enrollment_key``, in place of ``site_key``: limited
        uses, an expiry (docs/enrollment.rst). Stored like ``site_key`` in
        the separate ``0600`` file, referenced as ``edge:
        {enrollment_key_file: ...}``; ``site`` may be left out (the key
        names it).

    enrollment_key_pillar
        The same, read from pillar at run time (preferred, as for ``site_key_pillar``).

    nat_keepalive : True
        Write the NAT keep-alive and reconnect settings recommended for a
        minion behind NAT (see below). ``False`` leaves them to Salt's defaults.

    extra
        Dictionary of further minion options written to the drop-in. It may
        replace a recommended NAT option (reported in the comment) but not the
        options this state manages through its own parameters (``master``,
        ``master_type``, ``master_alive_interval``, ``autosign_grains``,
        ``edge``): that is a validation error.

    restart : True
        After a change, restart the minion so that it reads the new settings.
        The restart is done by a detached helper that first waits for the job
        running this state to finish, so the change is reported. It uses
        ``minion_restart_command`` when configured, ``systemctl restart`` when
        the minion runs as a systemd unit, and otherwise stops the salt-minion
        process and starts it again with the same command line (known only
        inside the daemon, so this path needs the state to run through the
        daemon, not ``salt-call``). Nothing is restarted under ``test=True``,
        when nothing changed, when ``name`` is not in the ``minion.d`` next to
        the running minion's configuration file, or when no running
        salt-minion daemon is found (e.g. ``salt-call --local`` on a node where
        the daemon is stopped); the comment then says why.

    secret_file
        Where to keep the site key or secret. Default:
        ``<config dir>/edge/<name stem>.key`` (e.g. ``/etc/salt/edge/edge.key``
        for ``/etc/salt/minion.d/edge.conf``), created ``0600`` in a ``0700``
        directory.

    Settings written with ``nat_keepalive: True`` and why:

    - ``tcp_keepalive: True``, ``tcp_keepalive_idle: 20``,
      ``tcp_keepalive_cnt: 4``, ``tcp_keepalive_intvl: 5`` -- NAT gateways and
      firewalls forget idle TCP flows (often after 5 minutes); kernel
      keep-alive probes keep the mapping alive and detect a dead flow in 40 s
      instead of two hours, which is what bounds failover away from a
      black-holed master. The master's ZeroMQ heartbeats (every 10 s) keep a
      live publish connection from ever being idle for 20 s, so the probes
      go out only when the master has gone silent (and on the idle return
      connection: two small packets per 20 s).
    - ``ping_interval: 5`` (minutes) -- application-level traffic on the
      return channel, which also notices a master that went away.
    - ``random_reauth_delay: 60`` -- after a master restart, hundreds of
      minions re-authenticate spread over a minute instead of all at once.
    - ``recon_default: 1000``, ``recon_max: 60000``, ``recon_randomize: True``
      -- reconnect quickly at first, back off to one minute, randomised.
    - ``retry_dns: 30`` -- keep retrying when the master name does not resolve
      yet (uplinks often come up after the minion). With ``failover`` it is
      written as ``0``: Salt requires that for ``master_type: failover`` (an
      unresolvable master sends the minion to the next one).

    When the masters listen on non-default ports, set ``publish_port`` in
    ``extra``: the ``master_alive_interval`` check (``status.master``) looks
    for the minion's connection to that port.

    Conflicting values for these options elsewhere in the minion's
    configuration (the main ``minion`` file, other ``minion.d/*.conf``) are
    reported in the comment and under ``warnings``, with which value wins.

    Returns the usual state return: ``changes`` holds ``diff`` (unified diff of
    the drop-in), ``secret_file`` (path, mode, fingerprint; never the secret)
    and ``restart`` (how the restart was scheduled). A second identical run
    reports no changes.

    .. code-block:: yaml

        edge-minion:
          edge.minion_config:
            - name: /etc/salt/minion.d/edge.conf
            - masters:
              - salt-a.example.net
              - salt-b.example.net:4506
            - master_alive_interval: 30
            - site: sh-3
            - site_key_pillar: edge:site_key   # read at run time, never rendered
            - extra:
                log_level_logfile: info
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    # parse
    try:
        site_key = _from_pillar(site_key, site_key_pillar, "site_key")
        shared_secret = _from_pillar(shared_secret, shared_secret_pillar, "shared_secret")
        enrollment_key = _from_pillar(enrollment_key, enrollment_key_pillar, "enrollment_key")
        plan = _mc.build_plan(
            name,
            masters,
            master_alive_interval=master_alive_interval,
            failover=failover,
            site=site,
            site_key=site_key,
            shared_secret=shared_secret,
            nat_keepalive=nat_keepalive,
            extra=extra,
            secret_file=secret_file,
            enrollment_key=enrollment_key,
        )
        if not isinstance(restart, bool):
            raise MinionConfigError("restart must be true or false")
    except MinionConfigError as err:
        ret["comment"] = f"Invalid parameters, nothing was changed: {err}"
        return ret

    # plan: compare with the disk and the rest of the minion's configuration
    try:
        state = _mc.compare(plan)
        conflicts, problems = find_conflicts(plan, _main_config(name))
    except (OSError, CommandExecutionError) as err:
        ret["comment"] = f"Cannot read the current configuration: {err}"
        return ret
    notes = list(plan["notes"])
    warnings = describe_conflicts(conflicts) + problems
    if warnings:
        ret["warnings"] = warnings
    ret["changes"] = _mc.changes(state)
    if not ret["changes"]:
        ret["result"] = True
        ret["comment"] = _mc.comment(f"{name} is already in the desired state", notes, warnings)
        return ret
    what = _mc.intended(name, state)
    restart_plan = _restart_plan(name) if restart else None
    if restart_plan and not restart_plan["method"]:
        notes.append(f"No restart: {restart_plan['description']}")
        restart_plan = None

    if __opts__.get("test"):
        ret["result"] = None
        if restart_plan:
            what.append(f"restart the minion ({restart_plan['description']})")
        ret["comment"] = _mc.comment("Would have: " + "; ".join(what), notes, warnings)
        return ret

    # apply
    try:
        _mc.apply(plan, state)
    except (OSError, CommandExecutionError) as err:
        ret.pop("warnings", None)
        ret["changes"] = {}
        ret["comment"] = f"Failed to write {name}: {err}"
        return ret
    done = ["Wrote " + name if state["dropin"] else f"{name} unchanged"]
    if "secret_file" in ret["changes"]:
        done.append(f"secret file {ret['changes']['secret_file']['path']} written (0600)")
    if restart_plan:
        done.append(_schedule_restart(restart_plan, ret["changes"]))

    # report
    ret["result"] = True
    ret["comment"] = _mc.comment("; ".join(done), notes, warnings)
    return ret


def _restart_plan(name):
    """How to restart this minion (``method`` None and the reason when it cannot be)."""
    if _main_config(name) is None:
        return {
            "method": None,
            "description": f"{name} is not in the minion.d of this minion's configuration "
            f"({__opts__.get('conf_file')})",
        }
    daemon_argv = None
    if __opts__.get("__cli") != "salt-call":
        daemon_argv = [sys.executable, *sys.argv]
    try:
        return _restart.plan_restart(__opts__, __grains__.get("pid"), daemon_argv)
    except OSError as err:
        return {"method": None, "description": f"cannot plan a restart: {err}"}


def _schedule_restart(restart_plan, changes):
    """Start the detached restart after this job; return what was done, as a phrase."""
    job_pid, proc_files = _restart.job_wait_args(__opts__, restart_plan)
    try:
        helper = _restart.schedule(restart_plan, job_pid=job_pid, proc_files=proc_files)
    except OSError as err:
        return f"restart could not be scheduled ({err}); restart the minion by hand"
    changes["restart"] = f"scheduled after this job finishes: {restart_plan['description']}"
    log.info("edge.minion_config: restart helper pid %s scheduled", helper)
    return "minion restart scheduled"


def _main_config(name):
    conf_file = __opts__.get("conf_file")
    dropin_dir = os.path.dirname(os.path.abspath(name))
    if conf_file and os.path.dirname(os.path.abspath(conf_file)) == os.path.dirname(dropin_dir):
        return conf_file
    return None
