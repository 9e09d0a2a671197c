"""tools/cloudlet_box: the second cloud's layout (own libvirt, WAN path) and what it changes in
the configuration, the catalog and clouds.yaml; the first box stays as it was."""

import base64
import configparser
import json
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / 'tools'))

from cloudlet_box import bringup  # noqa: E402
from cloudlet_box import configs  # noqa: E402
from cloudlet_box import identity  # noqa: E402
from cloudlet_box import layout  # noqa: E402
from cloudlet_box import services  # noqa: E402
from cloudlet_box import wan  # noqa: E402

BOX = layout.Box('box')
BOX2 = layout.BOX2


def read_ini(path):
    parser = configparser.RawConfigParser(interpolation=None)
    parser.read(path)
    return parser


def test_first_box_is_local():
    assert not BOX.remote and BOX.wan is None
    assert BOX.libvirt_uri == 'qemu:///system'
    assert BOX.listen_addresses == ('127.0.0.1',)
    assert BOX.public_url('nova-api') == BOX.url('nova-api') == 'http://127.0.0.1:8774'
    assert BOX.public_keystone_url == BOX.keystone_url == 'http://127.0.0.1:5000/v3'


def test_box2_layout():
    assert BOX2.remote and BOX2.port('keystone') == 5100
    path = BOX2.wan
    assert (path.namespace, path.host_address, path.address) == ('clwan-box2', '10.254.88.1', '10.254.88.2')
    assert BOX2.libvirt_uri == ('qemu+unix:///system?socket=/run/openstack-cloudlet/box2/libvirt/'
                                'libvirt-sock')
    assert BOX2.url('glance') == 'http://127.0.0.1:9392'
    assert BOX2.public_url('glance') == 'http://10.254.88.2:9392'
    assert BOX2.public_keystone_url == 'http://10.254.88.2:5100/v3'
    assert BOX2.listen_addresses == ('127.0.0.1', '10.254.88.1')


@pytest.mark.parametrize('name, offset, host, peer', [
    ('box3', 200, '10.254.88.5', '10.254.88.6'),
    ('a-very-long-box-name', 300, '10.254.88.9', '10.254.88.10'),
])
def test_other_remote_boxes_get_their_own_path(name, offset, host, peer):
    path = layout.Box(name, offset).wan
    assert (path.host_address, path.address) == (host, peer)
    assert len(path.host_if) <= 15 and len(path.peer_if) <= 15 and path.host_if != path.peer_if
    assert not path.host_address.startswith('10.254.77.')     # bench/linkemu.py's


def test_uwsgi_listens_on_the_wan_end_only_for_a_remote_box():
    first = services.api_services(BOX)['keystone'].argv
    assert [first[i + 1] for i, a in enumerate(first) if a == '--http'] == ['127.0.0.1:5000']
    second = services.api_services(BOX2)['keystone'].argv
    assert [second[i + 1] for i, a in enumerate(second) if a == '--http'] == ['127.0.0.1:5100',
                                                                             '10.254.88.1:5100']
    assert services.nova_services(BOX)['nova-compute'].env == {}
    assert services.nova_services(BOX2)['nova-compute'].env == {'CLOUDLET_LIBVIRT_URI': BOX2.libvirt_uri}
    # nova's metadata API is for the box's own metadata agent: loopback only, never through the WAN.
    metadata = services.api_services(BOX2)['nova-metadata'].argv
    assert [metadata[i + 1] for i, a in enumerate(metadata) if a == '--http'] == ['127.0.0.1:8875']
    assert BOX2.port('nova-metadata') not in wan.WanPath(BOX2).ports


def test_box2_services_use_internal_endpoints_and_their_libvirt(box_roots):
    etc = configs.nova(BOX2)
    cpu = read_ini(etc / 'nova-cpu.conf')
    assert cpu['libvirt']['connection_uri'] == BOX2.libvirt_uri
    assert cpu['DEFAULT']['instance_name_template'] == 'box2-%08x'
    for section in ('glance', 'placement', 'neutron', 'keystone'):
        assert cpu[section]['valid_interfaces'] == 'internal', section
    assert cpu['placement']['auth_url'] == 'http://127.0.0.1:5100/v3'
    authtoken = cpu['keystone_authtoken']
    assert authtoken['auth_url'] == 'http://127.0.0.1:5100/v3' and authtoken['interface'] == 'internal'
    assert authtoken['www_authenticate_uri'] == 'http://10.254.88.2:5100/v3'
    api = read_ini(etc / 'nova.conf')
    assert api['DEFAULT']['instance_name_template'] == 'box2-%08x'
    assert not api.has_section('libvirt') or 'connection_uri' not in api['libvirt']
    neutron = read_ini(configs.neutron(BOX2) / 'neutron.conf')
    assert neutron['nova']['endpoint_type'] == 'internal'


