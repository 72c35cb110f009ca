"""The argument checks the runner's library calls make before any work."""

import pytest

from saltext_edge import admission, enrollment_admin, report_request, tokens
from saltext_edge import enrollment as _enr


@pytest.mark.parametrize("timeout", ["soon", "0", 3601, "1.5"])
def test_report_timeout_refused(timeout):
    with pytest.raises(report_request.ReportError, match="timeout"):
        report_request.check_timeout(timeout)


def test_report_timeout_and_html_accepted(tmp_path):
    assert report_request.check_timeout("30") == 30
    assert report_request.check_timeout(None) is None
    page = str(tmp_path / "fleet.html")
    assert report_request.check_html(page) == page


@pytest.mark.parametrize("html", ["fleet.html", "/tmp/", 7, "/no/such/dir/fleet.html"])
def test_report_html_refused(html):
    with pytest.raises(report_request.ReportError, match="html"):
        report_request.check_html(html)


def test_node_needs_an_id():
    with pytest.raises(report_request.ReportError, match="give one minion id"):
        report_request.node({}, "")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wait": "soon"}, "wait must be a number"),
        ({"wait": -1}, "between 0 and 3600"),
        ({"wait": "nan"}, "between 0 and 3600"),
        ({"wait": 3601}, "between 0 and 3600"),
        ({"match": ""}, "non-empty glob"),
        ({"match": ["a"]}, "non-empty glob"),
    ],
)
def test_accept_pending_arguments_checked_first(kwargs, message):
    # opts without a secret: the arguments are refused before the secret is read
    with pytest.raises(admission.AdmissionError, match=message):
        admission.accept_pending({}, **kwargs)


def test_listing_status_checked():
    with pytest.raises(_enr.EnrollmentError, match="status must be one of"):
        enrollment_admin.listing({}, status="bogus")


def test_site_key_checks_before_writing(tmp_path):
    existing = tmp_path / "sh-3.key"
    existing.write_text("kept\n")
    with pytest.raises(enrollment_admin.KeyFileError, match="already exists"):
        enrollment_admin.write_site_key({}, "sh-3", str(existing))
    assert existing.read_text() == "kept\n"
    with pytest.raises(enrollment_admin.KeyFileError, match="absolute"):
        enrollment_admin.write_site_key({}, "sh-3", "sh-3.key")
    with pytest.raises(tokens.TokenError):  # a bad site name
        enrollment_admin.write_site_key({}, "not a site", str(tmp_path / "x.key"))
