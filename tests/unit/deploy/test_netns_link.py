"""tools/cloudlet_box/netns_link.py, the one emulated link, as the box's WAN path
(wan.py) and the synthesis bench (bench/linkemu.py) use it; `ip` and `tc` faked."""

import ipaddress
import os
import pathlib
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / 'tools'))

from bench import linkemu  # noqa: E402
from cloudlet_box import agent_mounts  # noqa: E402
from cloudlet_box import layout  # noqa: E402
from cloudlet_box import netns_link  # noqa: E402
from cloudlet_box import wan  # noqa: E402


class FakeHost:
    """Just enough of `ip` and `tc`: namespaces, veth pairs, addresses, root qdiscs."""

    def __init__(self, netns_dir, fail=None):
        self.netns_dir = netns_dir   # `ip netns add` makes the name's file there, and refuses an existing one
        self.namespaces = set()
        self.links = {}          # name -> namespace (None: the root namespace)
        self.peers = {}          # name -> the other end
        self.addresses = {}      # link -> address/prefix
        self.qdiscs = {}         # link -> tc arguments
        self.calls = []
        self.fail = fail         # a word: the first command containing it fails

    def _result(self, argv, code=0, out=''):
        return subprocess.CompletedProcess(argv, code, out, 'fake failure' if code else '')

    def _delete_link(self, name):
        for end in (name, self.peers.get(name)):
            self.links.pop(end, None)
            self.peers.pop(end, None)
            self.addresses.pop(end, None)
            self.qdiscs.pop(end, None)

    def run(self, *argv, check=True):
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        result = self._do(argv)
        if check and result.returncode:
            raise netns_link.LinkError('%s failed: %s' % (' '.join(argv), result.stderr))
        return result

    def _do(self, argv):
        if self.fail and self.fail in argv:
            self.fail = None
            return self._result(argv, 1)
        ns = None
        if argv[:3] == ['ip', 'netns', 'exec']:
            ns, argv = argv[3], argv[4:]
        elif argv[:2] == ['ip', '-n']:
            ns, argv = argv[2], ['ip'] + argv[3:]
        if ns is not None and ns not in self.namespaces:
            return self._result(argv, 1)
        if argv[:3] == ['ip', 'netns', 'add']:
            if (self.netns_dir / argv[3]).exists():
                return self._result(argv, 1)
            self.netns_dir.mkdir(exist_ok=True)
            (self.netns_dir / argv[3]).touch()
            self.namespaces.add(argv[3])
            return self._result(argv)
        if argv[:3] == ['ip', 'netns', 'delete']:
            (self.netns_dir / argv[3]).unlink(missing_ok=True)
            self.namespaces.discard(argv[3])
            for name, where in list(self.links.items()):
                if where == argv[3]:
                    self._delete_link(name)
            return self._result(argv)
        if argv[:3] == ['ip', 'link', 'show']:
            return self._result(argv, 0 if self.links.get(argv[-1], 'x') == ns else 1)
        if argv[:3] == ['ip', 'link', 'add']:
            host, peer, peer_ns = argv[3], argv[8], argv[10]
            if host in self.links or peer in self.links:
                return self._result(argv, 1)
            self.links.update({host: None, peer: peer_ns})
            self.peers.update({host: peer, peer: host})
            return self._result(argv)
        if argv[:3] == ['ip', 'link', 'delete']:
            if self.links.get(argv[3], 'x') != ns:
                return self._result(argv, 1)
            self._delete_link(argv[3])
            return self._result(argv)
        if argv[:3] == ['ip', 'link', 'set']:
            return self._result(argv, 0 if argv[3] == 'lo' or self.links.get(argv[3], 'x') == ns else 1)
        if argv[:3] == ['ip', 'addr', 'replace']:
            if self.links.get(argv[5], 'x') != ns:
                return self._result(argv, 1)
            self.addresses[argv[5]] = argv[3]
            return self._result(argv)
        if argv[:2] == ['ip', '-4']:
            shown = ''.join('1: %s    inet %s scope global\n' % (link, address)
                            for link, address in self.addresses.items() if self.links[link] is None)
            return self._result(argv, out=shown if argv[2] == '-o' else '')
        if argv[:2] == ['tc', 'qdisc']:
            verb, dev = argv[2], argv[4]
            if self.links.get(dev, 'x') != ns:
                return self._result(argv, 1)
            if verb == 'replace':
                self.qdiscs[dev] = argv[5:]
            elif verb == 'del':
                self.qdiscs.pop(dev)
            elif verb == 'show':
                tbf = self.qdiscs.get(dev)
                rate = tbf[tbf.index('rate') + 1].replace('mbit', 'Mbit') if tbf else None
                return self._result(argv, out='qdisc tbf 8001: root refcnt 2 rate %s burst 4000b lat 400ms\n'
                                    % rate if tbf else 'qdisc noqueue 0: root refcnt 2\n')
            return self._result(argv)
        raise AssertionError('unexpected command %s' % argv)

    def empty(self):
        return not (self.namespaces or self.links or self.addresses or self.qdiscs)