def test_first_box_configuration_has_no_remote_settings(box_roots):
    text = (configs.nova(BOX) / 'nova-cpu.conf').read_text()
    for word in ('connection_uri', 'instance_name_template', 'valid_interfaces', 'interface ='):
        assert word not in text
    cpu = read_ini(configs.nova(BOX) / 'nova-cpu.conf')
    assert cpu['keystone_authtoken']['www_authenticate_uri'] == 'http://127.0.0.1:5000/v3'
    assert 'endpoint_type' not in (configs.neutron(BOX) / 'neutron.conf').read_text()


def test_clouds_yaml_entries(box_roots):
    first = identity.clouds(BOX)
    assert sorted(first) == ['box-admin', 'box-alt', 'box-demo']
    assert first['box-demo']['interface'] == 'public'
    second = identity.clouds(BOX2)
    assert sorted(second) == ['box2-admin', 'box2-alt', 'box2-demo',
                              'box2-wan-admin', 'box2-wan-alt', 'box2-wan-demo']
    assert second['box2-demo']['interface'] == 'internal'
    assert second['box2-demo']['auth']['auth_url'] == 'http://127.0.0.1:5100/v3'
    assert second['box2-wan-demo']['interface'] == 'public'
    assert second['box2-wan-demo']['auth']['auth_url'] == 'http://10.254.88.2:5100/v3'
    assert second['box2-wan-demo']['auth']['password'] == second['box2-demo']['auth']['password']


def test_named_boxes(box_roots, monkeypatch):
    monkeypatch.delenv('CLOUDLET_BOX', raising=False)
    monkeypatch.delenv('CLOUDLET_BOX_PORT_OFFSET', raising=False)
    assert layout.named('box') == BOX
    assert layout.named('box2') == BOX2
    with pytest.raises(ValueError, match='CLOUDLET_BOX=other'):
        layout.named('other')
    monkeypatch.setenv('CLOUDLET_BOX', 'other')
    monkeypatch.setenv('CLOUDLET_BOX_PORT_OFFSET', '300')
    assert layout.named('other') == layout.Box('other', 300)
    layout.record(layout.Box('other', 300))
    assert json.loads((box_roots / 'lib' / 'other' / 'box.json').read_text())['port_offset'] == 300
    monkeypatch.delenv('CLOUDLET_BOX')
    monkeypatch.delenv('CLOUDLET_BOX_PORT_OFFSET')
    assert layout.named('other') == layout.Box('other', 300)     # as its last `up` recorded it


def test_up_refuses_another_number_of_compute_hosts_than_the_box_was_made_with(box_roots):
    assert bringup.hosts_changed(layout.Box('box', 0, 2)) is None        # never brought up here
    layout.record(layout.Box('box', 0, 1))
    assert bringup.hosts_changed(layout.Box('box', 0, 1)) is None
    assert 'destroy' in bringup.hosts_changed(layout.Box('box', 0, 2))
    assert bringup.main_up(layout.Box('box', 0, 2)) == 1                   # before anything starts


@pytest.mark.parametrize('rate, bits', [('25mbit', 25e6), ('500kbit', 5e5), ('1gbit', 1e9),
                                        ('1000', 1000), ('2mbps', 16e6), ('5Mbit', 5e6)])
def test_rates(rate, bits):
    assert wan.rate_bits(rate) == bits


@pytest.mark.parametrize('rate', ['fast', '5xyz', '', 'mbit'])
def test_bad_rates(rate):
    with pytest.raises(wan.WanError, match='bad rate'):
        wan.rate_bits(rate)


def test_no_wan_path_for_the_first_box():
    with pytest.raises(wan.WanError, match='no WAN path'):
        wan.WanPath(BOX)
    path = wan.WanPath(BOX2)
    assert path.address == '10.254.88.2' and path.ports == [5100, 8874, 8878, 9392, 9411, 9796]


def test_barbican_api_runs_the_box_s_paste_file_with_its_own_configuration():
    first = services.api_services(BOX)['barbican-api']
    argv = first.argv
    assert [argv[i + 1] for i, a in enumerate(argv) if a == '--http'] == ['127.0.0.1:9311']
    assert argv[argv.index('--paste') + 1] == 'config:%s' % (BOX.etc / 'barbican' / 'barbican-api-paste.ini')
    assert '--module' not in argv and '--add-header' in argv
    # oslo.config finds barbican.conf in HOME before /etc/barbican: each box its own.
    assert first.env == {'HOME': str(BOX.etc / 'barbican')} == services.barbican_env(BOX)
    assert first.ready_url == 'http://127.0.0.1:9311/'
    second = services.api_services(BOX2)['barbican-api'].argv
    assert [second[i + 1] for i, a in enumerate(second) if a == '--http'] == ['127.0.0.1:9411',
                                                                             '10.254.88.1:9411']
    assert BOX2.public_url('barbican-api') == 'http://10.254.88.2:9411'


