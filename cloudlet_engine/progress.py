"""One small way for long operations to report progress (stage, bytes)."""

import sys
import time


class Progress:
    """Receives `update(stage, done, total)` calls; the default does nothing."""

    def update(self, stage, done, total=None):
        pass


class NullProgress(Progress):
    pass


class TerminalProgress(Progress):
    """Prints one line per stage, rewritten at most every 0.2 s."""

    def __init__(self, stream=None, interval=0.2):
        self.stream = stream or sys.stderr
        self.interval = interval
        self._stage = None
        self._last = 0.0

    def update(self, stage, done, total=None):
        now = time.monotonic()
        finished = total is not None and done >= total
        if stage == self._stage and not finished and now - self._last < self.interval:
            return
        if stage != self._stage and self._stage is not None:
            self.stream.write('\n')
        self._stage, self._last = stage, now
        if total:
            text = '%s: %.1f / %.1f MB (%d%%)' % (stage, done / 1e6, total / 1e6, 100 * done // total)
        else:
            text = '%s: %.1f MB' % (stage, done / 1e6)
        self.stream.write('\r' + text)
        self.stream.flush()

    def close(self):
        if self._stage is not None:
            self.stream.write('\n')
            self.stream.flush()
            self._stage = None
