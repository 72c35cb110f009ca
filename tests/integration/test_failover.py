"""
The settings ``edge.minion_config`` enforces deliver failover: two real
masters sharing one master key pair, a minion configured by the state (its
drop-in in the minion's own ``minion.d/``) for both with a short
``master_alive_interval``; stop the active master and the minion answers the
other one within about two intervals (one to notice, then Salt's own
reconnect/auth timeouts towards the dead master; measured ~13 s with a 5 s
interval on a loaded 2-core box).

Also here: ``restart=True`` against a real minion daemon (plain process, no
service manager): the job reports the change, then the minion restarts.
"""

import os
import pathlib
import signal
import time
from datetime import datetime, timezone

import pytest
from saltfactories.utils import random_string
from tests.support.net import free_port
from tests.support.waits import wait_until

INTERVAL = 5  # master_alive_interval under test, seconds

pytestmark = pytest.mark.slow


def _copy_master_keys(src_pki, dst_pki):
    """Give the second master the first one's key pair (multi-master setup)."""
    dst_pki.mkdir(parents=True, exist_ok=True)
    for name in ("master.pem", "master.pub"):
        target = dst_pki / name
        target.write_bytes((src_pki / name).read_bytes())  # follows 3008's symlinks
        os.chmod(target, 0o400 if name.endswith(".pem") else 0o644)


def _ping(master, minion_id, timeout=2):
    ret = master.salt_cli(timeout=timeout + 30).run(
        "-t", str(timeout), "test.ping", minion_tgt=minion_id
    )
    return ret.returncode == 0 and ret.data is True


