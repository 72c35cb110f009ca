"""Pure logic of saltext_edge.diag: masters from opts, URL parsing, audit, verdict."""

import pytest
import salt.config

from saltext_edge import diag, http_check, masters, settings
from saltext_edge.audit import config_audit
from saltext_edge.uplink import args, targets


def _opts(**over):
    opts = dict(salt.config.DEFAULT_MINION_OPTS)
    opts.update(over)
    return opts


def _by_setting(audit):
    return {f["setting"]: f for f in audit["findings"]}


def test_recommended_shape():
    assert set(settings.RECOMMENDED) <= set(settings.RECOMMENDED_WHY)
    assert set(settings.RECOMMENDED_CORE) <= set(settings.RECOMMENDED_WHY)
    # every written option is one Salt knows (a typo would be silently ignored);
    # beacons has no entry in Salt's defaults but is read by the minion's beacon loader
    for key in set(settings.RECOMMENDED) - {"beacons"}:
        assert key in salt.config.DEFAULT_MINION_OPTS, key


def test_failover_bound_of_the_written_settings():
    # keep-alive gives up after 20 + 4 x 5 s, one 30 s alive check, a sign-in
    assert settings.failover_bound() == 20 + 4 * 5 + 30 + settings.FAILOVER_SIGN_IN_S == 85
    # Salt's own keep-alive (idle 300 s, OS probes: 9 x 75 s) and check interval
    assert (
        settings.failover_bound(
            {"tcp_keepalive_idle": 300, "tcp_keepalive_cnt": 9, "tcp_keepalive_intvl": 75}
        )
        == 300 + 9 * 75 + 30 + settings.FAILOVER_SIGN_IN_S
    )


def test_audit_of_recommended_config_is_clean():
    # as edge.minion_config writes it: retry_dns 0 under failover (Salt forces that)
    opts = _opts(
        master=["a", "b"],
        master_type="failover",
        **dict(settings.RECOMMENDED, retry_dns=0),
        **{k: v for k, v in settings.RECOMMENDED_CORE.items() if k != "master_type"},
        **settings.RECOMMENDED_ENROLL,
    )
    audit = config_audit(opts)
    bad = [f for f in audit["findings"] if f["severity"] != "ok"]
    assert not bad, bad
    assert audit["ok"] is True and audit["worst"] == "ok"


def test_audit_of_salt_defaults():
    audit = config_audit(_opts(master="salt"))
    f = _by_setting(audit)
    assert f["master"]["severity"] == "warning"
    assert f["master_type"]["severity"] == "warning"
    assert f["master_alive_interval"]["severity"] == "warning"
    assert f["ping_interval"]["severity"] == "warning"
    assert f["autosign_grains"]["severity"] == "warning"
    assert f["tcp_keepalive"]["ok"]
    assert f["tcp_keepalive_intvl"]["severity"] == "info"
    assert f["recon_max"]["severity"] == "info"
    for finding in audit["findings"]:
        assert set(finding) == {"setting", "current", "recommended", "severity", "ok", "why"}
        assert finding["why"]
    assert audit["ok"] is False


def test_audit_critical_findings():
    f = _by_setting(
        config_audit(
            _opts(
                master=["a", "b"],
                master_type="failover",
                master_alive_interval=0,
                tcp_keepalive=False,
                retry_dns=0,
                retry_dns_count=3,
                recon_randomize=False,
                tcp_keepalive_idle=-1,
            )
        )
    )
    assert f["master_alive_interval"]["severity"] == "critical"
    assert f["tcp_keepalive"]["severity"] == "critical"
    # Salt itself forces retry_dns to 0 under failover: that is right there
    assert f["retry_dns"]["severity"] == "ok"
    assert f["retry_dns_count"]["severity"] == "warning"
    assert f["recon_randomize"]["severity"] == "warning"
    assert f["tcp_keepalive_idle"]["severity"] == "warning"
    assert f["autosign_grains"]["severity"] == "warning"


def test_audit_retry_dns_outside_failover():
    f = _by_setting(config_audit(_opts(master="a", master_type="str", retry_dns=0)))
    assert f["retry_dns"]["severity"] == "critical"
    f = _by_setting(config_audit(_opts(master=["a", "b"], master_type="failover", retry_dns=30)))
    assert f["retry_dns"]["severity"] == "info"


