"""Secret loading (master) and site key loading (minion): fail closed, never echo."""

import os

import pytest

from saltext_edge import shared_secret as secrets
from saltext_edge import tokens as token

GOOD = "9f2c4e7a1b8d3f6e0a5c9b2d7e4f1a8c3b6d9e2f5a8c1b4e"
OLD = "c7E2-kQ9xW4pL8mZ3vN6bR1tY5uH0jG7fD2sA9qX4wE8rT3y"
OTHER = "Zq3Xv9Lm2Kp7Wn4Rt8Ys1Bd6Hf0Jc5Ge3Ua9Io2Pe7Nb4Mx"
EXPIRES = "2999-01-01T00:00:00Z"


def _opts(**edge):
    return {"edge": edge}


def test_order_file_then_option_then_env(tmp_path):
    path = tmp_path / "s"
    path.write_text(GOOD + "\n")
    env = {"SALT_SHARED_SECRET": OTHER}
    assert secrets.master_secrets(_opts(shared_secret_file=str(path), shared_secret=OLD), env) == [
        GOOD
    ]
    assert secrets.master_secrets(_opts(shared_secret=OLD), env) == [OLD]
    assert secrets.master_secrets({}, env) == [OTHER]
    assert secrets.master_secret_source({}, env) == "environment variable SALT_SHARED_SECRET"


def test_previous_secret(tmp_path):
    path = tmp_path / "old"
    path.write_text(OLD)
    conf = {"shared_secret": GOOD, "previous_shared_secret_expires": EXPIRES}
    assert secrets.master_secrets(_opts(previous_shared_secret=OLD, **conf), {}) == [GOOD, OLD]
    assert secrets.master_secrets(_opts(previous_shared_secret_file=str(path), **conf), {}) == [
        GOOD,
        OLD,
    ]
    # same as current: listed once
    assert secrets.master_secrets(_opts(previous_shared_secret=GOOD, **conf), {}) == [GOOD]


def test_previous_secret_needs_an_end_and_expires(caplog):
    with pytest.raises(secrets.SecretError) as err:
        secrets.master_secrets(_opts(shared_secret=GOOD, previous_shared_secret=OLD), {})
    assert "previous_shared_secret_expires" in str(err.value) and OLD not in str(err.value)
    with pytest.raises(secrets.SecretError):
        secrets.master_secrets(
            _opts(
                shared_secret=GOOD,
                previous_shared_secret=OLD,
                previous_shared_secret_expires=20261231,
            ),
            {},
        )
    past = _opts(
        shared_secret=GOOD, previous_shared_secret=OLD, previous_shared_secret_expires="2001-01-01"
    )
    with caplog.at_level("WARNING"):
        assert secrets.master_secrets(past, {}) == [GOOD]
    assert "expired" in caplog.text and OLD not in caplog.text


@pytest.mark.parametrize(
    "value",
    [
        "EdgeFleet2024!!!",
        "REPLACE-WITH-AT-LEAST-16-RANDOM-CHARACTERS",
        "REPLACE-WITH-OUTPUT-OF-saltext-edge-new-secret",
        "report-test-fleet-secret-0123456789",
        "correct horse battery staple extra words",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "0123456789abcdef0123456789abcdef",
        "LEAKcur-" + "q7" * 16,
    ],
)
def test_weak_and_placeholder_secrets_refused(value):
    with pytest.raises(secrets.SecretError) as err:
        secrets.master_secrets(_opts(shared_secret=value), {})
    assert "saltext-edge new-secret" in str(err.value) and value not in str(err.value)


def test_generated_secrets_pass():
    import secrets as pysecrets

    for _ in range(200):
        value = pysecrets.token_urlsafe(32)
        assert secrets.master_secrets(_opts(shared_secret=value), {}) == [value]
        value = pysecrets.token_hex(32)
        assert secrets.master_secrets(_opts(shared_secret=value), {}) == [value]


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
        (
            _opts(
                shared_secret=GOOD,
                previous_shared_secret="tiny-secret",
                previous_shared_secret_expires=EXPIRES,
            ),
            {},
            "previous_shared_secret is shorter",
        ),
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
    assert secrets.master_site_key(_opts(shared_secret=GOOD), "sh-3", {}) == token.site_key(
        GOOD, "sh-3"
    )
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
    assert secrets.minion_site_key(_opts(site="sh-3", site_key_file=str(keyfile))) == (
        "sh-3",
        k_site,
    )
    assert secrets.minion_site_key(_opts(site="sh-3", shared_secret=GOOD)) == ("sh-3", k_site)
    assert secrets.minion_site_key(_opts(site="sh-3", shared_secret_file=str(secfile))) == (
        "sh-3",
        k_site,
    )
    # site_key wins over shared_secret
    other = token.site_key("another-secret-value", "sh-3")
    assert secrets.minion_site_key(_opts(site="sh-3", site_key=other, shared_secret=GOOD)) == (
        "sh-3",
        other,
    )


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
