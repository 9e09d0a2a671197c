"""Progress bars on stderr (tty or forced) and the --wait loop."""

import argparse

from osc_lib import exceptions
import pytest

from cloudlet_engine import progress as engine_progress
from cloudlet_osc import progress
from cloudlet_osc import wait
from tests.unit.osc.conftest import FakeStream


def test_render_draws_a_bar_when_the_total_is_known():
    assert progress.render('uploading disk', 0, 1000) == \
        'uploading disk [>                             ]   0% 0/1K'
    assert progress.render('uploading disk', 500, 1000) == \
        'uploading disk [===============>              ]  50% 500/1K'
    assert progress.render('uploading disk', 1000, 1000) == \
        'uploading disk [==============================] 100% 1K/1K'
    assert progress.render('validating', 2500000) == 'validating 2.5M'


def test_bar_redraws_at_new_percents_and_breaks_lines_between_stages():
    stream = FakeStream()
    bar = progress.ProgressBar(stream, interval=3600)
    bar.update('uploading memory', 10, 1000)
    bar.update('uploading memory', 11, 1000)          # same percent, too soon: not drawn
    bar.update('uploading memory', 1000, 1000)
    bar.update('uploading disk', 0, None)
    bar.close()
    lines = stream.getvalue().split('\n')
    assert lines[0].count('\r') == 2
    assert lines[0].endswith('100% 1K/1K')
    assert lines[1] == '\ruploading disk 0'
    assert lines[2] == ''


def test_shorter_line_pads_over_the_longer_one():
    stream = FakeStream()
    bar = progress.ProgressBar(stream, interval=0)
    bar.update('unpacking', 123456789)
    bar.update('unpacking', 7)
    assert stream.getvalue().endswith('\r' + 'unpacking 7'.ljust(len('unpacking 123.5M')))


def test_byte_counts_alone_redraw_after_the_interval():
    stream = FakeStream()
    bar = progress.ProgressBar(stream, interval=0)
    bar.update('uploading memory', 10, 1000)
    bar.update('uploading memory', 11, 1000)
    assert stream.getvalue().endswith('\ruploading memory [>' + ' ' * 29 + ']   1% 11/1K')


@pytest.mark.parametrize('argv,tty,shown', [
    ([], True, True), ([], False, False),
    (['--progress'], False, True), (['--no-progress'], True, False),
])
def test_reporting_shows_a_bar_on_a_terminal_unless_told_otherwise(argv, tty, shown):
    parser = argparse.ArgumentParser()
    progress.add_arguments(parser)
    stream = FakeStream(tty=tty)
    with progress.reporting(parser.parse_args(argv), stream) as bar:
        bar.update('downloading overlay', 5, 10)
    assert isinstance(bar, progress.ProgressBar) is shown
    assert isinstance(bar, engine_progress.Progress)
    assert stream.getvalue() == ('\rdownloading overlay [' + '=' * 15 + '>' + ' ' * 14 + ']  50% 5/10\n'
                                 if shown else '')


def test_until_returns_the_first_finished_result(no_real_waiting):
    results = iter(['queued', 'saving', 'active', 'never'])
    assert wait.until(lambda: next(results), lambda s: s == 'active', 60, 'image') == 'active'
    assert no_real_waiting == [wait.POLL_INTERVAL, wait.POLL_INTERVAL]


def test_until_gives_up_after_the_timeout(monkeypatch, no_real_waiting):
    now = [0.0]
    monkeypatch.setattr(wait, 'clock', lambda: now[0])
    monkeypatch.setattr(wait, 'sleep', lambda s: now.__setitem__(0, now[0] + s))
    with pytest.raises(exceptions.CommandError, match='^gave up waiting for server x after 5 s$'):
        wait.until(lambda: 'BUILD', lambda s: s == 'ACTIVE', 5, 'server x')
    assert now[0] == 6.0


def test_timeout_must_be_positive():
    parser = argparse.ArgumentParser()
    wait.add_arguments(parser, 'done', 30)
    assert parser.parse_args([]).timeout == 30
    with pytest.raises(SystemExit):
        parser.parse_args(['--timeout', '0'])
