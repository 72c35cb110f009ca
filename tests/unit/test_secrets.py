"""Secret loading (master) and site key loading (minion): fail closed, never echo."""

import os

import pytest

from saltext_edge import shared_secret as secrets, tokens as token

GOOD = "a-very-good-fleet-secret"
OLD = "the-previous-fleet-secret"


def _opts(**edge):
    return {"edge": edge}


def test_order_file_then_option_then_env(tmp_path):
    path = tmp_path / "s"
    path.write_text(GOOD + "\n")
    env = {"SALT_SHARED_SECRET": "environment-secret-value"}
    assert secrets.master_secrets(_opts(shared_secret_file=str(path), shared_secret="option-secret-value"), env) == [GOOD]
    assert secrets.master_secrets(_opts(shared_secret="option-secret-value"), env) == ["option-secret-value"]
    assert secrets.master_secrets({}, env) == ["environment-secret-value"]
    assert secrets.master_secret_source({}, env) == "environment variable SALT_SHARED_SECRET"


def test_previous_secret(tmp_path):
    path = tmp_path / "old"
    path.write_text(OLD)
    assert secrets.master_secrets(_opts(shared_secret=GOOD, previous_shared_secret=OLD), {}) == [GOOD, OLD]
    assert secrets.master_secrets(_opts(shared_secret=GOOD, previous_shared_secret_file=str(path)), {}) == [GOOD, OLD]
    # same as current: listed once
    assert secrets.master_secrets(_opts(shared_secret=GOOD, previous_shared_secret=GOOD), {}) == [GOOD]


@pytest.mark.parametrize(
    "opts,env,words",
    [
        ({}, {}, "no shared secret configured"),
        (_opts(shared_secret=""), {}, "edge:shared_secret is empty"),
        (_opts(shared_secret=None), {"SALT_SHARED_SECRET": GOOD}, "edge:shared_secret is empty"),
        (_opts(shared_secret="short-secret"), {}, "shorter than 16"),
        (_opts(shared_secret=1234567890123456789), {}, "must be a string"),
        ({}, {"SALT_SHARED_SECRET": ""}, "SALT_SHARED_SECRET is empty"),
        ({}, {"SALT_SHARED_SECRET": "tiny-secret"}, "SALT_SHARED_SECRET is shorter"),
        (_opts(shared_secret=GOOD, previous_shared_secret="tiny-secret"), {}, "previous_shared_secret is shorter"),
        ({"edge": "nope"}, {}, "must be a mapping"),
    ],
)
def test_fail_closed(opts, env, words):
    with pytest.raises(secrets.SecretError) as err:
        secrets.master_secrets(opts, env)
    assert words in str(err.value)
    for value in ("short-secret", "tiny-secret", "1234567890123456789"):
        assert value not in str(err.value)


def test_unreadable_file_does_not_fall_through(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(secrets.SecretError) as err:
        secrets.master_secrets(_opts(shared_secret_file=str(missing), shared_secret=GOOD), {})
    assert "edge:shared_secret_file" in str(err.value) and str(missing) in str(err.value)
    assert GOOD not in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads anything")
def test_unreadable_permissions(tmp_path):
    path = tmp_path / "s"
    path.write_text(GOOD)
    path.chmod(0)
    with pytest.raises(secrets.SecretError):
        secrets.master_secrets(_opts(shared_secret_file=str(path)), {})


def test_empty_and_weak_files(tmp_path):
    empty = tmp_path / "e"
    empty.write_text("\n\n")
    weak = tmp_path / "w"
    weak.write_text("weak-secret\n")
    for path, words in ((empty, "is empty"), (weak, "shorter than 16")):
        with pytest.raises(secrets.SecretError) as err:
            secrets.master_secrets(_opts(shared_secret_file=str(path)), {})
        assert words in str(err.value)
        assert "weak-secret" not in str(err.value)


def test_master_site_key():
    assert secrets.master_site_key(_opts(shared_secret=GOOD), "sh-3", {}) == token.site_key(GOOD, "sh-3")
    with pytest.raises(token.TokenError):
        secrets.master_site_key(_opts(shared_secret=GOOD), "bad site", {})


def test_minion_unconfigured():
    assert secrets.minion_site_key({}) is None
    assert secrets.minion_site_key(_opts(site="sh-3")) is None
    assert secrets.minion_site_key(_opts(site_key="ab" * 32)) is None


def test_minion_sources(tmp_path):
    k_site = token.site_key(GOOD, "sh-3")
    keyfile = tmp_path / "k"
    keyfile.write_text(k_site.upper() + "\n")
    secfile = tmp_path / "s"
    secfile.write_text(GOOD + "\n")
    assert secrets.minion_site_key(_opts(site="sh-3", site_key=k_site)) == ("sh-3", k_site)
    assert secrets.minion_site_key(_opts(site="sh-3", site_key_file=str(keyfile))) == ("sh-3", k_site)
    assert secrets.minion_site_key(_opts(site="sh-3", shared_secret=GOOD)) == ("sh-3", k_site)
    assert secrets.minion_site_key(_opts(site="sh-3", shared_secret_file=str(secfile))) == ("sh-3", k_site)
    # site_key wins over shared_secret
    other = token.site_key("another-secret-value", "sh-3")
    assert secrets.minion_site_key(_opts(site="sh-3", site_key=other, shared_secret=GOOD)) == ("sh-3", other)


def test_minion_bad_inputs(tmp_path):
    with pytest.raises(secrets.SecretError) as err:
        secrets.minion_site_key(_opts(site="sh-3", site_key="not-hex-" * 8))
    assert "not-hex-" not in str(err.value)
    with pytest.raises(secrets.SecretError):
        secrets.minion_site_key(_opts(site="sh-3", site_key_file=str(tmp_path / "missing")))
    with pytest.raises(secrets.SecretError):
        secrets.minion_site_key(_opts(site="sh-3", shared_secret="short"))
    with pytest.raises(token.TokenError):
        secrets.minion_site_key(_opts(site="bad site", site_key="ab" * 32))
