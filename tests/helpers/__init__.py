"""What the tests build or drive: hostile files, scanned and EPUB books, forged GGUF files, and the
child-process drivers that kill or trace Sprig mid-work."""


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a child that must take Ctrl+C as a terminal delivers it: SIGINT at its
    default disposition and unblocked, whatever the test process's earlier tests left behind
    (a child inherits an ignored or blocked signal)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def ctrl_c_sprig(args: list[str], env: dict, when: str, after_s: float = 0.0,
                 timeout: float = 120) -> tuple[int, str, str, list[str]]:
    """Run ``python -m desktop.cli *args``, press Ctrl+C ``after_s`` seconds after a stderr line
    holding ``when``, and wait for it to end: (exit code, stdout, stderr after that line, the
    stderr lines up to and with it)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "desktop.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=as_from_a_terminal)
    try:
        lines: list[str] = []
        while not any(when in line for line in lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        time.sleep(after_s)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err, lines
