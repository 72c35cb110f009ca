"""saltext_edge.errors.command_errors: every runner error ends as one EdgeCommandError line."""

import pytest
import salt.exceptions
import salt.utils.args

from saltext_edge.errors import EdgeCommandError, command_errors


@command_errors
def sample(minion_id, wait=0):
    """Doc kept."""
    if wait == "type":
        raise salt.exceptions.SaltInvocationError("wait must be\na number")
    if wait == "value":
        raise ValueError("edge.sample: already named")
    if wait == "other":
        raise KeyError("a bug")
    if wait == "bug":
        return len(wait, minion_id)  # a TypeError of ours, not of the caller
    return minion_id


def test_wrapper_keeps_what_salt_and_the_docs_read():
    assert sample.__name__ == "sample"
    assert sample.__doc__ == "Doc kept."
    spec = salt.utils.args.get_function_argspec(sample)
    assert spec.args == ["minion_id", "wait"]
    assert spec.defaults == (0,)
    assert sample("n1") == "n1"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            (),
            {},
            "edge.sample: missing a required argument: 'minion_id' (usage: salt-run -d edge.sample)",
        ),
        (
            ("a", 1, 2),
            {},
            "edge.sample: too many positional arguments (usage: salt-run -d edge.sample)",
        ),
        (("a",), {"wait": "type"}, "edge.sample: wait must be a number"),
        (("a",), {"wait": "value"}, "edge.sample: already named"),
    ],
)
def test_bad_input_is_one_line(args, kwargs, message):
    with pytest.raises(EdgeCommandError) as err:
        sample(*args, **kwargs)
    assert str(err.value) == message
    # the class Salt's runner client prints as a message and exits 1 for
    assert isinstance(err.value, salt.exceptions.NotImplemented)
    assert not isinstance(err.value, TypeError)


def test_other_errors_are_not_hidden():
    with pytest.raises(KeyError):
        sample("a", wait="other")


def test_a_type_error_of_ours_is_an_internal_error_not_a_usage_error(caplog):
    with (
        caplog.at_level("ERROR", logger="saltext_edge.errors"),
        pytest.raises(EdgeCommandError) as err,
    ):
        sample("a", wait="bug")
    assert str(err.value) == (
        "edge.sample: internal error (TypeError); the traceback is in the master's log"
    )
    assert "usage" not in str(err.value)
    assert "Traceback" in caplog.text and "len(wait, minion_id)" in caplog.text
