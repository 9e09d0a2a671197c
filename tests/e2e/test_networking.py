"""Servers on the box's own networking: Neutron ports bound by the OVS agent, DHCP,
the router, floating IPs and security groups, as a phone next to the cloudlet sees them."""

import json
import uuid

import pytest

from cloudlet_box import cloud
from cloudlet_box import guest_app
from cloudlet_box import layout
from cloudlet_box import network
from tests.e2e.conftest import DISK_STATE
from tests.e2e.conftest import RAM_STATE
from tests.e2e.test_bad_input import assert_refused_without_residue


def test_capture_keeps_the_source_reachable(app_overlay):
    """cloudlet-create-overlay took the NICs out and put them back: same address, same VM."""
    before, after = app_overlay['resumed_state'], app_overlay['after_capture']
    assert after['bootid'] == before['bootid']
    assert (after['ram'], after['disk']) == (RAM_STATE, DISK_STATE)
    assert app_overlay['address_after_capture'] == app_overlay['address']


def test_resumed_server_has_a_bound_port_on_the_project_network(base, demo, admin, servers):
    server_id = servers.track(cloud.create_server(demo, 'e2e-net-port', base['image_id']))
    assert cloud.wait_server(demo, server_id).status == 'ACTIVE'
    [port] = cloud.server_ports(admin, server_id)      # binding details: admins only
    private = demo.network.find_network(network.PRIVATE, ignore_missing=False)
    assert port.network_id == private.id
    assert port.status == 'ACTIVE' and port.binding_vif_type == 'ovs', port
    state = guest_app.app_answers(demo, server_id, '/cgi-bin/state')
    assert state['bootid'] == base['bootid']


def test_metadata_service_knows_the_resumed_server(base, demo, servers):
    """The guest asks 169.254.169.254 (router -> metadata agent -> nova's metadata API)."""
    server_id = servers.track(cloud.create_server(demo, 'e2e-net-metadata', base['image_id']))
    assert cloud.wait_server(demo, server_id).status == 'ACTIVE'
    answer = guest_app.app_answers(demo, server_id, '/cgi-bin/metadata')
    assert 'metadata' in answer, answer
    metadata = json.loads(answer['metadata'])
    assert (metadata['uuid'], metadata['name']) == (server_id, 'e2e-net-metadata')


def test_security_group_decides_who_reaches_the_app(base, demo, servers):
    """A group without the app's port: unreachable; once the rule is added: reachable."""
    group = demo.network.create_security_group(name='e2e-closed-%s' % uuid.uuid4().hex[:6])
    try:
        server_id = servers.track(cloud.create_server(demo, 'e2e-net-sg', base['image_id'],
                                                      security_groups=[group.name]))
        address = guest_app.floating_ip(demo, server_id)
        assert cloud.wait_server(demo, server_id).status == 'ACTIVE'
        assert not guest_app.reachable(address, timeout=15)
        demo.network.create_security_group_rule(
            security_group_id=group.id, direction='ingress', ethertype='IPv4', protocol='tcp',
            port_range_min=guest_app.APP_PORT, port_range_max=guest_app.APP_PORT)
        assert guest_app.get(address, '/cgi-bin/state', timeout=60)['bootid'] == base['bootid']
    finally:
        servers.cleanup()
        servers.ids.clear()
        demo.network.delete_security_group(group)


def test_unknown_network_is_a_400(base, demo):
    with pytest.raises(cloud.CloudError, match='HTTP 400'):
        cloud.create_server(demo, 'e2e-net-unknown', base['image_id'],
                            networks=[{'uuid': str(uuid.uuid4())}])


@pytest.fixture(scope='module')
def unbindable_network(admin, demo):
    """A shared network on a physical network no agent has a bridge for: its ports cannot bind."""
    made = admin.network.create_network(
        name='e2e-unbindable', is_shared=True, provider_network_type='flat',
        provider_physical_network=layout.current().network.unbound_physnet)
    admin.network.create_subnet(network_id=made.id, ip_version=4, cidr='10.99.0.0/24',
                                is_dhcp_enabled=False)
    yield made
    admin.network.delete_network(made)


def test_port_that_cannot_bind_is_a_fault_without_residue(box, base, demo, unbindable_network):
    assert_refused_without_residue(box, demo, base, {}, 'Binding failed',
                                   networks=[{'uuid': unbindable_network.id}])
