"""One writer per data folder: the command line and the window share one lock."""

from __future__ import annotations

import os
import subprocess
import sys

from desktop.lock import DataFolderLock


def _sprig(home, *args, **kw):
    return subprocess.Popen([sys.executable, "-m", "desktop.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "SPRIG_HOME": str(home)}, **kw)


def test_cli_refuses_a_data_folder_the_window_owns(sprig_home, qtbot):
    from desktop.ui.instance import SingleInstance

    window = SingleInstance(sprig_home, sprig_home / "sprig.lock")
    assert window.acquire()
    try:
        proc = _sprig(sprig_home, "docs")
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 4
        assert "already using the data folder" in err and "Close the window" in err, err
    finally:
        window.release()
        window.deleteLater()
    done = subprocess.run([sys.executable, "-m", "desktop.cli", "docs"], capture_output=True, text=True,
                          env={**os.environ, "SPRIG_HOME": str(sprig_home)}, timeout=300)
    assert done.returncode == 0, done.stderr


def test_cli_exit_code_when_the_folder_is_in_use(sprig_home):
    with DataFolderLock(sprig_home / "sprig.lock") as held:
        assert held.acquire()
        result = subprocess.run([sys.executable, "-m", "desktop.cli", "search", "pumps"], capture_output=True,
                                text=True, env={**os.environ, "SPRIG_HOME": str(sprig_home)}, timeout=300)
    assert result.returncode == 4
    assert f"process {os.getpid()}" in result.stderr


def test_the_window_sees_a_running_cli_and_takes_over_a_dead_ones_lock(sprig_home, qtbot):
    from desktop.ui.instance import SingleInstance

    cli = DataFolderLock(sprig_home / "sprig.lock")
    assert cli.acquire()
    window = SingleInstance(sprig_home, sprig_home / "sprig.lock")
    assert not window.acquire()  # a live CLI owns it
    cli.release()
    assert window.acquire()
    assert not DataFolderLock(sprig_home / "sprig.lock").acquire()  # and now the CLI sees the window
    window.release()
    window.deleteLater()
    # a lock file left behind by a process that died is taken over
    (sprig_home / "sprig.lock").write_text("999999\npython3\nhost\n")
    again = DataFolderLock(sprig_home / "sprig.lock")
    assert again.acquire()
    again.release()


def test_cli_index_hands_its_files_to_the_running_window(sprig_home, tmp_path, qtbot):
    from desktop.ui.instance import SingleInstance

    doc = tmp_path / "notes.txt"
    doc.write_text("Pump notes.\n")
    window = SingleInstance(sprig_home, sprig_home / "sprig.lock")
    assert window.acquire() and window.listen()
    try:
        with qtbot.waitSignal(window.received, timeout=120_000) as got:
            proc = _sprig(sprig_home, "index", str(doc))
        out, err = proc.communicate(timeout=120)
    finally:
        window.release()
        window.deleteLater()
    assert got.args == [[str(doc)]]
    assert proc.returncode == 0, err
    assert "it is indexing the 1 item(s) there" in out
