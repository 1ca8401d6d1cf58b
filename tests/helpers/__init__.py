"""What the tests build or drive: hostile files, scanned and EPUB books, forged GGUF files, and the
child-process drivers that kill or trace Sprig mid-work."""


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a child that must take Ctrl+C as a terminal delivers it: SIGINT at its
    default disposition and unblocked, whatever the test process's earlier tests left behind
    (a child inherits an ignored or blocked signal)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
