"""Capture from a running libvirt domain: a base VM, or an overlay.

Both save the domain's memory with libvirt (the domain stops), read its disk,
and, if asked, restore the domain so that it keeps running. A base also keeps
a copy of the kernel and initrd of a domain that boots one directly.
"""

import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

from cloudlet_engine import basevm
from cloudlet_engine import chunks
from cloudlet_engine import create
from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import hypervisor
from cloudlet_engine import ramfile


def domain_disk_path(xml_text):
    root = ET.fromstring(xml_text)
    for disk in root.iter('disk'):
        if disk.get('device', 'disk') == 'disk':
            src = disk.find('source')
            if src is not None and src.get('file'):
                return src.get('file')
    raise errors.CloudletError('the domain has no file-backed disk')


def _save(conn, domain_name, memory_path):
    """Save the domain's memory (the domain stops); return (its disk path, its XML)."""
    dom = hypervisor.lookup(conn, domain_name)
    if dom is None:
        raise errors.HypervisorError('no domain named %s' % domain_name)
    xml = dom.XMLDesc(0)
    disk_path = domain_disk_path(xml)
    hypervisor.save_domain(dom, memory_path)
    # A VM restored over a base's RAM file saves like any other from here on.
    ramfile.normalize_saved(memory_path)
    return disk_path, domainxml.without_ram_file(xml, ramfile.BACKEND_ID)


def _resume(conn, memory_path):
    hypervisor.restore_domain(conn, memory_path)


def capture_base(conn, domain_name, store, name, keep_running=False, progress=None):
    """Capture the running domain as a base VM in `store`; return the BaseVM."""
    workdir = store.new_workdir()
    memory_path = os.path.join(workdir, basevm.MEMORY)
    disk_raw = os.path.join(workdir, basevm.DISK)
    try:
        disk_path, xml = _save(conn, domain_name, memory_path)
        try:
            convert_to_raw(disk_path, disk_raw, force_share=True)
        finally:
            if keep_running:
                # Restore from a copy: the base's own file must stay untouched.
                resume_copy = os.path.join(workdir, '.resume.save')
                shutil.copyfile(memory_path, resume_copy)
                try:
                    _resume(conn, resume_copy)
                finally:
                    os.unlink(resume_copy)
        if os.path.getsize(disk_raw) % chunks.CHUNK:
            raise errors.BaseVMError('base disk size %d is not a multiple of %d bytes'
                                     % (os.path.getsize(disk_raw), chunks.CHUNK))
        base = basevm.build_base(workdir, disk_raw, memory_path, name, progress,
                                 boot_files=domainxml.direct_boot_files(xml))
        return store.adopt(workdir, base)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def convert_to_raw(disk_path, raw_path, disk_format=None, force_share=False):
    """qemu-img convert to a raw (sparse) image; BaseVMError with qemu-img's message.

    force_share (-U) skips the image lock, for a disk whose domain still holds it.
    """
    command = ['qemu-img', 'convert', '-O', 'raw'] + (['-U'] if force_share else [])
    if disk_format:
        command += ['-f', disk_format]
    proc = subprocess.run(command + [disk_path, raw_path], capture_output=True, text=True)
    if proc.returncode:
        raise errors.BaseVMError('qemu-img convert %s failed: %s' % (disk_path, proc.stderr.strip()))


def capture_overlay(conn, domain_name, base, overlay_path, codec='zstd', level=None,
                    keep_running=False, progress=None, key=None):
    """Save the domain (resumed from `base`) and write its overlay (encrypted with
    `key` if given); return CreateStats.
    """
    out_dir = os.path.dirname(os.path.abspath(overlay_path))
    workdir = tempfile.mkdtemp(prefix='.cloudlet-capture-', dir=out_dir)
    memory_path = os.path.join(workdir, 'memory.save')
    part = overlay_path + '.part'
    try:
        disk_path, _ = _save(conn, domain_name, memory_path)
        try:
            with open(part, 'xb') as out:
                stats = create.create_overlay(base, disk_path, memory_path, out, codec, level,
                                              progress, workdir, key=key)
            os.replace(part, overlay_path)
        finally:
            if keep_running:
                _resume(conn, memory_path)
        return stats
    finally:
        if os.path.exists(part):
            os.unlink(part)
        shutil.rmtree(workdir, ignore_errors=True)
