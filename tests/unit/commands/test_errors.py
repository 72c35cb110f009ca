"""saltext_edge.errors: one root, one decorator; every runner error ends as one EdgeCommandError line."""

import pytest
import salt.exceptions
import salt.utils.args

from saltext_edge.admission.policy import AdmissionError
from saltext_edge.alerts import AlertError
from saltext_edge.config import EdgeConfigError
from saltext_edge.enrollment_admin import KeyFileError
from saltext_edge.errors import EdgeCommandError, EdgeError, command_errors, edge_errors
from saltext_edge.fleet.proof import ProofError
from saltext_edge.minion_request import MinionConfigError
from saltext_edge.report_request import ReportError
from saltext_edge.shared_secret import SecretError
from saltext_edge.tokens import TokenError
from saltext_edge.uplink.args import DiagArgumentError, ProbeArgumentError
from saltext_edge.view.metrics_catalogue import MetricsConfigError


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


@pytest.mark.parametrize(
    "cls",
    [
        TokenError,
        EdgeConfigError,
        SecretError,
        MinionConfigError,
        ProbeArgumentError,
        DiagArgumentError,
        AdmissionError,
        AlertError,
        KeyFileError,
        ProofError,
        ReportError,
        MetricsConfigError,
    ],
)
def test_one_root_and_still_a_value_error(cls):
    assert issubclass(cls, EdgeError) and issubclass(cls, ValueError)


def test_the_command_error_is_an_edge_error_salt_prints():
    assert issubclass(EdgeCommandError, EdgeError)
    assert str(EdgeCommandError("edge.x: bad")) == "edge.x: bad"


@edge_errors(
    error=salt.exceptions.CommandExecutionError,
    usage="salt-call sys.doc {name}",
    log_place="the minion's log",
)
def probe_it(count=1):
    """An execution module function."""
    if count == "bug":
        return len(count, count)
    if count == "bad":
        raise ProbeArgumentError("count must be an integer, not 'bad'")
    return count


def test_an_execution_module_gets_the_same_type_error_rule(caplog):
    assert probe_it(3) == 3
    with pytest.raises(salt.exceptions.CommandExecutionError) as err:
        probe_it(1, 2)
    assert str(err.value) == (
        "edge.probe_it: too many positional arguments (usage: salt-call sys.doc edge.probe_it)"
    )
    with pytest.raises(salt.exceptions.CommandExecutionError) as err:
        probe_it("bad")
    assert str(err.value) == "edge.probe_it: count must be an integer, not 'bad'"
    with (
        caplog.at_level("ERROR", logger="saltext_edge.errors"),
        pytest.raises(salt.exceptions.CommandExecutionError) as err,
    ):
        probe_it("bug")
    assert str(err.value) == (
        "edge.probe_it: internal error (TypeError); the traceback is in the minion's log"
    )
    assert "Traceback" in caplog.text