@pytest.mark.parametrize('box', [BOX, BOX2])
def test_barbican_configuration(box_roots, box):
    etc = configs.barbican(box)
    conf = read_ini(etc / 'barbican.conf')
    assert conf['database']['connection'] == box.db_url('barbican')
    assert conf['DEFAULT']['db_auto_create'] == 'false' and 'host_href' not in conf['DEFAULT']
    assert conf['secretstore']['enabled_secretstore_plugins'] == 'store_crypto'
    assert conf['crypto']['enabled_crypto_plugins'] == 'simple_crypto'
    assert conf['keystone_authtoken']['username'] == 'barbican'
    assert conf['keystone_authtoken']['www_authenticate_uri'] == box.public_keystone_url
    assert (etc / 'barbican-api-paste.ini').exists()
    kek = conf['simple_crypto_plugin']['kek']
    assert len(base64.b64decode(kek, validate=True)) == 32
    assert kek == box.secrets()['barbican_kek']
    # Made once: the next `up` writes the same key.
    assert read_ini(configs.barbican(box) / 'barbican.conf')['simple_crypto_plugin']['kek'] == kek


def test_each_box_has_its_own_key_encryption_key(box_roots):
    assert BOX.secrets()['barbican_kek'] != BOX2.secrets()['barbican_kek']


@pytest.mark.parametrize('box', [BOX, BOX2])
def test_nova_and_glance_keep_keys_in_barbican(box_roots, box):
    etc = configs.nova(box)
    for name in ('nova.conf', 'nova-cpu.conf'):
        conf = read_ini(etc / name)
        assert conf['key_manager']['backend'] == 'barbican'
        assert conf['barbican']['auth_endpoint'] == box.keystone_url
        assert conf['barbican']['barbican_endpoint_type'] == 'internal'
        assert conf['barbican']['send_service_user_token'] == 'true'
        assert conf['barbican_service_user']['username'] == 'nova'
    glance = read_ini(configs.glance(box) / 'glance-api.conf')
    assert glance['key_manager']['backend'] == 'barbican'
    assert glance['barbican']['auth_endpoint'] == box.keystone_url
    assert glance['barbican']['barbican_endpoint_type'] == 'internal'


def test_barbican_in_the_catalog():
    assert ('barbican', 'key-manager', 'barbican-api', '') in identity.SERVICES
    assert BOX.port('barbican-api') == 9311 and BOX2.port('barbican-api') == 9411


def test_wan_up_restarts_a_relay_that_lacks_a_port(box_roots, monkeypatch):
    """A box2 whose relay started before Barbican was added gets one that carries its port too."""
    path = wan.WanPath(BOX2)
    listening = set(path.ports) - {BOX2.port('barbican-api')}
    events = []
    monkeypatch.setattr(path.link, 'up', lambda: None)
    monkeypatch.setattr(path, 'relay_pid', lambda: 4242)
    monkeypatch.setattr(path, '_relay_answers', lambda: True)
    monkeypatch.setattr(wan.processes, 'tcp_open', lambda port, host: host == '10.254.88.2' and port in listening)
    monkeypatch.setattr(wan.processes, 'stop', lambda name, run, grace: events.append(('stop', name)))
    monkeypatch.setattr(wan.processes, 'start',
                        lambda name, argv, run, logs, env=None: events.append(('start', name, argv)))
    monkeypatch.setattr(wan.processes, 'wait_for', lambda *args, **kwargs: None)
    path.up()
    assert events[0] == ('stop', 'wan-relay') and events[1][:2] == ('start', 'wan-relay')
    argv = events[1][2]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == '--port'] == [str(p) for p in path.ports]
    events.clear()
    listening.add(BOX2.port('barbican-api'))
    path.up()
    assert events == []


TWO = layout.Box('box', 0, hosts=2)     # CLOUDLET_BOX_HOSTS=2


