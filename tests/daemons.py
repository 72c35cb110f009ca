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
import shutil
import signal

import psutil
from tests.support.waits import wait_until


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


def sigkill(factory):
    """SIGKILL a daemon and all its processes at once (no shutdown, no goodbye event)."""
    proc = psutil.Process(factory.pid)
    procs = [proc] + proc.children(recursive=True)
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
    # let salt-factories notice, so that started() can start it again
    factory.terminate()


def share_pki(factory, master):
    """
    Make ``factory`` (a master not started yet) use ``master``'s key store,
    the way a shared ReadWriteMany volume appears: mounted at the second
    master's own ``pki_dir`` path (Salt prefixes ``root_dir`` to an absolute
    ``pki_dir``, so the option alone cannot name the first master's).
    """
    pki = pathlib.Path(factory.config["pki_dir"])
    if pki.is_symlink() or pki.is_file():
        pki.unlink()
    elif pki.exists():
        shutil.rmtree(pki)
    pki.parent.mkdir(parents=True, exist_ok=True)
    pki.symlink_to(master.config["pki_dir"], target_is_directory=True)


def answers_ping(master, minion_id, within=0, each=5):
    """
    True once ``minion_id`` answers ``test.ping`` through ``master``: salt
    CLI tries of ``each`` seconds (a minion that has not connected yet costs
    one try, not the master's whole ``timeout``), repeated for ``within``
    seconds (:func:`tests.support.waits.wait_until`); False when none answered.
    """

    def answers():
        try:
            ret = master.salt_cli(timeout=each).run("test.ping", minion_tgt=minion_id)
        except Exception:  # noqa: BLE001 - FactoryTimeout on a loaded machine: not yet
            return False
        return ret.returncode == 0 and ret.data is True

    return bool(wait_until(answers, within, interval=0.5))


def peers(master):
    """The remote addresses of the established connections on ``master``'s ret and publish ports."""
    ports = {master.config["ret_port"], master.config["publish_port"]}
    return {
        c.raddr.ip
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port in ports and c.raddr and c.status == "ESTABLISHED"
    }
