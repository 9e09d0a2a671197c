"""Starting, watching and stopping the box's daemons without systemd.

Each daemon runs in its own session with its output in <logs>/<name>.log
and its pid in <run>/<name>.pid. Stopping sends SIGTERM, waits a bounded
time, then SIGKILLs the whole process group: nova's services and uwsgi
workers can take tens of seconds to honour SIGTERM.
"""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


class StartError(RuntimeError):
    pass


def pid_of(pidfile):
    """The live pid recorded in `pidfile`, or None.

    The box's files can outlive its processes (a reboot, a copied machine),
    and a recorded pid may by then be another program's, which must be
    neither waited for nor killed. start() records the process's start
    time next to its pid; for a pidfile a daemon wrote itself (Open vSwitch,
    libvirtd), a process that began after the file was written is not its writer.
    """
    try:
        recorded = pidfile.read_text().split()
        pid = int(recorded[0])
        written = pidfile.stat().st_mtime
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    started = _start_ticks(pid)
    if started is None:
        return None
    if recorded[1:]:
        return pid if recorded[1] == str(started) else None
    return None if _boot_time() + started / os.sysconf('SC_CLK_TCK') > written + START_SLACK else pid


# /proc/stat's boot time has whole seconds, and a file's mtime may be
# coarse: a process is not taken for a newcomer within this many seconds.
START_SLACK = 2.0


def _start_ticks(pid):
    """When `pid` began, in clock ticks after boot (/proc/<pid>/stat); None if it is gone or a zombie."""
    try:
        fields = open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == 'Z' else int(fields[19])


def _boot_time():
    with open('/proc/stat') as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith('btime '))


def start(name, argv, run_dir, log_dir, env=None):
    """Start `argv` detached unless it already runs; return its pid."""
    pidfile = run_dir / (name + '.pid')
    pid = pid_of(pidfile)
    if pid:
        return pid
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / (name + '.log'), 'ab') as log:
        # cwd /: a daemon (and what it spawns: haproxy, dnsmasq) must not keep
        # the caller's directory, a checkout that may be deleted under it.
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env=dict(os.environ, **(env or {})), start_new_session=True,
                                   close_fds=True, cwd='/')
    pidfile.write_text('%d %s\n' % (process.pid, _start_ticks(process.pid)))
    return process.pid


def stop(name, run_dir, grace=10.0):
    """Stop the daemon recorded as `name`; True if one was running."""
    pidfile = run_dir / (name + '.pid')
    pid = pid_of(pidfile)
    if not pid:
        pidfile.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_of(pidfile):
        time.sleep(0.2)
    if pid_of(pidfile):
        _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_of(pidfile):
            time.sleep(0.1)
    pidfile.unlink(missing_ok=True)
    return True


def kill(name, run_dir, timeout=10.0):
    """SIGKILL the daemon recorded as `name` and its process group, as a crash would; True if one ran."""
    pidfile = run_dir / (name + '.pid')
    pid = pid_of(pidfile)
    if not pid:
        return False
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_of(pidfile):
        time.sleep(0.1)
    pidfile.unlink(missing_ok=True)
    return True


def _signal_group(pid, signum):
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, signum)


# nova's services log a fatal start-up error through the top-level `nova`
# logger and, on native threads, may then hang instead of exiting.
NOVA_FATAL = re.compile(rb' ERROR nova [^.\s]')


def log_size(log):
    return log.stat().st_size if log.exists() else 0


def wait_for(what, probe, timeout, pid_check=None, log=None, fatal=None, log_start=0):
    """Poll `probe()` until it is true; fail early if the daemon died, or
    if its log, from byte `log_start` on, has a line matching `fatal`.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        if pid_check is not None and not pid_check():
            raise StartError('%s exited during start-up%s' % (what, _log_hint(log)))
        if fatal is not None and log.exists():
            with open(log, 'rb') as handle:
                handle.seek(log_start)
                if fatal.search(handle.read()):
                    raise StartError('%s failed during start-up%s' % (what, _log_hint(log)))
        time.sleep(0.25)
    raise StartError('%s did not come up within %d s%s' % (what, timeout, _log_hint(log)))


def _log_hint(log):
    if not log or not log.exists():
        return ''
    tail = log.read_bytes()[-1500:].decode('utf-8', 'replace')
    return '; see %s, which ends:\n%s' % (log, tail)


def tcp_open(port, host='127.0.0.1'):
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_answers(url):
    """True once `url` answers HTTP at all (any status: 401 means it is up)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