def test_the_first_box_has_a_second_compute_host_in_namespaces_of_its_own(box_roots):
    [host] = TWO.compute_hosts
    assert BOX2.compute_hosts == () and BOX.compute_hosts == ()
    assert (host.name, host.tag, host.address, host.gateway) == ('box-compute2', 'c2', '10.253.2.2', '10.253.2.1')
    assert (host.netns, host.link_names('m'), host.link_names('t')) == (
        'cl-box-c2', ('clm-box-c2r', 'clm-box-c2n'), ('clt-box-c2r', 'clt-box-c2n'))
    # Its own instances, base store and Open vSwitch, bound over the first host's paths.
    assert host.binds == ((host.instances, TWO.instances_path), (host.state_dir, TWO.state_dir),
                          (host.ovs_run, '/run/openvswitch'), (host.ovs_etc, '/etc/openvswitch'))
    # Its bridges are named as the first host's (on its own Open vSwitch).
    assert (host.network.integration_bridge, host.network.tenant_bridge, host.network.external_bridge) == (
        'br-int', 'br-vlan', None)
    assert TWO.state_dirs == (TWO.state_dir, host.state_dir)
    assert TWO.host_files(host.name).compute_service == 'nova-compute-c2'
    assert TWO.host_files('vm').instances == TWO.instances_path
    compute = services.all_services(TWO)['nova-compute-c2']
    assert compute.argv[:5] == ('nsenter', '--mount=%s' % host.mount_namespace,
                                '--uts=%s-uts' % host.mount_namespace, '--net=/run/netns/cl-box-c2', '--')
    agent = services.all_services(TWO)['neutron-openvswitch-agent-c2']
    assert agent.argv[:4] == compute.argv[:3] + ('--',)       # the root network namespace
    # The relay starts before the nova-compute it serves: RabbitMQ, every API, the overlay server, box2.
    names = list(services.all_services(TWO))
    assert names.index('host-relay-c2') < names.index('nova-compute-c2')
    routes = services.all_services(TWO)['host-relay-c2'].argv
    for route in ('127.0.0.1:5672', '127.0.0.1:5000', '127.0.0.1:9292', '127.0.0.1:8778', '127.0.0.1:9696',
                  '127.0.0.1:9311', '127.0.0.2:18100', '10.254.88.2:5100'):
        assert route in routes, route
    assert compute.argv[-4:-2] == ('--config-file', str(TWO.etc / 'nova' / 'nova-cpu-c2.conf'))
    assert compute.env == {'CLOUDLET_LIBVIRT_URI': host.libvirt_uri}
    assert 'neutron-openvswitch-agent-c2' in services.all_services(TWO)
    assert 'nova-compute-c2' not in services.all_services(BOX)


def test_the_second_host_s_configuration(box_roots):
    [host] = TWO.compute_hosts
    own = read_ini(configs.nova(TWO) / 'nova-cpu-c2.conf')
    assert (own['DEFAULT']['host'], own['DEFAULT']['my_ip']) == ('box-compute2', '10.253.2.2')
    assert own['DEFAULT']['state_path'] == str(host.nova_state)      # its compute node's own uuid
    assert own['libvirt']['connection_uri'] == host.libvirt_uri
    assert own['libvirt']['live_migration_inbound_addr'] == '10.253.2.2'
    assert own['os_vif_ovs']['ovsdb_connection'] == 'unix:/run/openvswitch/db.sock'
    etc = configs.neutron(TWO)
    ml2 = read_ini(etc / 'plugins' / 'ml2' / 'ml2_conf.ini')
    assert ml2['ml2']['tenant_network_types'] == 'vlan'
    assert ml2['ml2_type_vlan']['network_vlan_ranges'] == 'tenant:100:199'
    first = read_ini(etc / 'plugins' / 'ml2' / 'openvswitch_agent.ini')
    assert first['ovs']['bridge_mappings'] == 'public:br-ex,tenant:br-vlan'
    second = read_ini(etc / 'plugins' / 'ml2' / 'openvswitch_agent-c2.ini')
    assert second['DEFAULT']['host'] == 'box-compute2'
    assert second['ovs']['integration_bridge'] == 'br-int'
    assert second['ovs']['bridge_mappings'] == 'tenant:br-vlan'
    assert (second['ovs']['ovsdb_connection'], second['ovs']['of_listen_address']) == (
        'unix:/run/openvswitch/db.sock', '10.253.2.1')
    assert second['agent']['tunnel_types'] == ''
    api = read_ini(configs.nova(TWO) / 'nova.conf')
    assert 'AggregateNumInstancesFilter' in api['filter_scheduler']['enabled_filters']
    assert api['notifications']['notification_format'] == 'versioned'


def test_one_host_keeps_vxlan_tenant_networks(box_roots):
    etc = configs.neutron(BOX)
    assert read_ini(etc / 'plugins' / 'ml2' / 'ml2_conf.ini')['ml2']['tenant_network_types'] == 'vxlan'
    first = read_ini(etc / 'plugins' / 'ml2' / 'openvswitch_agent.ini')
    assert first['ovs']['bridge_mappings'] == 'public:br-ex'
    assert not (etc / 'plugins' / 'ml2' / 'openvswitch_agent-c2.ini').exists()


def test_the_hosts_are_recorded_and_read_back(box_roots, monkeypatch):
    monkeypatch.delenv('CLOUDLET_BOX', raising=False)
    monkeypatch.delenv('CLOUDLET_BOX_HOSTS', raising=False)
    layout.record(TWO)
    assert layout.current() == TWO and layout.named('box') == TWO
    monkeypatch.setenv('CLOUDLET_BOX_HOSTS', '1')
    assert layout.current().compute_hosts == ()
