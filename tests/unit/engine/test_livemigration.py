"""cloudlet_engine.livemigration: which pre-copy is exact, and a migration that pauses the guest first.

QEMU's monitor is replaced by a fake (`FakeMonitor`) that records the commands
and answers query-migrate `completed`.
"""

import json
from unittest import mock

import libvirt
import pytest

from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import handoff
from cloudlet_engine import livemigration

KVM = "<domain type='kvm'><name>a</name></domain>"
TCG = "<domain type='qemu'><name>a</name></domain>"


@pytest.mark.parametrize('virt_type, version, exact', [
    ('kvm', 7002022, True),        # KVM's dirty log: any QEMU
    ('qemu', 7002022, False),      # Debian 12's QEMU 7.2 under TCG
    ('qemu', 8002000, False),
    ('qemu', 9000000, True),       # QEMU 9.0 has the fix
    ('qemu', 10001002, True),
])
def test_precopy_is_exact_for_kvm_and_for_tcg_from_qemu_9(virt_type, version, exact):
    assert livemigration.precopy_is_exact(virt_type, version) is exact


def test_the_virt_type_is_read_from_the_domain_xml_and_bad_xml_refused():
    assert (domainxml.virt_type(KVM), domainxml.virt_type(TCG)) == ('kvm', 'qemu')
    with pytest.raises(errors.HypervisorError, match='domain XML'):
        domainxml.virt_type('<domain')


class FakeDomain:
    def __init__(self, log, version=7002022, suspend_error=None):
        self.log, self.version, self.suspend_error = log, version, suspend_error

    def suspend(self):
        if self.suspend_error:
            raise self.suspend_error
        self.log.append('suspend')

    def connect(self):
        return self

    def getVersion(self):
        return self.version


class FakeMonitor:
    """libvirt_qemu's monitor calls: records each command; the migration completes at once
    (start() closes QEMU's end of the socket after getfd: the feeder reads EOF).
    """

    def __init__(self, log):
        self.log = log

    def command(self, domain, request, flags):
        request = json.loads(request)
        self.log.append(request['execute'])
        if request['execute'] == 'query-migrate':
            return json.dumps({'return': {'status': 'completed', 'downtime': 5}})
        return json.dumps({'return': {}})

    def with_files(self, domain, request, files, flags):
        return [self.command(domain, request, flags)]


@pytest.fixture
def monitor():
    log = []
    fake = FakeMonitor(log)
    with mock.patch.object(livemigration.libvirt_qemu, 'qemuMonitorCommand', fake.command), \
            mock.patch.object(livemigration.libvirt_qemu, 'qemuMonitorCommandWithFiles', fake.with_files):
        yield log


@pytest.mark.parametrize('stop_first', [False, True])
def test_stop_first_pauses_the_guest_before_qemu_sends_anything(tmp_path, monitor, stop_first):
    domain = FakeDomain(monitor)
    spool = livemigration.Spool(str(tmp_path / 'spool'), b'')
    migration = livemigration.LiveMigration(domain, spool, stop_first=stop_first)
    migration.start()
    status = migration.wait(10)
    migration.close()
    spool.close()
    assert status['status'] == 'completed'
    commands = [c for c in monitor if c != 'query-migrate']
    if stop_first:
        assert commands[:4] == ['getfd', 'migrate-set-parameters', 'suspend', 'migrate']
    else:
        assert 'suspend' not in commands and commands[2] == 'migrate'
    assert migration.paused_at is not None


def test_a_guest_that_cannot_be_paused_starts_no_migration(tmp_path, monitor):
    error = libvirt.libvirtError('domain is not running')
    domain = FakeDomain(monitor, suspend_error=error)
    spool = livemigration.Spool(str(tmp_path / 'spool'), b'')
    migration = livemigration.LiveMigration(domain, spool, stop_first=True)
    with pytest.raises(errors.HypervisorError, match='cannot pause the VM'):
        migration.start()
    migration.cancel()
    migration.close()
    spool.close()
    assert 'migrate' not in monitor


@pytest.mark.parametrize('memory, xml, version, transfer', [
    ('auto', TCG, 7002022, 'stopped'),
    ('auto', TCG, 9001000, 'live'),
    ('auto', KVM, 7002022, 'live'),
    ('live', TCG, 7002022, 'live'),         # the operator's choice (a QEMU with the fix backported)
    ('stopped', KVM, 9001000, 'stopped'),
])
def test_the_residue_chooses_how_the_memory_crosses(tmp_path, memory, xml, version, transfer):
    residue = handoff.LiveResidue(FakeDomain([], version=version), None, str(tmp_path), memory=memory)
    assert residue._memory_transfer(xml) == transfer


def test_the_residue_refuses_an_unknown_memory_transfer(tmp_path):
    with pytest.raises(ValueError, match='memory transfer'):
        handoff.LiveResidue(FakeDomain([]), None, str(tmp_path), memory='postcopy')
