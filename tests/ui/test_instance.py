"""One Sprig per data folder: the lock comes first; a second launch hands over and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from desktop.ui.instance import SingleInstance
from tests.conftest import REPO, eval_path
from tests.ui.conftest import SQUAD, rows_by_name, wait_idle

# a second launch, reporting which store modules it imported (it must open none)
SECOND_LAUNCH = (
    "import sys, json\n"
    "from desktop.app import main\n"
    "rc = main(sys.argv[1:])\n"
    "stores = ['desktop.rag.catalog', 'desktop.chats', 'desktop.rag.library', 'chromadb',"
    " 'PySide6.QtWidgets']\n"
    "print('IMPORTED', json.dumps([m for m in stores if m in sys.modules]))\n"
    "sys.exit(rc)\n"
)


def second_launch(qtbot, paths, *files):
    env = dict(os.environ, PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", SECOND_LAUNCH, "--data-dir", str(paths.root), *map(str, files)],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    qtbot.waitUntil(lambda: proc.poll() is not None, timeout=15_000)  # our event loop answers it meanwhile
    elapsed = time.monotonic() - started
    out, err = proc.communicate()
    return proc.returncode, out, err, elapsed


def test_a_second_launch_hands_its_files_to_the_running_window_and_exits(qtbot, make_window, library, paths):
    instance = SingleInstance(paths.root, paths.lock)
    assert instance.acquire() and instance.listen()
    window = make_window(library=library, startup_jobs=False)
    instance.received.connect(window.open_paths)
    article = eval_path(*SQUAD, "007_Southern_California.txt")
    rc, out, err, elapsed = second_launch(qtbot, paths, article)
    assert rc == 0, err
    assert "already running" in out and "sent 1 item" in out
    assert 'IMPORTED []' in out  # no store, no window toolkit: it never opened anything
    print(f"\nsecond launch handed over and exited in {elapsed:.2f} s")
    assert elapsed < 2.0
    qtbot.waitUntil(lambda: article.name in rows_by_name(window), timeout=5000)
    wait_idle(qtbot, window)
    instance.release()


def test_a_second_launch_says_so_when_the_running_one_does_not_answer(qtbot, paths):
    holder = SingleInstance(paths.root, paths.lock)
    assert holder.acquire()  # locked, but not listening (e.g. still starting, or hung)
    try:
        rc, out, err, elapsed = second_launch(qtbot, paths)
    finally:
        holder.release()
    assert rc == 1
    assert "already running" in err and "did not answer" in err
    assert elapsed < 2.5


def test_a_lock_left_by_a_process_that_died_is_taken_over(paths):
    code = (
        "import sys, time\n"
        "from desktop.ui.instance import SingleInstance\n"
        "i = SingleInstance(__import__('pathlib').Path(sys.argv[1]), __import__('pathlib').Path(sys.argv[2]))\n"
        "assert i.acquire(); print('locked', flush=True); time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", code, str(paths.root), str(paths.lock)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    assert not SingleInstance(paths.root, paths.lock).acquire()  # alive: it holds the folder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert paths.lock.exists()
    again = SingleInstance(paths.root, paths.lock)
    assert again.acquire()  # the owner is dead: the stale lock is taken over
    again.release()
