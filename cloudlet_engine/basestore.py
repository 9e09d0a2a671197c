"""The bases cached on one host (`<root>/<base_id>/`), and how the host forgets them.

A compute host fetches a base the first time something needs it (a
synthesis, a pre-cache, a live migration) and keeps it: every later use of it
on that host restores from local files. Kept forever, bases would fill the
disk, so the store ages them (`age`): above a byte budget, the least recently
used bases that nothing uses are deleted, oldest use first; a base used less
than `min_idle` seconds ago is kept whatever the budget (a spawn between its
fetch and its first record). A deleted base is fetched again on its next use.

Beside the bases, the store holds:

    .lock                  flock: fetches and uses take it shared, ageing exclusive
    .fetch-<base_id>       flock: one fetch of a base at a time (the others then find it here)
    .incoming-*            a base being fetched or built (new_workdir)
    .evicting-*            a base being deleted (renamed first: it disappears at once)
    <base_id>/.last-used   its mtime is the base's last use (touch)

A host stopped in the middle of a fetch or a deletion leaves `.incoming-*`
or `.evicting-*` behind; `sweep` removes them when nothing runs (nova-compute's
init_host).
"""

import contextlib
import dataclasses
import fcntl
import os
import shutil
import tempfile
import time

from cloudlet_engine import atomic
from cloudlet_engine import basevm
from cloudlet_engine import errors

LOCK, LAST_USED = '.lock', '.last-used'
INCOMING, EVICTING, FETCH_LOCK = '.incoming-', '.evicting-', '.fetch-'


@dataclasses.dataclass(frozen=True)
class Cached:
    """One base in the store: its id, the bytes its files take on disk, its last use (epoch s)."""
    base_id: str
    allocated_bytes: int
    last_used: float


class BaseStore:
    """The bases cached on this host: `<root>/<base_id>/`."""

    def __init__(self, root):
        self.root = root

    def path(self, base_id):
        return os.path.join(self.root, base_id)

    def get(self, base_id):
        if not base_id or not all(c in '0123456789abcdef' for c in base_id):
            raise errors.BaseVMError('invalid base id %r' % base_id)
        path = self.path(base_id)
        if not os.path.isdir(path):
            raise errors.BaseVMError('base %s is not cached on this host (%s)' % (base_id, self.root))
        return basevm.BaseVM(path)

    def has(self, base_id):
        return os.path.isdir(self.path(base_id))

    def list(self):
        if not os.path.isdir(self.root):
            return []
        bases = []
        for entry in sorted(os.listdir(self.root)):
            if entry.startswith('.'):
                continue
            try:
                bases.append(basevm.BaseVM(os.path.join(self.root, entry)))
            except errors.BaseVMError:
                continue
        return bases

    @contextlib.contextmanager
    def lock(self, exclusive=False):
        """Across threads and processes: a use (shared) never overlaps a deletion (exclusive)."""
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, LOCK), 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield

    @contextlib.contextmanager
    def fetching(self, base_id):
        """Across threads and processes: one fetch of `base_id` at a time."""
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, FETCH_LOCK + base_id), 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def new_workdir(self):
        os.makedirs(self.root, exist_ok=True)
        return tempfile.mkdtemp(prefix=INCOMING, dir=self.root)

    def adopt(self, workdir, base):
        """Move a finished base from its workdir to its id; idempotent."""
        final = self.path(base.base_id)
        # mkdtemp made the workdir 0700; QEMU (another user) opens the base
        # disk as the backing file of every launch disk, and the boot files.
        os.chmod(workdir, 0o755)
        for name in os.listdir(workdir):
            os.chmod(os.path.join(workdir, name), 0o644)
        if os.path.isdir(final):
            _add_boot_files(basevm.BaseVM(final), base)
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            os.rename(workdir, final)
        self.touch(base.base_id)
        return basevm.BaseVM(final)

    def touch(self, base_id):
        """Record a use of the base now (its ageing counts from the last one)."""
        with open(os.path.join(self.path(base_id), LAST_USED), 'a'):
            pass
        os.utime(os.path.join(self.path(base_id), LAST_USED))

    def cached(self):
        """[Cached] for every base in the store."""
        found = []
        for base in self.list():
            try:
                last_used = os.stat(os.path.join(base.path, LAST_USED)).st_mtime
            except FileNotFoundError:     # cached before ageing existed: as old as its manifest
                last_used = os.stat(os.path.join(base.path, basevm.MANIFEST)).st_mtime
            found.append(Cached(base.base_id, _allocated_bytes(base.path), last_used))
        return found

    def delete(self, base_id):
        """Delete a base: renamed away first, so that no reader finds half of it."""
        path = self.get(base_id).path
        doomed = tempfile.mkdtemp(prefix=EVICTING, dir=self.root)
        os.rename(path, os.path.join(doomed, base_id))
        shutil.rmtree(doomed)

    def sweep(self):
        """Remove what a stopped fetch or deletion left; only when nothing uses the store."""
        if not os.path.isdir(self.root):
            return []
        removed = []
        for entry in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, entry)
            if entry.startswith((INCOMING, EVICTING)):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif entry.startswith(FETCH_LOCK):
                os.unlink(path)         # a lock file, not a leftover worth reporting
        return removed


def _allocated_bytes(path):
    """What the directory's files take on disk (RAM files and base disks are sparse)."""
    total = 0
    for name in os.listdir(path):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(os.path.join(path, name)).st_blocks * 512
    return total


def _add_boot_files(cached, new_copy):
    """Give a cached base the boot files a new copy of it brings (same id: same disk and memory)."""
    if cached.boot_files() or not new_copy.boot_files():
        return
    for name, path in new_copy.boot_files().items():
        os.replace(path, os.path.join(cached.path, name))
    manifest = dict(cached.manifest, version=basevm.BOOT_VERSION, boot=new_copy.manifest['boot'],
                    files=new_copy.manifest['files'])
    atomic.write_json(os.path.join(cached.path, basevm.MANIFEST), manifest)


# ---------------------------------------------------------------- ageing


@dataclasses.dataclass(frozen=True)
class Ageing:
    """What one pass of `age` did: the bases deleted, and the bytes the store holds after it."""
    evicted: tuple
    kept_bytes: int
    budget_bytes: int

    @property
    def over_budget(self):
        return self.kept_bytes > self.budget_bytes


def choose_evictions(cached, budget_bytes, in_use, min_idle, now):
    """The base ids to delete, least recently used first, until the rest fits `budget_bytes`.

    Never one in `in_use`, nor one used less than `min_idle` seconds before `now`.
    """
    total = sum(c.allocated_bytes for c in cached)
    chosen = []
    for candidate in sorted(cached, key=lambda c: c.last_used):
        if total <= budget_bytes:
            break
        if candidate.base_id in in_use or now - candidate.last_used < min_idle:
            continue
        chosen.append(candidate.base_id)
        total -= candidate.allocated_bytes
    return chosen, total


def age(store, budget_bytes, in_use, min_idle, now=None):
    """Delete the bases `choose_evictions` picks; returns an Ageing.

    `in_use`: the ids of the bases in use on this host, or a callable that
    returns them (called under the lock). Holding the store's lock
    exclusively, no fetch of a base can find it cached and then lose it.
    """
    with store.lock(exclusive=True):
        used = set(in_use() if callable(in_use) else in_use)
        chosen, kept = choose_evictions(store.cached(), budget_bytes, used, min_idle,
                                        time.time() if now is None else now)
        for base_id in chosen:
            store.delete(base_id)
    return Ageing(tuple(chosen), kept, budget_bytes)
