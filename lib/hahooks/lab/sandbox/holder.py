"""PID 1 of a sandbox node (run by path with `python3 -I -S`, standard library only).

Why it is built this way:
* A PID namespace lives as long as its init: this process is that init. Daemons that
  daemonize (heartbeat, keepalived) are re-parented to it, so it reaps every child, or the
  node fills with zombies.
* It must not outlive the Lab that made it: argv[1] is the read end of a pipe whose write
  end only the Lab process holds. EOF on it means the Lab is gone (even SIGKILLed), and
  the node powers itself off (init exits -> the kernel kills the whole namespace).
  SIGUSR1 (Lab.release(), for `--keep`) stops that watch. On argv[2] (a pipe) it writes
  one byte once its signals are blocked: a signal sent before that would be dropped.
* SIGTERM/SIGINT/SIGHUP end the node. The signals are blocked and taken with
  sigtimedwait: for a namespace init, a signal without a handler would be dropped.
"""
import os
import select
import signal
import sys


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> int:
    owner_fd = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else -1
    stop = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    wanted = stop | {signal.SIGCHLD, signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    if len(sys.argv) > 2 and sys.argv[2].isdigit():
        os.write(int(sys.argv[2]), b"1")      # ready
        os.close(int(sys.argv[2]))
    while True:
        reap()
        if owner_fd >= 0:
            ready, _, _ = select.select([owner_fd], [], [], 0)
            if ready and not os.read(owner_fd, 64):
                return 0                      # the Lab process is gone: power off
        info = signal.sigtimedwait(wanted, 0.5)
        if info is None:
            continue
        if info.si_signo in stop:
            return 0
        if info.si_signo == signal.SIGUSR1 and owner_fd >= 0:
            os.close(owner_fd)
            owner_fd = -1


if __name__ == "__main__":
    sys.exit(main())
