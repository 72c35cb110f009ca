"""Pure parts of the admission engine (saltext_edge.admission.engine); the engine itself runs in tests/adversarial/test_admission_engine.py."""

import pytest

from saltext_edge.admission import engine
from saltext_edge.admission.policy import AdmissionError


def test_engine_configured_by_name_or_module():
    assert engine.engine_configured({"engines": [{"edge_admission": {}}]})
    assert engine.engine_configured({"engines": ["edge_admission"]})
    assert engine.engine_configured(
        {"engines": [{"adm_1": {"engine_module": "edge_admission", "worker": 1, "workers": 2}}]}
    )
    assert not engine.engine_configured({"engines": [{"edge_fleet": {}}]})
    assert not engine.engine_configured({})
    assert not engine.engine_configured(None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"workers": 0},
        {"workers": 9},
        {"worker": 2, "workers": 2},
        {"worker": -1},
        {"workers": "2"},
        {"workers": True},
        {"window": 0},
        {"window": 5},
        {"window": "0.1"},
    ],
)
def test_bad_options_are_refused(kwargs):
    with pytest.raises(AdmissionError, match="edge_admission"):
        engine.check_options(**kwargs)


def test_ids_are_shared_out_between_workers():
    ids = [f"edge-{i}" for i in range(200)]
    shares = [{m for m in ids if engine.takes(m, w, 2)} for w in (0, 1)]
    assert shares[0].isdisjoint(shares[1]) and shares[0] | shares[1] == set(ids)
    assert 60 < len(shares[0]) < 140
    assert all(engine.takes(m, 0, 1) for m in ids)


def test_sign_ins_keep_only_what_admission_reads_and_drop_exact_repeats():
    good = {"act": "pend", "id": "a", "pub": "P", "autosign_grains": {"edge_token": "T"}}
    events = [
        good,
        dict(good),  # a retry within the window
        dict(good, pub="Q"),  # another key under the same id (perhaps forged)
        dict(good, act="accept"),
        dict(good, id=None),
        dict(good, autosign_grains={"edge_token": ["T"]}),
        dict(good, autosign_grains=None),
        "junk",
        dict(good, id="b", act="denied"),
    ]
    got = engine._sign_ins(events)
    assert dict(got) == {"a": [("P", "T", "pend"), ("Q", "T", "pend")], "b": [("P", "T", "denied")]}


@pytest.mark.parametrize(
    "edge, status",
    [
        (
            {
                "shared_secret": "unit-fleet-9f2c4e7a1b8d3f6e0a5c9b2d7e4f1a8c3b6d9e2f",
                "auto_admit": "yes",
            },
            "bad_policy",
        ),
        ({"auto_admit": True}, "no_secret"),
    ],
)
def test_a_bad_policy_or_no_secret_decides_nothing(opts, pub, tmp_path, edge, status, monkeypatch):
    """Fail closed: the batch is refused as a whole, one line logged, nothing stored."""
    monkeypatch.delenv("SALT_SHARED_SECRET", raising=False)
    opts["edge"] = edge
    event = {"act": "pend", "id": "edge-1", "pub": pub, "autosign_grains": {"edge_token": "v1:x:y"}}
    assert engine.handle_batch(opts, [event]) == {"statuses": {status: 1}, "decided": {}}
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.p"))


def test_retries_fired_before_the_acceptance_are_dropped():
    """A sign-in the master fired before this engine accepted the id is dropped; a later one (the key pending again) is not."""
    import datetime

    def stamp(epoch):
        return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()

    accepted = engine.Accepted()
    accepted.note(["a"], now=1000.0)
    ev = {"act": "pend", "id": "a", "pub": "P", "autosign_grains": {"edge_token": "T"}}
    assert accepted.stale("a", dict(ev, _stamp=stamp(999.5)))
    assert not accepted.stale("a", dict(ev, _stamp=stamp(1000.5)))
    assert not accepted.stale("b", dict(ev, id="b", _stamp=stamp(999.5)))
    # no stamp or a malformed one: handled (dropping is only for what is known stale)
    assert not accepted.stale("a", ev)
    assert not accepted.stale("a", dict(ev, _stamp="yesterday"))
    got = engine._sign_ins(
        [dict(ev, _stamp=stamp(999.0)), dict(ev, id="b", _stamp=stamp(999.0))], accepted=accepted
    )
    assert list(got) == ["b"]


def test_accepted_ids_are_bounded(monkeypatch):
    monkeypatch.setattr(engine, "ACCEPTED_MAX", 10)
    accepted = engine.Accepted()
    accepted.note([f"n{i}" for i in range(25)], now=1000.0)
    assert len(accepted.when) == 10
    accepted.note(["late"], now=1000.0 + engine.ACCEPTED_TTL + 1)
    assert list(accepted.when) == ["late"]
