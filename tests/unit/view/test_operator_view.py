"""
What an operator sees (no Salt daemons): the engine's state socket
(``fleet/live.py``) against a real engine object and Salt's real ``localfs``
cache, the one admission mapping, stale uplinks, and the ``edge``
outputter's text (``view/text.py``).
"""

import os
import queue
import socket
import stat
import threading

import pytest
import salt.cache
import salt.config
from tests.unit.fleet.test_report_logic import _keys

from saltext_edge import report
from saltext_edge.fleet import conf as fconf
from saltext_edge.fleet import engine as fengine
from saltext_edge.fleet import live, record, sites, store
from saltext_edge.fleet.nodeview import iso
from saltext_edge.view import metrics_collector, text

NOW = 1_800_000_000.0
CONF = fconf.parse({"fleet": {"interval": 60}})


def _rec(mid, site, age, quality="good", rtt=20.0):
    rec = record.new(mid, NOW - 86400)
    rec.update(
        site=site,
        last_seen=NOW - age,
        last_kind="heartbeat",
        period=60.0,
        jitter=0.1,
        budget=2.0,
        uplink={"quality": quality, "rtt_ms": rtt, "jitter_ms": 1.0, "loss_pct": 0.0},
        samples=[[NOW - age - i * 60, rtt + i, 1.0, 0.0, quality] for i in range(10)],
    )
    return rec


# --------------------------------------------------------------------------
# one admission mapping; an accepted node beside a denied squatter
# --------------------------------------------------------------------------


def test_denied_squatter_does_not_hide_the_accepted_node():
    keys = _keys(acc=["gw-1", "gw-2"], pre=["new-1"], den=["gw-1"], rej=["old-1"])
    states = sites.admission_states(keys)
    assert states == {
        "gw-1": "accepted",
        "gw-2": "accepted",
        "new-1": "pending",
        "old-1": "refused",
    }
    assert sites.admission_of("gone-1", states) == "revoked"
    records = {"gw-1": _rec("gw-1", "sh-1", 10), "gw-2": _rec("gw-2", "sh-1", 10)}
    rep = report.assemble(records, keys, {}, CONF, now=NOW, details=True)
    node = rep["sites"]["sh-1"]["nodes"]["gw-1"]
    assert node["admission"] == "accepted" and node["status"] == "online"
    assert rep["totals"]["online"] == 2
    # the squatter's key is listed as refused, under its reason
    assert rep["refused"]["gw-1"].startswith("key denied")


def test_an_offline_node_uplink_is_stale_not_good():
    records = {"up": _rec("up", "sh-1", 10), "down": _rec("down", "sh-1", 5000)}
    rep = report.assemble(records, _keys(acc=["up", "down"]), {}, CONF, now=NOW, details=True)
    site = rep["sites"]["sh-1"]
    assert site["quality"]["good"] == 1 and site["quality"]["unknown"] == 1, site["quality"]
    down = site["nodes"]["down"]["uplink"]
    assert down["quality"] == "unknown" and down["stale"] is True and down["rtt_ms"] == 20.0
    assert "stale" not in site["nodes"]["up"]["uplink"]
    # the TOTAL row carries its own figures
    total = rep["summary"][-1]
    assert total["site"] == "TOTAL" and total["rtt_ms_median_1h"] is not None
    # and the metrics: no quality, no figures for the offline node
    snap = {
        "nodes": {
            "down": {
                "id": "down",
                "site": "sh-1",
                "status": "offline",
                "last_seen_ts": NOW - 5000,
                "uplink": down,
            }
        }
    }
    body = metrics_collector.FleetCollector(lambda: snap).exposition().decode()
    assert 'edge_site_uplink_quality_nodes{quality="unknown",site="sh-1"} 1.0' in body
    assert 'edge_site_uplink_quality_nodes{quality="good",site="sh-1"} 0.0' in body
    assert "edge_node_uplink_quality{" not in body and "edge_node_uplink_rtt_ms{" not in body


def test_live_records_keep_the_engines_status():
    rec = _rec("n1", "sh-1", 5000)  # offline by its age ...
    rec["status"] = "online"  # ... but the engine (in its grace period) says online
    keys = _keys(acc=["n1"])
    assert report.assemble({"n1": rec}, keys, {}, CONF, now=NOW)["totals"]["offline"] == 1
    assert report.assemble({"n1": rec}, keys, {}, CONF, now=NOW, live=True)["totals"]["online"] == 1


# --------------------------------------------------------------------------
# the engine's state socket
# --------------------------------------------------------------------------


@pytest.fixture
def engine_opts(tmp_path):
    opts = salt.config.master_config(None)
    # a short sock_dir: a Unix socket path has at most 107 bytes
    sock_dir = tmp_path / "s"
    sock_dir.mkdir()
    opts.update(cachedir=str(tmp_path / "cache"), sock_dir=str(sock_dir), id="m1", edge={})
    return opts


