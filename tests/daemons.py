"""
Helpers for tests whose masters must count exactly their own minions.

A test master normally accepts every pending key (``auto_accept`` or
salt-factories' auth-event callback). Free ports are reused across a
session, so a minion left over from an earlier test, still retrying the
port its own master had, can sign in to a later master and be accepted;
a test that counts the fleet then sees a node it never started. Masters
built with :func:`own_minions_master` accept a key only when the test named
its id first (:func:`allow`), through Salt's own ``minions_autosign``
directory, which the master checks inside the sign-in request.
"""

import os
import pathlib

import psutil


def _ignore_auth_event(master, payload):
    return None


def own_minions_master(salt_factories, master_id, defaults, overrides):
    """Return a master factory that accepts only the minions passed to :func:`allow`."""
    return salt_factories.salt_master_daemon(
        master_id,
        defaults=defaults,
        overrides=dict(overrides, auto_accept=False),
        on_auth_event_callback=_ignore_auth_event,
    )


def allow(master, *minion_ids):
    """Let ``master`` accept the next sign-in of each of ``minion_ids`` (one-shot, Salt's autosign dir)."""
    autosign = pathlib.Path(master.config["pki_dir"], "minions_autosign")
    autosign.mkdir(mode=0o700, parents=True, exist_ok=True)
    for minion_id in minion_ids:
        (autosign / minion_id).touch()


def reap(factory):
    """
    Kill what is left of a stopped daemon: any process whose command line
    names the daemon's config directory (a child a dying parent re-spawned
    after salt-factories collected the process tree). Return how many.
    """
    config_dir = str(factory.config_dir)
    me = os.getpid()
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info["pid"] != me and any(config_dir in part for part in cmdline):
            left.append(proc)
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=10)
    return len(left)
