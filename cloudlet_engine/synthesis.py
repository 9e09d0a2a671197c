"""Synthesis: base + overlay -> a running VM with a new identity, no boot.

The identity (name, uuid, disks, console log, forwarded ports, kernel and
initrd) is written into the launch memory image the way the nova driver
writes it (identity.py), then the image is restored.
"""

import dataclasses
import os
import shutil
import time
import uuid as uuidlib

from cloudlet_engine import apply
from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import hypervisor
from cloudlet_engine import identity
from cloudlet_engine import ramfile
from cloudlet_engine import savefile
from cloudlet_engine import source as sources


@dataclasses.dataclass
class Synthesized:
    name: str
    uuid: str
    launch_dir: str
    disk_path: str
    overlay_bytes: int = 0
    restored_bytes: int = 0
    timings: dict = dataclasses.field(default_factory=dict)


def restore_launch(conn, base, launch, name, uuid, console_log=None, port_forwards=None):
    """Give the launch memory image its identity and restore it, running."""
    image_xml = savefile.read_save_image(launch.memory_path).xml
    # The base's own kernel and initrd; for a base without them, the files
    # the snapshot names, if this host still has them.
    new = identity.Identity(name, uuid, identity.keeping_other_disks(image_xml, launch.disk_path),
                            console_log=console_log, port_forwards=port_forwards,
                            boot_sources=(base.boot_files(), domainxml.direct_boot_files(image_xml)),
                            ram=launch.ram)
    identity.write(launch.memory_path, new, base.name or base.base_id)
    return hypervisor.restore_domain(conn, launch.memory_path)


def synthesize(base, overlay_location, launch_dir, name, uuid=None, port_forwards=None,
               conn=None, limits=None, max_bytes=sources.DEFAULT_MAX_BYTES, progress=None,
               keep_memory_image=False, key=None, verifier=None, policy=None, ram_file=False):
    """Fetch and apply an overlay (None: resume the base as it is), then restore.

    ram_file: restore guest RAM copy-on-write from the base's RAM file
    (ramfile.py; made on first use) with a sparse launch image, instead of
    from a full memory image.

    key, verifier: as apply.apply_overlay takes them (an encrypted overlay's
    key; a signature verifier fed every byte of the overlay). policy: the
    outbound.Policy of an overlay URL, as source.open_overlay takes it (None:
    public addresses only; a local tool fetching for its own user passes
    outbound.OPEN).

    On failure nothing is left: the launch directory is removed and no domain
    stays defined.
    """
    uuid = uuid or str(uuidlib.uuid4())
    timings = {}
    started = time.monotonic()
    if os.path.exists(launch_dir) and os.listdir(launch_dir):
        raise errors.CloudletError('launch directory %s is not empty' % launch_dir)
    conn = conn or hypervisor.connect()
    # Checked first: the cleanup below destroys the domain of that name, and
    # must never touch a VM that was not ours.
    if hypervisor.lookup(conn, name) is not None:
        raise errors.CloudletError('a domain named %s exists already' % name)
    os.makedirs(launch_dir, exist_ok=True)
    console_log = os.path.join(launch_dir, 'console.log')
    try:
        ram = None
        if ram_file:
            ram = ramfile.convert(base, owner=hypervisor.qemu_owner(conn.getCapabilities(), hypervisor.virt_type()))
            ram.check()
            timings['ram_file'] = time.monotonic() - started
        if overlay_location is None:
            launch = apply.empty_launch(base, launch_dir, ram=ram)
            overlay_bytes = 0
        else:
            with sources.open_overlay(overlay_location, max_bytes=max_bytes, policy=policy) as stream:
                launch = apply.apply_overlay(base, stream, launch_dir, limits, progress, key=key,
                                             verifier=verifier, ram=ram)
            overlay_bytes = launch.overlay_bytes
        timings['fetch_and_apply'] = time.monotonic() - started
        mark = time.monotonic()
        restore_launch(conn, base, launch, name, uuid, console_log, port_forwards)
        timings['restore'] = time.monotonic() - mark
    except BaseException:
        hypervisor.destroy_domain(conn, name)
        shutil.rmtree(launch_dir, ignore_errors=True)
        raise
    if not keep_memory_image:
        # QEMU has read the memory image; only the disk stays in use.
        os.unlink(launch.memory_path)
    timings['total'] = time.monotonic() - started
    return Synthesized(name, uuid, launch_dir, launch.disk_path, overlay_bytes,
                       launch.restored_bytes, timings)