def test_failover_to_second_master(salt_factories):
    # Both masters on the same ports, on two loopback addresses: the minion's
    # master_alive_interval check (status.master) watches its one configured
    # publish_port, as in a real fleet where every master listens on 4505.
    publish_port, ret_port = free_port(), free_port()
    common = {"publish_port": publish_port, "ret_port": ret_port, "loop_interval": 1}
    master_a = salt_factories.salt_master_daemon(
        random_string("edge-fo-a-"), overrides=dict(common, interface="127.0.0.1")
    )
    master_b = salt_factories.salt_master_daemon(
        random_string("edge-fo-b-"), overrides=dict(common, interface="127.0.0.2")
    )
    with master_a.started():
        _copy_master_keys(
            pathlib.Path(master_a.config["pki_dir"]), pathlib.Path(master_b.config["pki_dir"])
        )
        with master_b.started():
            minion = master_a.salt_minion_daemon(random_string("edge-fo-minion-"))
            conf_dir = pathlib.Path(minion.config["conf_file"]).parent
            dropin = conf_dir / "minion.d" / "edge.conf"
            masters = [f"127.0.0.1:{ret_port}", f"127.0.0.2:{ret_port}"]
            # configure the (not yet started) minion with the state itself
            ret = minion.salt_call_cli(timeout=120).run(
                "--local",
                "state.single",
                "edge.minion_config",
                name=str(dropin),
                masters=masters,
                master_alive_interval=INTERVAL,
                extra={"publish_port": publish_port},
                restart=False,
            )
            assert ret.returncode == 0, ret
            chunk = next(iter(ret.data.values()))
            assert chunk["result"] is True, chunk
            assert "+master_type: failover\n" in chunk["changes"]["diff"]
            text = dropin.read_text()
            assert f"master_alive_interval: {INTERVAL}\n" in text
            assert "tcp_keepalive: true\n" in text

            with minion.started(start_timeout=120):
                # the minion's key is accepted on both masters (in production:
                # by token admission on each master); here: seed it on B
                minion_pub = pathlib.Path(minion.config["pki_dir"]) / "minion.pub"
                b_minions = pathlib.Path(master_b.config["pki_dir"]) / "minions"
                b_minions.mkdir(parents=True, exist_ok=True)
                (b_minions / minion.id).write_bytes(minion_pub.read_bytes())

                # attached to the first master of the list, not to the second:
                # a failover minion keeps the master it chose in opts["master"]
                assert _ping(master_a, minion.id, timeout=10)
                chosen = master_a.salt_cli(timeout=60).run(
                    "-t", "10", "config.get", "master", minion_tgt=minion.id
                )
                assert chosen.data == "127.0.0.1", chosen

                stopped = time.time()
                master_a.terminate()
                matched = salt_factories.event_listener.wait_for_events(
                    [(master_b.id, f"salt/minion/{minion.id}/start")],
                    timeout=20 * INTERVAL,
                    after_time=stopped,
                )
                assert matched.found_all_events, "the minion never moved to the second master"
                event = next(iter(matched))
                moved = (
                    event.stamp - datetime.fromtimestamp(stopped, tz=timezone.utc)
                ).total_seconds()
                print(
                    f"failover: minion started on master B {moved:.1f}s after master A was stopped"
                )
                # it answers commands from the second master
                assert _ping(master_b, minion.id, timeout=15)
                # about two intervals on a machine to itself (13 s): one to
                # notice, then Salt's own reconnect timeouts to the dead master
                # (auth_timeout) before it moves on; the bound leaves room for
                # the other test workers on the same cores
                assert moved <= 4 * INTERVAL + 10, moved


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh_:
            return fh_.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _read_pid(path):
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def test_restart_after_change_reports_then_restarts(salt_factories, salt_master, salt_cli):
    """
    restart=True against a real minion daemon (a plain process, no service
    manager): the job that makes the change returns its result, then the
    minion is restarted and runs with the new drop-in.
    """
    minion = salt_master.salt_minion_daemon(random_string("edge-restart-"))
    conf_dir = pathlib.Path(minion.config["conf_file"]).parent
    dropin = conf_dir / "minion.d" / "edge.conf"
    pidfile = pathlib.Path(minion.config["pidfile"])

    def apply_state():
        """The state run this test applies twice (a change, then nothing)."""
        return salt_cli.run(
            "state.single",
            "edge.minion_config",
            name=str(dropin),
            masters=[f"127.0.0.1:{salt_master.config['ret_port']}"],
            failover=False,
            extra={
                "publish_port": salt_master.config["publish_port"],
                "grains": {"edge_restart_marker": "after"},
            },
            minion_tgt=minion.id,
            _timeout=120,
        )

    restarted_pid = None
    with minion.started(start_timeout=120):
        old_pid = _read_pid(pidfile)
        assert old_pid and _alive(old_pid)
        before = time.time()
        ret = apply_state()
        # the job that reports the change was not killed by the restart
        assert ret.returncode == 0, ret
        chunk = next(iter(ret.data.values()))
        assert chunk["result"] is True, chunk
        assert "minion restart scheduled" in chunk["comment"], chunk["comment"]
        assert "scheduled after this job finishes" in chunk["changes"]["restart"]
        try:
            matched = salt_factories.event_listener.wait_for_events(
                [(salt_master.id, f"salt/minion/{minion.id}/start")],
                timeout=120,
                after_time=before,
            )
            restarted_pid = _read_pid(pidfile)
            assert matched.found_all_events, "the minion did not come back after the restart"
            assert restarted_pid and restarted_pid != old_pid
            assert not _alive(old_pid)
            grain = salt_cli.run("grains.get", "edge_restart_marker", minion_tgt=minion.id)
            assert grain.data == "after", grain
            # applied again: nothing to do, so no second restart
            again = apply_state()
            chunk = next(iter(again.data.values()))
            assert chunk["changes"] == {}, chunk
            assert _read_pid(pidfile) == restarted_pid
        finally:
            # the restarted daemon is not the factory's process: stop it by pid
            pid = _read_pid(pidfile)
            if pid and pid != old_pid and _alive(pid):
                os.kill(pid, signal.SIGTERM)
                if not wait_until(lambda: not _alive(pid), 30, interval=0.2):
                    os.kill(pid, signal.SIGKILL)
