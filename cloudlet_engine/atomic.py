"""Files written whole or not at all: records, metadata, secrets.

A reader (another process, or this one after a crash) sees the old file or
the new one, never a part: the text goes to a temporary file in the same
directory, is flushed to disk, and is renamed over the target. On any
failure the temporary file is removed.
"""

import json
import os
import tempfile


def write_text(path, text, mode=None, fsync=True):
    """Replace the file at `path` with `text` (str); `mode`: its permissions (default: umask's)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json(path, data, indent=2, mode=None, fsync=True):
    """`data` as sorted, indented JSON with a final newline, written atomically."""
    write_text(path, json.dumps(data, indent=indent, sort_keys=True) + '\n', mode, fsync)


def _umask():
    # Read, not set-and-restore: os.umask() would change it for every thread.
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('Umask:'):
                return int(line.split()[1], 8)
    return 0o022
