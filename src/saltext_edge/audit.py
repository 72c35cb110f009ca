"""
``edge.config_audit``: the minion's settings checked against the catalogue
of :mod:`saltext_edge.settings`, one rule per setting (pure; see
``docs/howto/diagnose.rst``).
"""

from saltext_edge import settings as _settings

SEVERITIES = ("ok", "info", "warning", "critical")
SEV_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


def finding(setting, current, recommended, severity, why, note=None):
    """One audit finding (a dict, see :func:`config_audit`)."""
    return {
        "setting": setting,
        "current": current,
        "recommended": recommended,
        "severity": severity,
        "ok": severity == "ok",
        "why": why if note is None else f"{note} {why}",
    }


def check(opts, setting):
    """The finding for one catalogue ``setting``, or None when it does not apply."""
    result = setting.rule(opts, setting)
    if result is None:
        return None
    return finding(
        setting.name,
        opts.get(setting.name) if result.current is None else result.current,
        setting.recommended if result.recommended is None else result.recommended,
        result.severity,
        result.why or setting.why,
        result.note,
    )


def config_audit(opts, catalogue=None):
    """
    Audit the minion's settings against edge best practice. Returns
    ``{"findings": [...], "summary": {severity: count}, "worst": severity,
    "ok": bool}``; each finding has ``setting``, ``current``, ``recommended``,
    ``severity`` (ok, info, warning, critical), ``ok`` and ``why``.
    """
    findings = []
    for setting in _settings.CATALOGUE if catalogue is None else catalogue:
        found = check(opts, setting)
        if found is not None:
            findings.append(found)
    summary = dict.fromkeys(SEVERITIES, 0)
    for item in findings:
        summary[item["severity"]] += 1
    worst = max((item["severity"] for item in findings), key=SEV_RANK.__getitem__, default="ok")
    return {
        "findings": findings,
        "summary": summary,
        "worst": worst,
        "ok": SEV_RANK[worst] < SEV_RANK["warning"],
    }
