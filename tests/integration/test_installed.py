"""
The development install (editable, in .venv): Salt's loader finds our modules
through the entry point. The built wheel in a clean environment is tested in
``tests/integration/as_shipped/test_installed_wheel.py``.
"""


def test_minion_lists_edge_functions(salt_call_cli):
    ret = salt_call_cli.run("sys.list_functions", "edge")
    assert ret.returncode == 0, ret
    assert "edge.version" in ret.data


def test_runner_docs(salt_run_cli):
    ret = salt_run_cli.run("-d", "edge")
    assert ret.returncode == 0, ret
    assert "edge.version" in ret.stdout
