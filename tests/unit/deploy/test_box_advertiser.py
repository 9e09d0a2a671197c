"""tools/cloudlet_box: cloudlet-advertise in the box. Its file, as cloudlet-advertise itself reads
it, and how it starts: on loopback for the first box, inside the WAN namespace for box2, reading
box2's APIs at the veth's root end (not through the relay)."""

import pathlib
import sys

from oslo_config import cfg

from cloudlet_cmd import advertise
from cloudlet_nova import conf as cloudlet_conf

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / 'tools'))

from cloudlet_box import cli  # noqa: E402
from cloudlet_box import configs  # noqa: E402
from cloudlet_box import layout  # noqa: E402
from cloudlet_box import processes  # noqa: E402
from cloudlet_box import services  # noqa: E402
from cloudlet_box import wan  # noqa: E402


def advertiser_conf(box):
    """The box's cloudlet-advertise.conf as cloudlet-advertise parses it: (options, reader's auth)."""
    configs.cloudlet_services(box)
    conf = cfg.ConfigOpts()
    cloudlet_conf.register_discovery_opts(conf)
    conf([], default_config_files=[str(box.etc / 'nova' / 'cloudlet-advertise.conf')])
    return conf.cloudlet_discovery, advertise.cloud_reader(conf).session.auth


def test_the_first_box_advertises_on_loopback(box_roots):
    group, auth = advertiser_conf(layout.Box('box'))
    assert (group.instance_name, group.keystone_url, group.region) == ('box', 'http://127.0.0.1:5000/v3',
                                                                       'RegionOne')
    assert group.addresses == ['127.0.0.1'] and group.refresh_interval == 5
    assert group.endpoint_overrides == {} and group.valid_interfaces == ['internal', 'public']
    assert (auth.auth_url, auth._username, auth._project_name) == ('http://127.0.0.1:5000/v3', 'nova', 'service')
    assert auth._password == layout.Box('box').secrets()['nova']
    argv = services.cloudlet_services(layout.Box('box'))['cloudlet-advertise'].argv
    assert argv[0].endswith('/bin/cloudlet-advertise') and argv[1:3] == (
        '--config-file', str(layout.Box('box').etc / 'nova' / 'cloudlet-advertise.conf'))


def test_box2_advertises_from_its_wan_namespace_and_reads_past_the_relay(box_roots):
    box2 = layout.BOX2
    group, auth = advertiser_conf(box2)
    # What devices are told: the public Keystone, through the relay.
    assert (group.instance_name, group.keystone_url) == ('box2', 'http://10.254.88.2:5100/v3')
    assert group.addresses == [box2.wan.address] == ['10.254.88.2']
    # What it reads: the APIs where they listen on the veth's root end, from inside the namespace.
    assert auth.auth_url == 'http://10.254.88.1:5100/v3'
    assert group.endpoint_overrides == {'placement': 'http://10.254.88.1:8878', 'image': 'http://10.254.88.1:9392',
                                        'compute': 'http://10.254.88.1:8874/v2.1'}
    assert box2.wan.host_address in box2.listen_addresses       # the APIs listen there
    argv = services.cloudlet_services(box2)['cloudlet-advertise'].argv
    assert argv[:4] == ('ip', 'netns', 'exec', 'clwan-box2') and argv[4].endswith('/bin/cloudlet-advertise')


def test_status_and_stop_cover_the_advertiser_before_the_wan_path_goes(box_roots, monkeypatch, capsys):
    box2 = layout.BOX2
    assert 'cloudlet-advertise' in services.all_services(box2)
    events = []
    monkeypatch.setattr(processes, 'stop', lambda name, run, grace=10: events.append(name) or True)
    monkeypatch.setattr(wan.WanPath, 'down', lambda self: events.append('wan down') or True)
    monkeypatch.setattr(cli.box_libvirt.BoxLibvirt, 'stop', lambda self: [])
    monkeypatch.setattr(cli, 'other_boxes_running', lambda box: ['box'])
    cli.stop(box2)
    assert events.index('cloudlet-advertise') < events.index('wan down')
    assert events[0] in services.cloudlet_services(box2)          # started last, stopped first


def test_the_wan_path_going_down_takes_its_namespace_s_daemons_with_it(box_roots, monkeypatch):
    # Left running in a deleted namespace, box2's advertiser would go on, cut off from every
    # network, and a new path would never hear it.
    events = []
    monkeypatch.setattr(processes, 'stop', lambda name, run, grace=10: events.append(name) or True)
    path = wan.WanPath(layout.BOX2)
    monkeypatch.setattr(path.link, 'down', lambda: events.append('namespace deleted'))
    path.down()
    assert events == [wan.RELAY, 'cloudlet-advertise', 'namespace deleted']
