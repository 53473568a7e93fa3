"""app/main.py: what the page says about its Python before anything else mounts."""

from app.main import python_version_text


def test_the_device_sheet_says_how_python_started():
    snapshot = {"python": "3.14.2", "pyodide": "314.0.7", "start": "snapshot", "start_ms": "312"}
    assert python_version_text(snapshot) == "Python 3.14.2 (Pyodide 314.0.7), started from its snapshot in 0.31 s"
    fresh = dict(snapshot, start="fresh", start_ms="1204")
    assert python_version_text(fresh) == "Python 3.14.2 (Pyodide 314.0.7), started in 1.20 s"
    # Where the start was not measured (no python-start entry), only the versions.
    assert python_version_text({"python": "3.14.2", "pyodide": "314.0.7"}) == "Python 3.14.2 (Pyodide 314.0.7)"
