"""sender.recover: a handoff interrupted by a nova-compute stop, repaired at init_host."""

from unittest import mock

from nova.compute import power_state
from nova import exception
import pytest

from cloudlet_nova.handoff import sender

HOST = 'edge-a'
UUID = '5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d'
NIC_A = '<interface type="bridge"><mac address="fa:16:3e:00:00:0a"/><target dev="tapa"/></interface>'
NIC_B = '<interface type="bridge"><mac address="FA:16:3E:00:00:0B"/><target dev="tapb"/></interface>'


def _xml(*nics):
    return '<domain><devices><disk/>%s</devices></domain>' % ''.join(nics)


class FakeGuest:
    def __init__(self, state, live, persistent):
        self.state, self.live, self.persistent = state, live, persistent
        self.resumed = 0

    def get_power_state(self, host):
        return self.state

    def resume(self):
        self.resumed += 1
        self.state = power_state.RUNNING

    def get_xml_desc(self, dump_inactive=False):
        return self.persistent if dump_inactive else self.live


@pytest.fixture
def scene(monkeypatch):
    instance = mock.Mock(host=HOST, uuid=UUID)
    guest = FakeGuest(power_state.PAUSED, _xml(), _xml(NIC_A, NIC_B))
    driver = mock.Mock()
    driver._host.get_guest.return_value = guest
    get = mock.Mock(return_value=instance)
    monkeypatch.setattr(sender.objects.Instance, 'get_by_uuid', get)
    monkeypatch.setattr(sender.nova_context, 'get_admin_context', mock.Mock())
    replug = mock.Mock()
    monkeypatch.setattr(sender.restore, 'replug_nics', replug)
    return driver, instance, guest, get, replug


def _record(*phases):
    return {'handoff_id': 'h-1', 'instance_uuid': UUID, 'destination_server_id': 'dest-1',
            'phases': [{'name': name, 'result': result} for name, result in phases]}


def test_a_paused_vm_without_its_nics_runs_again_with_them(scene):
    driver, instance, guest, get, replug = scene
    done = sender.recover(driver, HOST, _record(('destination', 'ok'), ('residue', 'running')))
    assert done == 'resumed, 2 NIC(s) plugged back'
    assert guest.resumed == 1
    replug.assert_called_once_with(driver, instance, guest, [NIC_A, NIC_B])
    assert get.call_args[0][1] == UUID


def test_only_the_nics_the_live_domain_lacks_are_plugged(scene):
    driver, instance, guest, _get, replug = scene
    guest.state, guest.live = power_state.RUNNING, _xml(NIC_B.replace('FA:16:3E', 'fa:16:3e'))
    assert sender.recover(driver, HOST, _record()) == '1 NIC(s) plugged back'
    assert guest.resumed == 0
    replug.assert_called_once_with(driver, instance, guest, [NIC_A])


def test_a_vm_with_everything_is_left_alone(scene):
    driver, _instance, guest, _get, replug = scene
    guest.state, guest.live = power_state.RUNNING, guest.persistent
    assert sender.recover(driver, HOST, _record()) == 'nothing to repair'
    replug.assert_not_called()


def test_a_vm_whose_destination_took_over_stays_paused(scene):
    driver, _instance, guest, _get, replug = scene
    done = sender.recover(driver, HOST, _record(('residue', 'ok'), ('activate', 'ok')))
    assert done == 'left paused: the destination took over'
    assert guest.resumed == 0
    replug.assert_not_called()


def test_a_failed_activation_is_repaired(scene):
    driver, _instance, guest, _get, _replug = scene
    assert sender.recover(driver, HOST, _record(('activate', 'error'))).startswith('resumed')


def test_servers_gone_moved_or_without_a_vm_are_skipped(scene):
    driver, instance, guest, get, replug = scene
    instance.host = 'edge-b'
    assert sender.recover(driver, HOST, _record()) == 'the server is on edge-b'
    instance.host = HOST
    driver._host.get_guest.side_effect = exception.InstanceNotFound(instance_id=UUID)
    assert sender.recover(driver, HOST, _record()) == 'the server has no VM here'
    get.side_effect = exception.InstanceNotFound(instance_id=UUID)
    assert sender.recover(driver, HOST, _record()) == 'the server is gone'
    assert guest.resumed == 0
    replug.assert_not_called()
