"""saltext_edge.config (the one reader of the edge: block) and saltext_edge.fileio."""

import os
import stat

import pytest

from saltext_edge import config, fileio


@pytest.mark.parametrize("value", [None, "", {}])
def test_edge_conf_unset_is_empty(value):
    assert config.edge_conf({"edge": value}) == {}
    assert config.edge_conf({}) == {}
    assert config.edge_conf(None) == {}


@pytest.mark.parametrize("value", ["site: x", ["site"], 3, True])
def test_edge_conf_not_a_mapping(value):
    with pytest.raises(
        config.EdgeConfigError, match="'edge' configuration option must be a mapping"
    ):
        config.edge_conf({"edge": value})


def test_edge_section():
    opts = {"edge": {"uplink": {"count": 5}, "site": "sh-3", "bad": [1]}}
    assert config.edge_section(opts, "uplink") == {"count": 5}
    assert config.edge_section(opts, "missing") == {}
    with pytest.raises(config.EdgeConfigError, match="edge:bad must be a mapping"):
        config.edge_section(opts, "bad")
    assert isinstance(config.EdgeConfigError("x"), ValueError)


def _entries(directory):
    return sorted(os.listdir(directory))


@pytest.mark.parametrize(
    ("edge", "site", "enrolling", "admission"),
    [
        (None, None, False, False),
        ("site: x", None, False, False),  # malformed reads as unset: a grain never fails
        ({"site": "sh-3"}, "sh-3", False, True),
        ({"site": ""}, "", False, False),
        ({"enrollment_key_file": "/etc/salt/edge.key"}, None, True, True),
        ({"enrollment_key": "k", "site": "sh-3"}, "sh-3", True, True),
        ({"uplink": {"count": 5}}, None, False, False),
    ],
)
def test_minion_edge_view(edge, site, enrolling, admission):
    view = config.minion_edge({"edge": edge})
    assert (view.site, view.enrolling, view.admission) == (site, enrolling, admission)


def test_edge_token_grain_reads_the_view(tmp_path, monkeypatch):
    """The grain is absent unless the view asks for admission, and a token otherwise."""
    from saltext_edge import tokens
    from saltext_edge.grains import edge_token

    base = {"id": "n1", "pki_dir": str(tmp_path / "pki"), "keysize": 2048}
    for edge in (None, "site: x", {"uplink": {}}, {"site": ""}):
        monkeypatch.setattr(edge_token, "__opts__", dict(base, edge=edge), raising=False)
        assert edge_token.edge_token() == {}
    assert not (tmp_path / "pki").exists()  # nothing created for an unconfigured minion
    opts = dict(base, edge={"site": "sh-3", "site_key": "ab" * 32})
    monkeypatch.setattr(edge_token, "__opts__", opts, raising=False)
    token = edge_token.edge_token()["edge_token"]
    assert token.startswith("v1:sh-3:")
    with open(tmp_path / "pki" / "minion.pub", "rb") as fh_:
        digest = tokens.pubkey_digest(fh_.read())
    assert token == tokens.make_token("ab" * 32, "sh-3", "n1", digest)


def test_atomic_write_replaces_with_mode(tmp_path):
    path = tmp_path / "f.conf"
    path.write_text("old")
    os.chmod(path, 0o600)
    assert fileio.atomic_write(str(path), b"new", 0o644) == str(path)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert _entries(tmp_path) == ["f.conf"]  # no temporary file left


def test_atomic_write_exclusive_never_replaces(tmp_path):
    path = tmp_path / "key"
    fileio.atomic_write(str(path), b"first", 0o600, exclusive=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        fileio.atomic_write(str(path), b"second", 0o600, exclusive=True)
    assert path.read_bytes() == b"first"
    assert _entries(tmp_path) == ["key"]


def test_atomic_write_failure_leaves_nothing(tmp_path):
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    with pytest.raises(OSError):
        fileio.atomic_write(str(target), b"x", 0o644)
    assert _entries(tmp_path) == ["dir-in-the-way"]
