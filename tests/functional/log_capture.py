"""Every log record of a functional test, kept as text: for checks that a secret never reaches a log."""

import logging


class CollectingHandler(logging.Handler):
    """Every log record of the test, formatted with its traceback (DEBUG included)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter('%(levelname)s [%(name)s] %(message)s'))
        self.lines = []

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception:   # noqa: BLE001 - a broken record must not hide the others
            self.lines.append(repr(record.msg))

    def text(self):
        return '\n'.join(self.lines)
