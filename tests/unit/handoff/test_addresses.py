"""cloudlet_nova.handoff.addresses: the floating IP a handoff made, released with its server."""

import os

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

import nova.tests.unit  # noqa: E402,F401  (nova's test setup before the rest of nova)

from unittest import mock  # noqa: E402

import pytest  # noqa: E402

from cloudlet_nova.handoff import addresses  # noqa: E402

HANDOFF_ID = '3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a'


class FakeNeutron:
    """list_floatingips filters as Neutron does on port_id and description."""

    def __init__(self, floating_ips):
        self.floating_ips = floating_ips
        self.deleted = []

    def list_floatingips(self, port_id, description=None, fields=None):
        return {'floatingips': [{'id': fip['id']} for fip in self.floating_ips
                                if fip['port_id'] in port_id
                                and (description is None or fip['description'] == description)]}

    def delete_floatingip(self, floating_ip_id):
        self.deleted.append(floating_ip_id)


@pytest.fixture
def neutron(monkeypatch):
    client = FakeNeutron([
        {'id': 'made-by-handoff', 'port_id': 'port-1', 'description': 'cloudlet-handoff-' + HANDOFF_ID},
        {'id': 'the-user-s', 'port_id': 'port-1', 'description': ''},
        {'id': 'another-handoff-s', 'port_id': 'port-2', 'description': 'cloudlet-handoff-other'},
        {'id': 'another-server-s', 'port_id': 'port-9', 'description': 'cloudlet-handoff-' + HANDOFF_ID},
    ])
    client.made = 0

    def get_client(context, admin):
        client.made += 1
        return client
    monkeypatch.setattr(addresses.neutron, 'get_client', get_client)
    return client


def _instance(metadata):
    return mock.Mock(metadata=metadata)


def test_only_the_one_the_handoff_made_for_the_server_s_ports_is_released(neutron):
    released = addresses.release_handed_off('ctx', _instance({'cloudlet_handoff_id': HANDOFF_ID}),
                                            [{'id': 'port-1'}, {'id': 'port-2'}])
    assert released == ['made-by-handoff']
    assert neutron.deleted == ['made-by-handoff']
    assert neutron.made == 1           # one Neutron client for the lookup and the release


@pytest.mark.parametrize('metadata,network_info', [
    ({}, [{'id': 'port-1'}]),                               # not a handoff's server
    ({'cloudlet_handoff_id': HANDOFF_ID}, []),             # no port
    ({'cloudlet_handoff_id': HANDOFF_ID}, None),
])
def test_nothing_to_release(neutron, metadata, network_info):
    assert addresses.release_handed_off('ctx', _instance(metadata), network_info) == []
    assert neutron.deleted == []


def test_the_description_names_the_handoff():
    assert addresses.handoff_description(HANDOFF_ID) == 'cloudlet-handoff-' + HANDOFF_ID
