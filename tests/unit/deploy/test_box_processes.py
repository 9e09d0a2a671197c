"""tools/cloudlet_box/processes.py: a pidfile names the box's daemon only while that daemon runs,
not another program that got its pid after a reboot or on a copied machine."""

import os
import time

from cloudlet_box import processes


def test_a_started_daemon_is_found_and_stopped(tmp_path):
    pid = processes.start('sleeper', ['sleep', '60'], tmp_path / 'run', tmp_path / 'log')
    try:
        assert processes.pid_of(tmp_path / 'run' / 'sleeper.pid') == pid
        # start() does not start a second one while the first runs.
        assert processes.start('sleeper', ['sleep', '60'], tmp_path / 'run', tmp_path / 'log') == pid
    finally:
        assert processes.stop('sleeper', tmp_path / 'run')
    assert processes.pid_of(tmp_path / 'run' / 'sleeper.pid') is None


def test_a_recorded_pid_that_another_process_now_holds_is_not_the_daemon(tmp_path):
    pidfile = tmp_path / 'horizon.pid'
    # This test's own process, recorded with another start time: the pid was reused.
    pidfile.write_text('%d 1\n' % os.getpid())
    assert processes.pid_of(pidfile) is None
    assert not processes.stop('horizon', tmp_path)
    assert not pidfile.exists()


def test_a_daemons_own_pidfile_written_before_the_process_began_is_stale(tmp_path):
    pidfile = tmp_path / 'ovs-vswitchd.pid'
    pidfile.write_text('%d\n' % os.getpid())
    assert processes.pid_of(pidfile) == os.getpid()
    an_hour_ago = time.time() - 3600
    os.utime(pidfile, (an_hour_ago, an_hour_ago))
    assert processes.pid_of(pidfile) is None


def test_a_dead_or_unreadable_pid_is_none(tmp_path):
    pidfile = tmp_path / 'gone.pid'
    assert processes.pid_of(pidfile) is None
    pidfile.write_text('not a pid\n')
    assert processes.pid_of(pidfile) is None
