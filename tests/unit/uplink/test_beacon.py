"""The edge_heartbeat beacon as Salt's loader loads it: one signed heartbeat, tag and site from uplink.heartbeat."""

import threading

import salt.config
import salt.loader
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from saltext_edge.uplink import heartbeat


def test_the_loaded_beacon_sends_one_signed_heartbeat(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "minion.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    opts = salt.config.minion_config(None)
    opts.update(
        id="n1",
        cachedir=str(tmp_path),
        pki_dir=str(tmp_path),
        edge={"site": "sh-3", "uplink": {"targets": ["127.0.0.1:1"], "budget": 0.5}},
    )
    fired, sent = [], threading.Event()

    def fire_master(data, tag):
        fired.append((tag, data))
        sent.set()
        return True

    beacons = salt.loader.beacons(opts, functions={"event.fire_master": fire_master})
    config = [{"period": 1}, {"first_after": 0}, {"jitter": 0}]
    assert beacons["edge_heartbeat.validate"](config) == (True, "valid")
    assert beacons["edge_heartbeat.validate"]([{"period": 0}])[1] == (
        "edge_heartbeat: period must be a number between 1 and 86400"
    )
    for _ in range(100):  # the beacon loop calls it about once a second
        assert beacons["edge_heartbeat.beacon"](config) == []
        if sent.wait(0.05):
            break
    (tag, data), *_ = fired
    assert tag == heartbeat.TAG
    assert data["id"] == "n1" and data["site"] == "sh-3" and data["seq"] == 1
    assert data["uplink"]["quality"] in ("down", "unknown") and "sig" in str(data)
