"""
saltext_edge.minion_restart against real processes of this machine: the
/proc reader, the restart decision, and the detached helper restarting a
stand-in "salt-minion" (a ``sleep`` whose argv[0] says salt-minion) once the
job it waits for has ended. No Salt daemon is involved; the restart of a
real minion is tests/integration/test_failover.py.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from tests.support.waits import wait_until

from saltext_edge import minion_restart as mr

BASH = shutil.which("bash")


def _fake_minion():
    """A process whose /proc/PID/cmdline starts with 'salt-minion'."""
    return subprocess.Popen([BASH, "-c", "exec -a salt-minion sleep 300"])


def test_proc_stat_of_this_process():
    stat = mr.proc_stat(os.getpid())
    assert stat.ppid == os.getppid()
    assert stat.state in "RS"
    assert stat.starttime.isdigit()
    assert mr.proc_stat(os.getpid()).starttime == stat.starttime


def test_proc_stat_command_name_with_parentheses(tmp_path):
    """The command name may hold ') ': fields are read after its last ')'."""
    odd = tmp_path / "a) b ) c"
    odd.symlink_to(shutil.which("sleep"))
    proc = subprocess.Popen([str(odd), "300"])
    try:
        assert wait_until(
            lambda: (mr.proc_stat(proc.pid) or (None,))[0] in ("S", "R"), 30, interval=0.05
        )
        stat = mr.proc_stat(proc.pid)
        assert stat.ppid == os.getpid()
        assert stat.starttime.isdigit()
    finally:
        proc.kill()
        proc.wait()


def test_alive_false_for_zombie_and_gone():
    proc = subprocess.Popen(["sleep", "300"])
    assert mr.alive(proc.pid)
    proc.kill()
    assert wait_until(lambda: (mr.proc_stat(proc.pid) or ("Z",)).state == "Z", 30, interval=0.05)
    assert not mr.alive(proc.pid)  # a zombie is not alive
    proc.wait()
    assert not mr.alive(proc.pid)
    assert mr.proc_stat(proc.pid) is None


def test_plan_restart_command_and_none(tmp_path):
    plan = mr.plan_restart({"minion_restart_command": "systemctl restart salt-minion"})
    assert plan["method"] == "command"
    assert plan["command"] == ["systemctl", "restart", "salt-minion"]
    none = mr.plan_restart({"pidfile": str(tmp_path / "missing.pid")})
    assert none["method"] is None
    assert "no running salt-minion daemon found" in none["description"]


def test_find_minion_process_needs_a_minion_command_line(tmp_path):
    pidfile = tmp_path / "salt-minion.pid"
    pidfile.write_text(str(os.getpid()))  # pytest: not a salt-minion
    assert mr.find_minion_process({"pidfile": str(pidfile)}) == []
    proc = _fake_minion()
    try:
        pidfile.write_text(str(proc.pid))
        assert wait_until(
            lambda: mr.find_minion_process({"pidfile": str(pidfile)}) == [proc.pid],
            30,
            interval=0.05,
        )
        # without its command line the daemon cannot be started again: no restart
        plan = mr.plan_restart({"pidfile": str(pidfile)})
        assert plan["method"] is None and "minion_restart_command" in plan["description"]
    finally:
        proc.kill()
        proc.wait()


def test_detached_helper_restarts_after_the_job(tmp_path):
    """
    ``schedule`` starts this module detached (``python -I <file>``); it waits
    for the job, stops the stand-in minion and starts its command line again.
    """
    minion = _fake_minion()
    job = subprocess.Popen(["sleep", "300"])
    marker = tmp_path / "started"
    pidfile = tmp_path / "salt-minion.pid"
    try:
        pidfile.write_text(str(minion.pid))
        assert wait_until(
            lambda: mr.find_minion_process({"pidfile": str(pidfile)}), 30, interval=0.05
        )
        argv = [
            sys.executable,
            "-c",
            f"import time; open({str(marker)!r}, 'w').write(str(time.time()))",
        ]
        plan = mr.plan_restart({"pidfile": str(pidfile)}, daemon_argv=argv)
        assert plan["method"] == "reexec", plan
        assert plan["pids"] == [minion.pid]
        assert plan["starttimes"] == [mr.proc_stat(minion.pid).starttime]
        helper = mr.schedule(plan, job_pid=job.pid, grace=0.0)
        assert mr.alive(helper)
        job.kill()
        job.wait()
        job_end = time.time()
        assert wait_until(marker.exists, 30, interval=0.05), (
            "the helper did not start the minion again"
        )
        assert float(marker.read_text()) >= job_end  # only after the job ended
        assert minion.wait(timeout=30) == -15  # SIGTERM
        assert not pidfile.exists()  # it named the stopped process
    finally:
        for proc in (minion, job):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_helper_refuses_a_reused_pid(tmp_path):
    minion = _fake_minion()
    try:
        cfg = {
            "method": "reexec",
            "pids": [minion.pid],
            "starttimes": ["1"],  # not this process's start time
            "argv": ["true"],
            "cwd": "/",
            "pidfile": None,
            "job_pid": None,
            "proc_files": [],
            "wait_timeout": 5,
            "grace": 0,
            "stop_timeout": 5,
        }
        assert mr.run(cfg) == 3
        assert mr.alive(minion.pid)
    finally:
        minion.kill()
        minion.wait()


def test_job_wait_args_thread_job_waits_for_proc_files(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "20260101").write_text("")
    opts = {"cachedir": str(tmp_path), "multiprocessing": False}
    assert mr.job_wait_args(opts, {"pid": 1}) == (None, [str(tmp_path / "proc" / "20260101")])
    assert mr.job_wait_args({"cachedir": str(tmp_path)}, {"pid": 1}) == (os.getpid(), [])


@pytest.mark.parametrize("args", [[], ["{}", "extra"]])
def test_module_usage(args):
    proc = subprocess.run(
        [sys.executable, "-m", "saltext_edge.minion_restart", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "usage: python -m saltext_edge.minion_restart" in proc.stderr


def test_module_runs_a_plan():
    cfg = {"method": "nothing-known", "wait_timeout": 1, "grace": 0}
    proc = subprocess.run(
        [sys.executable, "-m", "saltext_edge.minion_restart", json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