def test_audit_autosign_string():
    f = _by_setting(config_audit(_opts(autosign_grains="edge_token")))
    assert f["autosign_grains"]["ok"]


def test_configured_and_active_master():
    assert targets.configured_masters({"master": "a"}) == ["a"]
    assert targets.configured_masters({"master": ["a", "b", "a", ""]}) == ["a", "b"]
    assert targets.configured_masters({"master": "b", "master_list": ["a", "b"]}) == ["a", "b"]
    act = masters.active_master(
        {
            "master": "b",
            "master_list": ["a", "b"],
            "master_uri": "tcp://10.0.0.2:4506",
            "master_ip": "10.0.0.2",
        }
    )
    assert act["master"] == "b" and act["master_uri"] == "tcp://10.0.0.2:4506"
    assert masters.active_master({"master": ["a", "b"]})["master"] is None
    assert (
        masters.active_master({"master": "a", "master_uri": "tcp://x:1", "file_client": "local"})[
            "source"
        ]
        == "local mode"
    )


def test_master_targets_ports():
    plan = targets.master_targets(
        ["a", "b:5000", "[::1]:6000"], {"master_port": 4506, "publish_port": 4505}
    )
    assert plan[0] == ("a", "a", [("publish", 4505), ("return", 4506)])
    assert plan[1] == ("b:5000", "b", [("publish", 4505), ("return", 5000)])
    assert plan[2][1] == "::1"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://x/",
        "http://",
        "http://host:99999/",
        "http://host:abc/",
        "not a url",
        "http://[::1/",
        None,
        "https://h:0/",
    ],
)
def test_parse_url_rejects(url):
    with pytest.raises(args.DiagArgumentError):
        http_check.parse_url(url)


def test_parse_url_ok_and_redact():
    _p, host, port = http_check.parse_url("https://example.invalid/x")
    assert (host, port) == ("example.invalid", 443)
    assert (
        http_check.redact_url("http://u:pw@proxy.invalid:3128") == "http://***@proxy.invalid:3128"
    )
    assert http_check.redact_url("http://proxy.invalid:3128") == "http://proxy.invalid:3128"


def test_http_probe_dns_error_class_is_local():
    ret = http_check.http_probe("http://nonexistent.invalid/", timeout=1, proxy=False)
    assert ret["error_class"] == "dns" and ret["ok"] is False
    # answered locally (RFC 6761): no resolver round trip, no request made
    assert ret["elapsed_ms"] < 1000
    assert ret["status"] is None


def test_classify_http_error():
    import requests
    import urllib3

    assert http_check.classify_http_error(requests.exceptions.SSLError("x")) == "tls"
    assert http_check.classify_http_error(requests.exceptions.ConnectTimeout("x")) == "timeout"
    assert http_check.classify_http_error(requests.exceptions.ReadTimeout("x")) == "timeout"
    nre = urllib3.exceptions.NameResolutionError("h", None, OSError("x"))
    err = requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", nre))
    assert http_check.classify_http_error(err) == "dns"
    assert (
        http_check.classify_http_error(requests.exceptions.ConnectionError("refused")) == "connect"
    )


def _mreport(*states, quality="good"):
    masters = []
    for i, up in enumerate(states):
        ports = [
            {"role": r, "port": p, "reachable": up, "error": None if up else "timeout: 1"}
            for r, p in (("publish", 4505), ("return", 4506))
        ]
        masters.append({"master": f"m{i}", "dns": {"error": None}, "ports": ports, "reachable": up})
    return {"masters": masters, "quality": quality, "uplink": {}}


def test_verdict():
    assert diag.verdict(_mreport(True))[0] == "ok"
    level, reasons = (
        diag.verdict(_mreport(False), quality="down")
        if False
        else diag.verdict(_mreport(False, quality="down"))
    )
    assert level == "down" and "not reachable" in reasons[0]
    assert diag.verdict(_mreport(True, False))[0] == "degraded"
    assert diag.verdict(_mreport(True, quality="poor"))[0] == "degraded"
    assert diag.verdict({"masters": []})[0] == "down"
    assert diag.verdict(_mreport(True), missing=["http:0"])[0] == "degraded"
    audit = {
        "findings": [
            {
                "setting": "tcp_keepalive",
                "current": False,
                "recommended": True,
                "severity": "critical",
            }
        ]
    }
    assert diag.verdict(_mreport(True), audit=audit)[0] == "degraded"
    assert diag.verdict(_mreport(True), http=[{"ok": False, "url": "u"}])[0] == "degraded"