@pytest.fixture
def running(engine_opts):
    """A real FleetEngine and the state server, with a thread doing what the engine's worker does."""
    fleet = fengine.FleetEngine(
        engine_opts,
        store=store.Store(engine_opts, cache=salt.cache.factory(engine_opts)),
        clock=lambda: NOW,
        index_fn=lambda o: {},
        keys_fn=lambda o: [],
    )
    rec = _rec("n1", "sh-1", 5)
    rec["samples"].append([NOW - 7000, 30.0, 1.0, 0.0, "good"])
    rec["status"] = "online"
    fleet.records["n1"] = rec
    fleet.pending_hours["n1"] = [[NOW - 3600, 3, 20.0, 22.0, 0.0, 3, "good"]]
    inbox = queue.Queue(maxsize=10)
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            try:
                tag, job = inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if tag is live.REQUEST:
                job.run(fleet)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    server = live.serve(engine_opts, inbox)
    yield fleet, server
    server.close()
    stop.set()
    thread.join(5)


def test_state_socket_answers_from_the_engine(engine_opts, running):
    fleet, server = running
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
    answer = live.ask(engine_opts)
    assert answer["master"] == "m1" and answer["records"]["n1"]["status"] == "online"
    # the fleet answer carries the last hour of raw samples, a copy of the engine's
    assert len(answer["records"]["n1"]["samples"]) == 10
    assert len(fleet.records["n1"]["samples"]) == 11
    source, view, note = live.read(engine_opts)
    assert (source, note) == ("engine m1", None)
    rep = report.assemble(view.load_all(), _keys(acc=["n1"]), {}, CONF, now=NOW, live=view.live)
    assert rep["totals"]["online"] == 1
    # one node: its record and the hourly rows the engine has not written yet
    source, view, _ = live.read(engine_opts, "node", "n1")
    assert view.load("n1")["id"] == "n1" and view.hours("n1")[0][0] == NOW - 3600
    assert view.engines()["m1"]["answered_at"] == NOW


def test_a_shared_record_adds_what_other_masters_saw(engine_opts, running):
    """Two masters on one store: a node only the other master heard of is in this one's answer."""
    fleet, _ = running
    other = _rec("n2", "sh-2", 5)
    other["status"] = "offline"  # the other engine's word, as of its last write
    other["seen_by"] = "m2"
    fleet.store.write_records({"n2": other}, record.merge)
    fleet.store.set_meta("engine.m2", {"started_at": NOW - 60, "flushed_at": NOW - 1})
    source, view, note = live.read(engine_opts)
    assert (source, note) == ("engine m1", None)
    records = view.load_all()
    assert set(records) == {"n1", "n2"} and records["n1"]["status"] == "online"
    # classified from its last sign of life, not the stored status
    assert records["n2"]["status"] is None and view.load("n2")["seen_by"] == "m2"
    rep = report.assemble(records, _keys(acc=["n1"]), {}, CONF, now=NOW, live=True)
    assert rep["sites"]["sh-2"]["online"] == 1 and rep["totals"]["online"] == 2


def test_state_socket_bounds_and_refusals(engine_opts, running):
    _, server = running
    for request in (b"x" * (live.MAX_REQUEST + 10) + b"\n", b"not json\n", b'{"want": "keys"}\n'):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(server.path)
            sock.sendall(request)
            (answer,) = list(live._objects(sock))
        assert "error" in answer and "records" not in answer, answer


def test_no_engine_means_the_stored_record_said_in_one_line(engine_opts):
    st = store.Store(engine_opts, cache=salt.cache.factory(engine_opts))
    source, view, note = live.read(engine_opts, store=st, now=NOW)
    assert source == "stored record" and view is st
    assert "no edge_fleet engine answered" in note and "no engine has written" in note
    st.set_meta("engine.m1", {"started_at": NOW - 900, "flushed_at": NOW - 300})
    _, _, note = live.read(engine_opts, store=st, now=NOW)
    assert f"last written 5 min ago ({iso(NOW - 300)})" in note and "\n" not in note


# --------------------------------------------------------------------------
# the edge outputter's text
# --------------------------------------------------------------------------


def _report():
    records = {
        "a-up": _rec("a-up", "alpha", 10),
        "a-down": _rec("a-down", "alpha", 5000),
        "b-up": _rec("b-up", "bravo", 10, quality="poor", rtt=300.0),
        "c-up": _rec("c-up", "charlie\x1b[2J", 10),
    }
    keys = _keys(acc=list(records), pre=["new-1"], den=["a-up"])
    records["ghost"] = _rec("ghost", "charlie\x1b[2J", 10)  # a record, no key: revoked
    rep = report.assemble(
        records,
        keys,
        {},
        CONF,
        now=NOW,
    )
    rep["answered_by"] = "engine m1"
    return rep


