"""
Restart a salt-minion after the state ``edge.minion_config`` changed its
configuration (see ``docs/howto/keep-settings.rst`` and ``docs/design.rst``).

Two halves, one file:

* in the job: :func:`plan_restart` decides how (``minion_restart_command``,
  ``systemctl restart`` or stop-and-start with the daemon's own command line)
  and :func:`schedule` starts this module as a detached process;
* detached: ``python -m saltext_edge.minion_restart '<json>'`` (:func:`main`)
  waits until the job that reports the change has finished, then restarts.

Standard library only: a copy synced to a minion with ``saltutil.sync_utils``
is not importable outside Salt's loader, so :func:`schedule` runs this file
by its path (``python -I <file>``), which needs nothing else of the package.
"""

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time

__all__ = [
    "ProcStat",
    "proc_stat",
    "alive",
    "find_minion_process",
    "plan_restart",
    "job_wait_args",
    "schedule",
    "run",
    "main",
]

#: seconds the detached helper waits for the reporting job at most
WAIT_TIMEOUT = 300
#: seconds between the job's end and the restart (the return is on its way)
GRACE = 1.0
#: seconds a stopped minion gets to exit before SIGKILL
STOP_TIMEOUT = 30
_POLL = 0.2


# --------------------------------------------------------------------------
# /proc: the one reader
# --------------------------------------------------------------------------
#: ``(state, ppid, starttime)`` of a process, from ``/proc/PID/stat``
ProcStat = collections.namedtuple("ProcStat", "state ppid starttime")


def proc_stat(pid):
    """
    Return the :class:`ProcStat` of ``pid`` or ``None`` when it cannot be
    read. The command name (field 2) may hold spaces and parentheses, so the
    fields are taken after its last ``)``.
    """
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="utf-8", errors="replace") as fh_:
            fields = fh_.read().rsplit(")", 1)[1].split()
        return ProcStat(fields[0], int(fields[1]), fields[19])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = proc_stat(pid)
    return stat is None or stat.state != "Z"


def _proc_argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh_:
            return [arg.decode() for arg in fh_.read().split(b"\0") if arg]
    except OSError:
        return None


def _systemd_unit(pid):
    """
    The systemd system service whose own cgroup holds ``pid``, else None.
    Only a leaf ``/system.slice/NAME.service`` counts: a process in a user
    session or under ``user@UID.service`` is not run by a minion unit.
    """
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as fh_:
            for line in fh_:
                parts = [part for part in line.strip().split(":", 2)[-1].split("/") if part]
                if len(parts) == 2 and parts[0] == "system.slice" and parts[1].endswith(".service"):
                    return parts[1]
    except OSError:
        pass
    return None


def _read_pid(pidfile):
    try:
        with open(pidfile, encoding="utf-8") as fh_:
            return int(fh_.read().strip())
    except (OSError, ValueError):
        return None


def _looks_like_minion(argv):
    return bool(argv) and any("salt-minion" in arg or "salt_minion" in arg for arg in argv[:3])


# --------------------------------------------------------------------------
# in the job: decide
# --------------------------------------------------------------------------
def find_minion_process(opts, grains_pid=None):
    """
    Return the pids of the running salt-minion daemon as a list: ``[daemon]``
    or ``[keep-alive supervisor, daemon]``; empty when none is found. Looks at
    the minion's pidfile, then (inside the daemon) the ``pid`` grain.
    """
    candidates = []
    if opts.get("pidfile"):
        candidates.append(_read_pid(opts["pidfile"]))
    if grains_pid and opts.get("__cli") != "salt-call":
        candidates.append(grains_pid)
    for pid in candidates:
        if not pid or not _looks_like_minion(_proc_argv(pid)):
            continue
        stat = proc_stat(pid)
        if stat and stat.ppid > 1 and _looks_like_minion(_proc_argv(stat.ppid)):
            return [stat.ppid, pid]  # the keep-alive supervisor first
        return [pid]
    return []


def _no_restart(why):
    return {"method": None, "description": why}


def plan_restart(opts, grains_pid=None, daemon_argv=None):
    """
    Decide how to restart the minion. Returns a dict with ``method``
    (``command`` | ``systemd`` | ``reexec`` | ``None``) and a human
    ``description``; for ``None``, ``description`` says why not.

    ``daemon_argv`` is the daemon's real command line (``[sys.executable] +
    sys.argv`` seen from a job forked by the daemon); ``/proc/PID/cmdline``
    cannot be trusted for it because Salt rewrites its process titles.
    """
    command = opts.get("minion_restart_command")
    if command:
        command = command.split() if isinstance(command, str) else list(command)
        return {
            "method": "command",
            "command": command,
            "description": "minion_restart_command " + " ".join(command),
        }
    pids = find_minion_process(opts, grains_pid)
    if not pids:
        return _no_restart(
            "no running salt-minion daemon found; the new settings apply when the minion "
            "next starts"
        )
    unit = _systemd_unit(pids[-1])
    systemctl = shutil.which("systemctl")
    if unit and systemctl and os.path.isdir("/run/systemd/system"):
        return {
            "method": "systemd",
            "unit": unit,
            "systemctl": systemctl,
            "description": f"systemctl restart {unit}",
        }
    if not daemon_argv:
        return _no_restart(
            f"salt-minion pid {pids[-1]} runs without a service manager and its command line "
            "is only known inside the daemon; restart it by hand, run this state through the "
            "daemon, or set minion_restart_command"
        )
    try:
        cwd = os.readlink(f"/proc/{pids[-1]}/cwd")
    except OSError:
        cwd = "/"
    return {
        "method": "reexec",
        "pid": pids[-1],
        "pids": pids,
        "starttimes": [(proc_stat(pid) or ProcStat(None, None, None)).starttime for pid in pids],
        "argv": list(daemon_argv),
        "pidfile": opts.get("pidfile"),
        "cwd": cwd,
        "description": f"stop salt-minion pid {pids[0]} and start it again with the same "
        "command line",
    }


