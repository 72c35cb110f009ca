"""
Admission's direct reads and moves of Salt's ``localfs_key`` files
(``keystore.read_key`` / ``keystore.accept_pending``), against real key
files written by Salt's own key store in a temporary PKI directory; only
the event bus is replaced by a recorder.
"""

import os

import pytest
import salt.key
from salt.exceptions import SaltCacheError

from saltext_edge.admission import keystore


class _Bus:
    def __init__(self):
        self.fired = []

    def fire_event(self, data, tag):
        self.fired.append((tag, data))
        return True


@pytest.fixture
def keyobj(opts):
    for sub in ("minions", "minions_pre", "minions_rejected", "minions_denied"):
        os.makedirs(os.path.join(opts["pki_dir"], sub), exist_ok=True)
    obj = salt.key.Key(opts)
    obj.__dict__["event"] = _Bus()  # Key.event is a cached property
    return obj


def _store(keyobj, mid, pub, state):
    keyobj.cache.store("keys", mid, {"pub": pub, "state": state})


def _path(keyobj, sub, mid):
    return os.path.join(keyobj.opts["pki_dir"], sub, mid)


@pytest.mark.parametrize("state", ["pending", "accepted", "rejected", None])
def test_read_key_reads_what_salt_reads(keyobj, pub, state):
    if state:
        _store(keyobj, "edge-1", pub, state)
    assert keystore.read_key(keyobj, "edge-1") == (keyobj.cache.fetch("keys", "edge-1") or {})


def test_read_key_ignores_a_symlink_and_odd_ids(keyobj, pub, tmp_path):
    target = tmp_path / "elsewhere.pub"
    target.write_text(pub)
    os.symlink(target, _path(keyobj, "minions_pre", "edge-1"))
    assert keystore.read_key(keyobj, "edge-1") == {}
    with pytest.raises(SaltCacheError):  # Salt refuses it too
        keyobj.cache.fetch("keys", "edge-1")
    with pytest.raises(SaltCacheError):  # an odd id goes to Salt's checks
        keystore.read_key(keyobj, "../etc")


def test_accept_pending_moves_the_very_file(keyobj, pub):
    _store(keyobj, "edge-1", pub, "pending")
    before = os.stat(_path(keyobj, "minions_pre", "edge-1"))
    assert keystore.accept_pending(keyobj, "edge-1", pub) is True
    assert keyobj.cache.fetch("keys", "edge-1") == {"state": "accepted", "pub": pub}
    assert not os.path.exists(_path(keyobj, "minions_pre", "edge-1"))
    after = os.stat(_path(keyobj, "minions", "edge-1"))
    assert (after.st_ino, after.st_mode, after.st_uid) == (
        before.st_ino,
        before.st_mode,
        before.st_uid,
    )
    assert keyobj.event.fired == [
        ("salt/key", {"result": True, "act": "accept", "id": "edge-1", "pub": pub})
    ]
    assert not os.path.exists(keystore._staged(keyobj, "edge-1"))


def test_accept_pending_leaves_another_key_alone(keyobj, pub):
    _store(keyobj, "edge-1", pub, "pending")
    other = pub.replace("A", "B", 1)
    assert keystore.accept_pending(keyobj, "edge-1", other) is False
    assert keyobj.cache.fetch("keys", "edge-1") == {"state": "pending", "pub": pub}
    assert keystore.accept_pending(keyobj, "edge-2", pub) is False  # no pending key at all
    _store(keyobj, "edge-3", pub, "rejected")
    assert keystore.accept_pending(keyobj, "edge-3", pub) is False
    assert keyobj.cache.fetch("keys", "edge-3")["state"] == "rejected"
    assert not keyobj.event.fired


def test_a_key_replaced_while_it_is_read_is_not_accepted(keyobj, pub, monkeypatch):
    """The pending file swapped (same text, another file) between the read and the move."""
    _store(keyobj, "edge-1", pub, "pending")
    real_read = keystore._read_fd

    def read_then_swap(fd):
        text = real_read(fd)
        swap = _path(keyobj, "minions_pre", ".swap")
        with open(swap, "w", encoding="utf-8") as fh_:
            fh_.write(text)
        os.rename(swap, _path(keyobj, "minions_pre", "edge-1"))
        return text

    monkeypatch.setattr(keystore, "_read_fd", read_then_swap)
    assert keystore.accept_pending(keyobj, "edge-1", pub) is False
    assert keyobj.cache.fetch("keys", "edge-1") == {"state": "pending", "pub": pub}
    assert not os.path.exists(_path(keyobj, "minions", "edge-1"))
    assert not keyobj.event.fired


def test_a_killed_move_is_finished_by_the_next_decision(keyobj, pub):
    """Killed after the rename: pending and accepted both; killed before it: a staged link."""
    _store(keyobj, "edge-1", pub, "pending")
    os.link(_path(keyobj, "minions_pre", "edge-1"), _path(keyobj, "minions", "edge-1"))
    assert keystore.read_key(keyobj, "edge-1")["state"] == "pending"  # as Salt reads it
    assert keystore.accept_pending(keyobj, "edge-1", pub) is True
    assert keyobj.cache.fetch("keys", "edge-1")["state"] == "accepted"
    assert not os.path.exists(_path(keyobj, "minions_pre", "edge-1"))

    _store(keyobj, "edge-2", pub, "pending")
    os.link(_path(keyobj, "minions_pre", "edge-2"), keystore._staged(keyobj, "edge-2"))
    assert keystore.accept_pending(keyobj, "edge-2", pub) is True
    assert keyobj.cache.fetch("keys", "edge-2")["state"] == "accepted"
    assert not os.path.exists(keystore._staged(keyobj, "edge-2"))


def test_another_key_store_goes_through_salts_api(keyobj, pub):
    keyobj.opts["keys.cache_driver"] = "some_other_driver"
    assert keystore._key_files(keyobj, "edge-1") is None
    keyobj.opts["keys.cache_driver"] = "localfs_key"
    assert keystore._key_files(keyobj, "a/b") is None
    assert keystore._key_files(keyobj, "..") is None


def test_recovery_finishes_a_move_killed_after_its_rename(keyobj, pub, opts):
    from saltext_edge.admission import stores

    store = stores.cache(opts)
    _store(keyobj, "edge-1", pub, "pending")
    os.link(_path(keyobj, "minions_pre", "edge-1"), _path(keyobj, "minions", "edge-1"))
    _store(keyobj, "edge-2", pub, "pending")
    os.link(_path(keyobj, "minions_pre", "edge-2"), keystore._staged(keyobj, "edge-2"))
    intent = {"pub": pub, "state": "accepted", "decision": "accepted", "reason": None}
    keystore.journal(store, {"edge-1": intent, "edge-2": intent})

    done, restored = keystore.recover(store, keyobj)

    assert set(done) == {"edge-1"} and done["edge-1"]["action"] == "accepted"
    assert restored == []
    assert keyobj.cache.fetch("keys", "edge-1") == {"state": "accepted", "pub": pub}
    assert keyobj.event.fired == [
        ("salt/key", {"result": True, "act": "accept", "id": "edge-1", "pub": pub})
    ]
    # killed before its rename: still pending, decided again; the staged link is gone
    assert keyobj.cache.fetch("keys", "edge-2") == {"state": "pending", "pub": pub}
    assert not os.path.exists(keystore._staged(keyobj, "edge-2"))
