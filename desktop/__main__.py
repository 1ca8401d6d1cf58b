"""Sprig's window launcher: ``sprig-desktop``, ``python -m desktop`` and a packaged app's binary.

Two things happen here before the window code is even imported:

* A multiprocessing child re-entering through a launcher that always runs Sprig runs its
  task and exits. Sprig starts "spawn" children (the document parser, the model probe, the
  store check); multiprocessing starts them as ``sys.executable [flags] -c CODE ...``. In a
  packaged app (Briefcase) ``sys.executable`` is the app's own stub binary, which ignores
  interpreter options and runs the app module with those words as arguments, so without
  this check every child would open another window.
* ``--install-desktop-entry`` / ``--uninstall-desktop-entry`` add Sprig to (or remove it
  from) the application menu without loading Qt.
"""

from __future__ import annotations

import re
import sys

INSTALL_FLAG = "--install-desktop-entry"
UNINSTALL_FLAG = "--uninstall-desktop-entry"
MENU_HELP = f"""
application menu:
  {INSTALL_FLAG}
                        add Sprig to the application menu (an XDG desktop entry that
                        starts this install, with its icons), then exit
  {UNINSTALL_FLAG}
                        remove what {INSTALL_FLAG} wrote, then exit
"""

# the code multiprocessing passes with -c: a spawn child, or the resource tracker it starts
_BOOTSTRAP = re.compile(
    r"from multiprocessing\.spawn import spawn_main; spawn_main\([\w=, ]*\)$"
    r"|from multiprocessing\.resource_tracker import main; ?main\(\d+\)$"
)


def spawned_child_code(argv: list[str]) -> str | None:
    """The bootstrap code when ``argv`` (without the program name) is a multiprocessing child's.

    Only interpreter flags may come before ``-c``, and only multiprocessing's own bootstrap
    lines are accepted, so no user argument can ever be taken for code.
    """
    if "-c" not in argv:
        return None
    at = argv.index("-c")
    if at + 1 >= len(argv) or not all(a.startswith("-") or _is_flag_value(argv, i)
                                       for i, a in enumerate(argv[:at])):
        return None
    code = argv[at + 1]
    return code if _BOOTSTRAP.match(code) else None


def _is_flag_value(argv: list[str], i: int) -> bool:
    """``argv[i]`` is the value of a preceding ``-X``/``-W`` interpreter flag."""
    return i > 0 and argv[i - 1] in ("-X", "-W")


def run_spawned_child(argv: list[str]) -> bool:
    """Run a multiprocessing child's bootstrap if ``argv`` is one; False when it is not."""
    code = spawned_child_code(argv)
    if code is None:
        return False
    rest = argv[argv.index("-c") + 2:]
    sys.argv = ["-c", *rest]  # what the interpreter itself would have set
    exec(compile(code, "<multiprocessing bootstrap>", "exec"), {"__name__": "__main__"})  # noqa: S102
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if run_spawned_child(argv):
        return 0
    import multiprocessing

    multiprocessing.freeze_support()  # frozen Windows builds: the same re-entry, their way
    if INSTALL_FLAG in argv or UNINSTALL_FLAG in argv:
        return _desktop_entry(install=INSTALL_FLAG in argv, uninstall=UNINSTALL_FLAG in argv)
    from desktop.app import main as start_window

    if "-h" in argv or "--help" in argv:
        from desktop.app import parse_args

        try:
            parse_args(argv)
        except SystemExit:  # argparse printed the window's options
            pass
        print(MENU_HELP.rstrip())
        return 0
    return start_window(argv)


def _desktop_entry(install: bool, uninstall: bool) -> int:
    from desktop.desktop_entry import DesktopEntryError, install_entry, uninstall_entry

    if install and uninstall:
        print(f"sprig-desktop: choose one of {INSTALL_FLAG} and {UNINSTALL_FLAG}.", file=sys.stderr)
        return 2
    try:
        report = install_entry() if install else uninstall_entry()
    except DesktopEntryError as exc:
        print(f"sprig-desktop: {exc}", file=sys.stderr)
        return 1
    print(report.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