@pytest.fixture
def host(monkeypatch, tmp_path):
    fake = FakeHost(tmp_path / 'netns')
    monkeypatch.setattr(netns_link, 'run', fake.run)
    monkeypatch.setattr(netns_link, 'NETNS_DIR', fake.netns_dir)
    monkeypatch.setattr(netns_link, 'namespace_bound', lambda name: name in fake.namespaces)
    return fake


def test_up_makes_the_namespace_the_pair_and_the_addresses(host):
    link = netns_link.NetnsLink('ns1', 'h1', 'p1', '10.0.0.1', '10.0.0.2').up()
    assert host.namespaces == {'ns1'}
    assert host.links == {'h1': None, 'p1': 'ns1'} and host.peers['h1'] == 'p1'
    assert host.addresses == {'h1': '10.0.0.1/30', 'p1': '10.0.0.2/30'}
    link.shape('25mbit')
    calls = len(host.calls)
    link.up()                                   # idempotent: nothing added, the shaping kept
    assert not [c for c in host.calls[calls:] if 'add' in c]
    assert set(host.qdiscs) == {'h1', 'p1'}


def test_up_replaces_a_stale_peer(host):
    host.namespaces.add('ns1')
    host.links['p1'] = 'ns1'                    # its root end is gone
    netns_link.NetnsLink('ns1', 'h1', 'p1', '10.0.0.1', '10.0.0.2').up()
    assert host.links == {'h1': None, 'p1': 'ns1'}


def stale_name(host, name, age=3600):
    """The file of a namespace name with no namespace behind it, as a reboot leaves it (/run is on disk)."""
    host.netns_dir.mkdir(exist_ok=True)
    path = host.netns_dir / name
    path.touch()
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_up_over_a_name_a_reboot_left_makes_the_namespace(host):
    stale_name(host, 'ns1')
    netns_link.NetnsLink('ns1', 'h1', 'p1', '10.0.0.1', '10.0.0.2').up()
    assert host.namespaces == {'ns1'}
    assert host.links == {'h1': None, 'p1': 'ns1'}


def test_stale_namespace_names_are_removed_and_live_or_new_ones_kept(host):
    netns_link.NetnsLink('live', 'h1', 'p1', '10.0.0.1', '10.0.0.2').up()
    os.utime(host.netns_dir / 'live', (time.time() - 3600, time.time() - 3600))
    stale_name(host, 'qrouter-1')
    stale_name(host, 'qdhcp-2')
    being_made = stale_name(host, 'qdhcp-3', age=1)    # `ip netns add` has not bound it yet
    assert netns_link.remove_stale_namespaces() == ['qdhcp-2', 'qrouter-1']
    assert sorted(p.name for p in host.netns_dir.iterdir()) == ['live', 'qdhcp-3']
    assert being_made.exists()


def test_down_removes_everything_and_is_idempotent(host):
    link = netns_link.NetnsLink('ns1', 'h1', 'p1', '10.0.0.1', '10.0.0.2').up()
    link.down()
    assert host.empty()
    link.down()
    assert host.empty()


def test_shaping(host):
    link = netns_link.NetnsLink('ns1', 'h1', 'p1', '10.0.0.1', '10.0.0.2').up()
    link.shape('25mbit')                        # both ends; burst 2 ms worth
    assert host.qdiscs['h1'] == host.qdiscs['p1'] == ['root', 'tbf', 'rate', '25mbit', 'burst', '6250b',
                                                      'latency', '400ms']
    assert link.rate() == link.rate('peer') == '25Mbit'
    link.shape('1mbit', ends=('peer',), burst='32kbit', latency='100ms')
    assert host.qdiscs['p1'] == ['root', 'tbf', 'rate', '1mbit', 'burst', '32kbit', 'latency', '100ms']
    assert host.qdiscs['h1'][3] == '25mbit'
    link.unshape()
    assert host.qdiscs == {} and link.rate() is None
    link.unshape()                              # nothing to remove