def test_diagnose_argument_errors():
    for kwargs in (
        {"count": 0},
        {"budget": 0},
        {"urls": ["ftp://x"]},
        {"targets": ["h:70000"]},
        {"masters": ["h:0"]},
    ):
        with pytest.raises((args.DiagArgumentError, ValueError)):
            diag.diagnose({"master": "127.0.0.1"}, **kwargs)


def test_dropin_written_by_the_state_passes_the_audit(tmp_path):
    """The catalogue drives both: what edge.minion_config writes, config_audit calls ok."""
    import yaml

    from saltext_edge import minion_config, settings

    plan = minion_config.build_plan(
        str(tmp_path / "minion.d" / "edge.conf"), ["a", "b"], site="sh-3", site_key="a" * 64
    )
    written = yaml.safe_load(plan["content"])
    audit = config_audit(_opts(**written))
    assert [f for f in audit["findings"] if f["severity"] != "ok"] == []
    names = [f["setting"] for f in audit["findings"]]
    assert names == [s.name for s in settings.CATALOGUE]
    for setting in settings.CATALOGUE:
        if setting.written in ("nat", "enroll") and setting.name != "retry_dns":
            assert written[setting.name] == setting.recommended, setting.name
    assert written["acceptance_wait_time"] == 0.25 and written["acceptance_wait_time_max"] == 10


def test_enrollment_retry_written_only_with_a_site_and_extra_wins(tmp_path):
    import yaml

    from saltext_edge import minion_config

    path = str(tmp_path / "minion.d" / "edge.conf")
    plain = yaml.safe_load(minion_config.build_plan(path, ["a", "b"])["content"])
    assert "acceptance_wait_time" not in plain and "acceptance_wait_time_max" not in plain
    mine = yaml.safe_load(
        minion_config.build_plan(
            path, ["a", "b"], site="sh-3", site_key="a" * 64, extra={"acceptance_wait_time": 3}
        )["content"]
    )
    assert mine["acceptance_wait_time"] == 3 and mine["acceptance_wait_time_max"] == 10


@pytest.mark.parametrize(
    "wait,cap,sev_wait,sev_cap",
    [
        (None, None, "info", "ok"),  # Salt's defaults: 10 s, no back-off (cap = 10)
        (0.25, 10, "ok", "ok"),  # what edge.minion_config writes
        (1, 10, "ok", "ok"),
        (1, 0, "ok", "warning"),  # no back-off: a pending node signs in every second
        (2, 4, "ok", "warning"),
        (0, 10, "warning", "ok"),
        (0.5, 16, "ok", "ok"),
    ],
)
def test_audit_of_the_sign_in_retry(wait, cap, sev_wait, sev_cap):
    over = {"master": ["a", "b"], "master_type": "failover", "autosign_grains": ["edge_token"]}
    if wait is not None:
        over["acceptance_wait_time"] = wait
    if cap is not None:
        over["acceptance_wait_time_max"] = cap
    f = _by_setting(config_audit(_opts(**over)))
    assert f["acceptance_wait_time"]["severity"] == sev_wait
    assert f["acceptance_wait_time_max"]["severity"] == sev_cap
    # not admitted by token: the retry is none of the audit's business
    plain = _by_setting(config_audit(_opts(master="salt", acceptance_wait_time=0)))
    assert "acceptance_wait_time" not in plain


def test_one_catalogue_line_adds_a_setting():
    """A new entry is audited with its rule and reason; nothing else changes."""
    from saltext_edge import audit_rules

    extra = settings.Setting(
        "edge_test_flag", True, "Because.", audit_rules.truthy("warning", None)
    )
    catalogue = (*settings.CATALOGUE, extra)
    off = _by_setting(config_audit(_opts(master="salt"), catalogue))["edge_test_flag"]
    assert off["severity"] == "warning" and off["why"] == "Because." and off["current"] is None
    on = _by_setting(config_audit(_opts(master="salt", edge_test_flag=True), catalogue))
    assert on["edge_test_flag"]["ok"] is True
