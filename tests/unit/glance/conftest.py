"""Synthetic base VMs and packages (fake save images, as in tests/unit/engine) and a fake image service."""

import os
import random

import pytest

from cloudlet_engine import basevm
from tests.fixtures import boot_files as fake_boot_files
from tests.fixtures import fake_savefile
from tests.unit.glance import fakes

PAGE = 4096
XML = """<domain type='kvm'>
  <name>glance-test-guest</name>
  <uuid>0f6e8f0c-7d1a-4c55-9a51-2b9a3f4c5d6e</uuid>
  <memory unit='KiB'>65536</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>%s</os>
</domain>
"""
# A guest that boots a kernel directly, as nova's AMI-style images do.
KERNEL_BOOT = ('<kernel>/var/lib/nova/instances/gone/kernel</kernel>'
               '<initrd>/var/lib/nova/instances/gone/ramdisk</initrd>'
               '<cmdline>root=/dev/vda console=ttyS0</cmdline>')


def make_base(root, seed=1, name='synthetic', disk_chunks=64, memory_pages=24, boots_kernel=False,
              with_boot_files=True):
    """A base directory built by the engine from random content (half the disk is holes).

    `boots_kernel`: its snapshot boots a kernel directly, and the base has
    the boot files unless `with_boot_files` is False (the same base id).
    """
    rng = random.Random(seed)
    work = os.path.join(str(root), 'base-%d' % seed)
    os.makedirs(work)
    disk = bytearray(disk_chunks * PAGE)
    for i in range(0, disk_chunks, 2):
        disk[i * PAGE:(i + 1) * PAGE] = rng.randbytes(PAGE)
    with open(os.path.join(work, 'in-disk.raw'), 'wb') as f:
        f.write(disk)
    pages = [('pc.ram', i * PAGE, rng.randbytes(PAGE) if i % 3 else None) for i in range(memory_pages)]
    pages.append(('vga.vram', 0, rng.randbytes(PAGE)))
    fake_savefile.build_fake_save_image(os.path.join(work, 'in-memory.save'),
                                        XML % (KERNEL_BOOT if boots_kernel else ''), pages)
    boot_files = fake_boot_files.write_boot_files(work) if boots_kernel and with_boot_files else {}
    return basevm.build_base(work, os.path.join(work, 'in-disk.raw'), os.path.join(work, 'in-memory.save'),
                             name, boot_files=boot_files)


def make_package(root, seed=1, name='synthetic', **options):
    base = make_base(root, seed, name, **options)
    path = os.path.join(str(root), '%s-%d.zip' % (name, seed))
    basevm.export_package(base, path)
    return base, path


@pytest.fixture(scope='session')
def package(tmp_path_factory):
    """(BaseVM, package path) of the main synthetic base."""
    return make_package(tmp_path_factory.mktemp('package'), seed=1, name='demo-base')


@pytest.fixture(scope='session')
def other_package(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp('other-package'), seed=2, name='other-base')


@pytest.fixture(scope='session')
def boot_package(tmp_path_factory):
    """(BaseVM, package path) of a base that boots a kernel directly, with its boot files."""
    return make_package(tmp_path_factory.mktemp('boot-package'), seed=3, name='boot-base', boots_kernel=True)


@pytest.fixture(scope='session')
def boot_package_without_boot_files(tmp_path_factory):
    """The same base as boot_package (same id), packaged as before bases carried boot files."""
    return make_package(tmp_path_factory.mktemp('boot-package-v1'), seed=3, name='boot-base',
                        boots_kernel=True, with_boot_files=False)


@pytest.fixture
def fake_images(tmp_path):
    return fakes.FakeImageService(tmp_path / 'glance-data')