def job_wait_args(opts, restart):
    """
    What the helper waits for before restarting: returns ``(job_pid,
    proc_files)``. A job forked from the daemon is waited for by its pid; a
    job that is a thread of the minion itself (``multiprocessing: False``)
    by the minion's ``proc/`` job files, this job's among them.
    """
    job_pid = os.getpid()
    if job_pid != restart.get("pid") and opts.get("multiprocessing", True):
        return job_pid, []
    proc_dir = os.path.join(opts.get("cachedir", ""), "proc")
    try:
        return None, [os.path.join(proc_dir, entry) for entry in os.listdir(proc_dir)]
    except OSError:
        return None, []


def schedule(restart, job_pid=None, proc_files=None, wait_timeout=WAIT_TIMEOUT, grace=GRACE):
    """
    Start the detached helper (this module) for ``restart`` (from
    :func:`plan_restart`): it waits (at most ``wait_timeout`` seconds) until
    ``job_pid`` has exited and every path in ``proc_files`` is gone, then
    restarts. Returns the helper's pid. Raises :class:`OSError` when it
    cannot be started.
    """
    cfg = {key: value for key, value in restart.items() if key != "description"}
    cfg.update(
        {
            "job_pid": job_pid,
            "proc_files": list(proc_files or ()),
            "wait_timeout": wait_timeout,
            "grace": grace,
            "stop_timeout": STOP_TIMEOUT,
        }
    )
    proc = subprocess.Popen(  # detached on purpose, never waited for
        [sys.executable, "-I", os.path.abspath(__file__), json.dumps(cfg)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        start_new_session=True,
        cwd="/",
    )
    return proc.pid


# --------------------------------------------------------------------------
# detached: wait, then restart
# --------------------------------------------------------------------------
def _wait_for_job(cfg):
    deadline = time.monotonic() + cfg["wait_timeout"]
    while time.monotonic() < deadline:
        busy = bool(cfg.get("job_pid")) and alive(cfg["job_pid"])
        busy = busy or any(os.path.exists(path) for path in cfg.get("proc_files") or ())
        if not busy:
            return
        time.sleep(_POLL)


def _wait_gone(pids, seconds):
    end = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(_POLL)


def _drop_stale_pidfiles(pidfile, pids):
    """
    A stopped daemon whose parent has not reaped it yet still "runs" for
    Salt's pidfile check: remove pidfiles that name a process seen to stop.
    """
    head, tail = os.path.split(pidfile)
    for path in (pidfile, os.path.join(head, "process_responsibility_" + tail)):
        try:
            with open(path, encoding="utf-8") as fh_:
                text = fh_.read().strip()
            owner = json.loads(text)["pid"] if text.startswith("{") else int(text)
            if owner in pids and not alive(owner):
                os.unlink(path)
        except (OSError, ValueError, TypeError, KeyError):
            continue


def _quiet(argv, **kwargs):
    return subprocess.call(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **kwargs,
    )


def _reexec(cfg):
    pids = cfg["pids"]  # [supervisor-or-daemon, daemon]: the first gets the signal
    for pid, start in zip(pids, cfg["starttimes"]):
        stat = proc_stat(pid)
        if alive(pid) and (stat and stat.starttime) != start:
            return 3  # pid reused: not the process we were asked to restart
    if not any(alive(pid) for pid in pids):
        return 4  # already gone: someone else stopped it
    os.kill(pids[0], signal.SIGTERM)
    _wait_gone(pids, cfg["stop_timeout"])
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(pids, 10)
    if cfg.get("pidfile"):
        _drop_stale_pidfiles(cfg["pidfile"], pids)
    subprocess.Popen(  # the new daemon outlives this helper
        cfg["argv"],
        cwd=cfg["cwd"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return 0


def run(cfg):
    """
    Wait for the reporting job, then restart as ``cfg["method"]`` says.
    Returns the exit status: 0 done, 3 the pid was reused, 4 the minion was
    already gone, 2 unknown method.
    """
    _wait_for_job(cfg)
    time.sleep(cfg["grace"])
    method = cfg["method"]
    if method == "command":
        _quiet(cfg["command"], start_new_session=True)
        return 0
    if method == "systemd":
        _quiet([cfg["systemctl"], "restart", cfg["unit"]])
        return 0
    if method == "reexec":
        return _reexec(cfg)
    return 2


def main(argv=None):
    """Entry point of ``python -m saltext_edge.minion_restart '<json>'``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m saltext_edge.minion_restart '<json plan>'", file=sys.stderr)
        return 2
    return run(json.loads(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