def test_report_text_sites_worst_first_then_nodes_not_online():
    out = text.render(_report())
    lines = out.splitlines()
    assert lines[0].startswith(
        f"Edge fleet at {iso(NOW)} (from the engine m1): 3 site(s), 4 online"
    )
    header = lines[2].split()
    assert header[:3] == ["SITE", "NODES", "ONLINE"] and header[-1] == "LOSS_%"
    rows = [line.split()[0] for line in lines[3:7]]
    # degraded alpha (1 of 2 offline), bravo (poor uplink), then charlie, TOTAL last
    assert rows == ["alpha", "bravo", "charlie\\x1b[2J", "TOTAL"], lines
    total = lines[6].split()
    assert total[1:6] == ["5", "4", "0", "1", "0"] and total[-3] != "-", total
    assert "DEGRADED" in lines[3]
    # the nodes that are not online, then keys
    idx = lines.index("Nodes not online:")
    assert lines[idx + 2].split()[:3] == ["a-down", "alpha", "offline"]
    assert "unknown (stale) 20 ms" in lines[idx + 2]
    assert "b-up" not in out.split("Nodes not online:")[1]
    assert "Keys pending (1): new-1" in out and "a-up: key denied" in out
    assert "Online without an accepted key (1): ghost" in out
    assert "\x1b" not in out


def test_report_text_html_quiet_node_enrollments_and_fallback():
    rep = _report()
    page = {k: rep[k] for k in ("generated_at", "totals", "summary")}
    page.update(html="/srv/www/fleet.html", warning="no edge_fleet engine answered (x)")
    out = text.render(page)
    assert "Fleet page written: /srv/www/fleet.html" in out and "WARNING: no edge_fleet" in out
    assert text.render("") == "" and text.render("edge.report: bad") == "edge.report: bad"
    node = {
        "id": "a-down",
        "site": "alpha",
        "status": "offline",
        "status_since": iso(NOW - 100),
        "last_seen": iso(NOW - 5000),
        "last_seen_kind": "heartbeat",
        "source": "heartbeat seq 4",
        "seen_by": "m1",
        "admission": "accepted",
        "uplink": {"quality": "unknown", "rtt_ms": 20.0, "stale": True},
        "trend": {"1h": {"rtt_ms_median": 21.0}},
        "transitions": [{"at": iso(NOW - 100), "status": "offline"}],
        "answered_by": "engine m1",
    }
    out = text.render(node)
    assert out.splitlines()[0].startswith("a-down (site alpha): offline since")
    assert "uplink        unknown (stale) 20 ms" in out
    enrollments = [
        {"id": "3f9c", "site": "sh-3", "status": "active", "uses": 2, "uses_left": 1,
         "expires_at": iso(NOW), "creator": "ops@m1", "ids": None, "note": "rack B", "admitted": []}
    ]  # fmt: skip
    lines = text.render(enrollments).splitlines()
    assert lines[0].split()[:3] == ["ID", "SITE", "STATUS"] and lines[1].split()[:5] == [
        "3f9c", "sh-3", "active", "2", "1"
    ]  # fmt: skip
    assert text.render({"something": "else"}) is None and text.render([1, 2]) is None
    rep["ping"] = {"timeout_s": 5, "answered": 3, "silent": ["a-down"], "unproven": []}
    assert (
        text.render(rep).splitlines()[-1] == "Ping (5 s): 3 answered, 1 silent: a-down, 0 unproven"
    )


def test_an_unwritable_page_names_the_runners_user():
    import errno
    import pwd

    from saltext_edge import report_request

    err = report_request._write_error(
        "/srv/www/fleet.html", PermissionError(errno.EACCES, "Permission denied")
    )
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert str(err).startswith("cannot write the fleet page /srv/www/fleet.html: Permission denied")
    assert f"salt-run runs as the master's user {user!r}" in str(err) and "\n" not in str(err)
    other = report_request._write_error("/x/y.html", OSError(errno.ENOSPC, "No space left"))
    assert "master's user" not in str(other)


def test_the_edge_outputter_through_salts_loader():
    """Salt's loader finds ``edge`` (the salt.loader entry point's output dir); unknown shapes go to nested."""
    import salt.loader

    opts = salt.config.master_config(None)
    outputters = salt.loader.outputters(opts)
    data = {"minion": {"key": [1, 2]}}
    assert outputters["edge"](data) == outputters["nested"](data)
    assert outputters["edge"](_report()).startswith("Edge fleet at ")
