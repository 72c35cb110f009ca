"""
Benchmark 4: ``edge.diagnose`` with every target black-holed, against its
time budget.

Black hole: a loopback listener whose accept queue is already full
(``listen(0)`` plus filler connections), so the kernel drops every further
SYN and a connect hangs exactly like one to a firewalled address -- no root,
no network. The minion's masters (ret and publish ports), an extra uplink
target and an HTTP URL all point at black holes.

Measured, for budgets of 2 s and 5 s (the default):

* the library call (:func:`saltext_edge.diag.diagnose`) in this process:
  wall time vs the budget (target: <= budget + 0.1 s) and the verdict;
* the operator's command ``salt-call --local edge.diagnose ...``: the
  ``elapsed_ms`` it returns (target: <= budget + 0.1 s), and as context its
  wall time minus that of ``salt-call --local test.true`` with the same
  config (Salt's own start-up, grains included) -- a difference of two noisy
  process timings.
"""

import json
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # pylint: disable=wrong-import-position

SLACK_S = 0.1


class BlackHole:
    """A loopback port whose SYNs are dropped (accept queue full)."""

    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(0)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex((host, self.port))
            self.fillers.append(filler)
        time.sleep(0.05)

    def is_black(self, timeout=0.3):
        probe = socket.socket()
        probe.settimeout(timeout)
        try:
            probe.connect((self.host, self.port))
            return False
        except OSError:
            return True
        finally:
            probe.close()

    def close(self):
        for filler in self.fillers:
            filler.close()
        self.sock.close()


def _minion_conf(root, ret_hole, pub_hole):
    conf_dir = os.path.join(root, "conf")
    C.write_yaml(
        os.path.join(conf_dir, "minion"),
        {
            "id": "bench-diag",
            "root_dir": root,
            "user": C.getpass.getuser(),
            "master": ["127.0.0.1"],
            "master_type": "failover",
            "master_port": ret_hole.port,
            "publish_port": pub_hole.port,
            "file_client": "local",
            "log_file": os.path.join(root, "minion.log"),
            "log_level_logfile": "warning",
            "enable_fqdns_grains": False,
        },
    )
    return conf_dir


def run(quick=False, log=print, keep=False):
    budgets = [2.0] if quick else [2.0, 5.0]
    reps = 1 if quick else 2
    root = C.mkroot("diagnose")
    holes = [BlackHole() for _ in range(4)]
    ret_hole, pub_hole, target_hole, http_hole = holes
    data = {"budgets": budgets, "black_holes_verified": all(h.is_black() for h in holes)}
    rows = []
    try:
        conf_dir = _minion_conf(root, ret_hole, pub_hole)
        import salt.config

        from saltext_edge import diag

        opts = salt.config.minion_config(os.path.join(conf_dir, "minion"))
        target = f"127.0.0.1:{target_hole.port}"
        url = f"http://127.0.0.1:{http_hole.port}/v2/"
        # Salt's own start-up for the same config (grains included)
        startup = []
        for _ in range(reps):
            res = C.timed_run(
                [C.salt_bin("salt-call"), "-c", conf_dir, "--local", "test.true", "--out=json"],
                timeout=120,
            )
            startup.append(res["elapsed_s"])
        data["salt_call_test_true_s"] = startup
        base = statistics.median(startup)
        for budget in budgets:
            lib = []
            verdicts = []
            for _ in range(reps):
                started = time.perf_counter()
                ret = diag.diagnose(opts, targets=[target], urls=[url], budget=budget)
                lib.append(time.perf_counter() - started)
                verdicts.append(ret.get("verdict"))
            cli = []
            cli_verdicts = []
            cli_reported = []
            for _ in range(reps):
                res = C.timed_run(
                    [
                        C.salt_bin("salt-call"),
                        "-c",
                        conf_dir,
                        "--local",
                        "edge.diagnose",
                        f"targets=['{target}']",
                        f"urls=['{url}']",
                        f"budget={budget}",
                        "--out=json",
                    ],
                    timeout=120,
                )
                cli.append(res["elapsed_s"])
                try:
                    local = json.loads(res["stdout"])["local"]
                    cli_verdicts.append(local.get("verdict"))
                    cli_reported.append(float(local["elapsed_ms"]) / 1000.0)
                except (ValueError, KeyError, AttributeError, TypeError):
                    cli_verdicts.append(f"rc={res['rc']}: {res['stderr'][-200:]}")
                    cli_reported.append(None)
            lib_worst = max(lib)
            cli_net = statistics.median(cli) - base
            data[str(budget)] = {
                "library_s": lib,
                "verdicts": verdicts,
                "cli_s": cli,
                "cli_verdicts": cli_verdicts,
                "cli_net_s": cli_net,
                "cli_reported_s": cli_reported,
            }
            log(
                f"  diagnose budget {budget:g}s: library worst {lib_worst:.2f}s ({verdicts}), "
                f"salt-call {statistics.median(cli):.2f}s - start-up {base:.2f}s = {cli_net:.2f}s ({cli_verdicts})"
            )
            rows.append(
                C.row(
                    f"edge.diagnose all black-holed, budget {budget:g}s (library, worst of {reps})",
                    lib_worst,
                    budget,
                    "s",
                    f"<= budget + {SLACK_S:g}s",
                    lib_worst <= budget + SLACK_S and all(v == "down" for v in verdicts),
                    f"'baseline' column = the budget; verdicts {sorted(set(map(str, verdicts)))}",
                )
            )
            reported = [x for x in cli_reported if x is not None]
            cli_worst = max(reported) if len(reported) == len(cli_reported) else None
            rows.append(
                C.row(
                    f"edge.diagnose all black-holed, budget {budget:g}s (salt-call, worst of {reps})",
                    cli_worst,
                    budget,
                    "s",
                    f"<= budget + {SLACK_S:g}s",
                    cli_worst is not None
                    and cli_worst <= budget + SLACK_S
                    and all(v == "down" for v in cli_verdicts),
                    f"elapsed_ms it returns under salt-call --local; wall time net of "
                    f"salt-call start-up ({base:.2f}s): {cli_net:.2f}s (noisy)",
                )
            )
    finally:
        for hole in holes:
            hole.close()
        C.cleanup(root, keep)
    return {"name": "diagnose", "rows": rows, "data": data}


if __name__ == "__main__":
    C.script_main(run, __doc__)
