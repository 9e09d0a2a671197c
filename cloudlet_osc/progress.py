"""Progress bars on stderr, fed by the engine's progress protocol.

cloudlet_glance.model and the engine report `update(stage, done, total)`
(cloudlet_engine.progress.Progress) while they upload, download,
validate or export; a ProgressBar draws that as

    uploading disk [==============>               ]  48% 128.5M/266.1M

Shown only when stderr is a terminal, unless --progress / --no-progress say
otherwise: a bar in a log file or a pipe is noise.
"""

import contextlib
import time

from osc_lib import utils

from cloudlet_engine import progress as engine_progress

WIDTH = 30
INTERVAL = 0.2      # seconds between redraws for byte counts alone


def add_arguments(parser):
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--progress', dest='progress', action='store_true', default=None,
                       help='Show a progress bar on stderr even when it is not a terminal')
    group.add_argument('--no-progress', dest='progress', action='store_false',
                       help='Never show a progress bar (default: shown when stderr is a terminal)')


def render(stage, done, total=None):
    """One line of progress; a bar when the total is known."""
    if not total:
        return '%s %s' % (stage, utils.format_size(done))
    fraction = min(max(done / total, 0.0), 1.0)
    filled = int(fraction * WIDTH)
    bar = ('=' * filled + ('>' if filled < WIDTH else '')).ljust(WIDTH)
    return '%s [%s] %3d%% %s/%s' % (stage, bar, int(fraction * 100), utils.format_size(done),
                                    utils.format_size(total))


class ProgressBar(engine_progress.Progress):
    """Redraws its line in place; one line per stage.

    A new stage or a new whole percent is drawn at once, byte counts alone at
    most every `interval` seconds: transfers report every chunk they move.
    """

    def __init__(self, stream, interval=INTERVAL):
        self.stream = stream
        self.interval = interval
        self._stage = self._percent = None
        self._line = ''
        self._drawn_at = 0.0

    def update(self, stage, done, total=None):
        percent = int(100 * done / total) if total else None
        now = time.monotonic()
        if (stage, percent) == (self._stage, self._percent) and now - self._drawn_at < self.interval:
            return
        if stage != self._stage and self._line:
            self.stream.write('\n')         # the finished stage keeps its last line
            self._line = ''
        line = render(stage, done, total)
        # Pad over the previous text: a shorter line would leave its tail visible.
        self.stream.write('\r' + line.ljust(len(self._line)))
        self.stream.flush()
        self._stage, self._percent, self._line, self._drawn_at = stage, percent, line, now

    def close(self):
        if self._line:
            self.stream.write('\n')
            self.stream.flush()
        self._stage = self._percent = None
        self._line = ''


def wants_display(parsed_args, stream):
    """--progress / --no-progress, else whether `stream` is a terminal."""
    if parsed_args.progress is not None:
        return parsed_args.progress
    return hasattr(stream, 'isatty') and stream.isatty()


@contextlib.contextmanager
def reporting(parsed_args, stream):
    """A ProgressBar on `stream` (or a silent Progress) for the length of a with block."""
    if not wants_display(parsed_args, stream):
        yield engine_progress.NullProgress()
        return
    bar = ProgressBar(stream)
    try:
        yield bar
    finally:
        bar.close()


class StatusLine:
    """One line of status text redrawn in place (a step without a byte count: --wait of a handoff)."""

    def __init__(self, stream, show):
        self.stream, self.show = stream, show
        self._line = ''

    def update(self, text):
        if not self.show or text == self._line:
            return
        self.stream.write('\r' + text.ljust(len(self._line)))
        self.stream.flush()
        self._line = text

    def close(self):
        if self.show and self._line:
            self.stream.write('\n')
            self.stream.flush()
        self._line = ''


@contextlib.contextmanager
def status_line(parsed_args, stream):
    """A StatusLine on `stream` for a with block: shown as ProgressBar is (a terminal, or --progress)."""
    line = StatusLine(stream, wants_display(parsed_args, stream))
    try:
        yield line
    finally:
        line.close()