@pytest.mark.parametrize('rate, burst', [('25mbit', '6250b'), ('1mbit', '4000b'), ('1gbit', '250000b')])
def test_burst_grows_with_the_rate(rate, burst):
    assert netns_link.default_burst(rate) == burst


def test_interface_names_are_limited():
    with pytest.raises(netns_link.LinkError, match='longer than 15'):
        netns_link.NetnsLink('ns', 'a-very-long-name-x', 'p', '10.0.0.1', '10.0.0.2')


def test_wan_path_is_a_netns_link_with_the_box_addresses(host):
    path = wan.WanPath(layout.BOX2)
    link = path.link
    assert (link.namespace, link.host_if, link.peer_if) == ('clwan-box2', 'clw-box2-r', 'clw-box2-n')
    assert (link.host_address, link.peer_address, link.prefix) == ('10.254.88.1', '10.254.88.2', 30)
    link.up()
    path.set_rate('5mbit')
    assert host.qdiscs['clw-box2-r'] == host.qdiscs['clw-box2-n'] == \
        ['root', 'tbf', 'rate', '5mbit', 'burst', '4000b', 'latency', '400ms']
    assert path.rate() == '5Mbit' and path.changed
    path.clear_rate()
    assert path.rate() is None
    assert wan.WanError is netns_link.LinkError and wan.rate_bits is netns_link.rate_bits


def test_wan_path_down_removes_the_link(host, monkeypatch):
    monkeypatch.setattr(layout.Box, 'run', property(lambda self: pathlib.Path('/nonexistent/run')))
    monkeypatch.setattr(wan.processes, 'stop', lambda name, run, grace: False)
    path = wan.WanPath(layout.BOX2)
    path.link.up()
    path.down()
    assert host.empty()


def test_bench_link_takes_the_first_free_pair_and_shapes_the_server_side(host):
    host.links['eth9'] = None
    host.addresses['eth9'] = '10.254.77.1/30'            # another run holds the first /30
    with linkemu.EmulatedLink(rate='10mbit', tag='42') as emulated:
        assert (emulated.host_addr, emulated.peer_addr) == ('10.254.77.5', '10.254.77.6')
        assert host.namespaces == {'clbench-42'}
        assert host.links['clb42h'] is None and host.links['clb42n'] == 'clbench-42'
        assert host.qdiscs == {'clb42n': ['root', 'tbf', 'rate', '10mbit', 'burst', '32kbit',
                                          'latency', '400ms']}
        assert 'rate 10Mbit' in emulated.qdisc()
    assert host.namespaces == set() and set(host.links) == {'eth9'}


@pytest.mark.parametrize('step', ['veth', 'replace', 'tbf'])
def test_bench_link_cleans_up_after_a_partial_setup(host, step):
    host.fail = step
    with pytest.raises(netns_link.LinkError):
        with linkemu.EmulatedLink(tag='43'):
            pass
    assert host.empty()


def test_free_pair():
    network = ipaddress.ip_network('10.254.77.0/24')
    assert linkemu.free_pair(network, 30, '') == ('10.254.77.1', '10.254.77.2')
    taken = 'inet 10.254.77.1/30 scope\n10.254.77.4/30 dev x\n inet 10.254.77.10/30\n'
    assert linkemu.free_pair(network, 30, taken) == ('10.254.77.13', '10.254.77.14')
    everything = ''.join(' %s/' % a for a in network.hosts())
    assert linkemu.free_pair(network, 30, everything) is None


def test_a_remote_box_s_agents_drop_the_names_of_a_mount_namespace_a_reboot_took(tmp_path, monkeypatch):
    box = layout.Box('box2')
    monkeypatch.setattr(layout.Box, 'run', property(lambda self: tmp_path / 'run' / self.name))
    made = []
    monkeypatch.setattr(agent_mounts.mounts, 'ensure', lambda path, *args, **kwargs: made.append(path))
    agents = agent_mounts.AgentMounts(box)
    agents.netns_dir.mkdir(parents=True)
    (agents.netns_dir / 'qrouter-1').touch()
    monkeypatch.setattr(agents, 'exists', lambda: True)
    agents.ensure()                                   # its mount namespace lives: the names are its namespaces
    assert (agents.netns_dir / 'qrouter-1').exists()
    monkeypatch.setattr(agents, 'exists', lambda: False)
    agents.ensure()                                   # gone: nothing is behind them
    assert list(agents.netns_dir.iterdir()) == [] and made == [agents.path, agents.path]
