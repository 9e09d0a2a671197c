"""Where a box keeps its files, which ports it uses, and its generated secrets.

One box per name (`CLOUDLET_BOX`, default `box`): configuration and data under
/var/lib/openstack-cloudlet/<name>, logs under /var/log/openstack-cloudlet/<name>,
pid files under /run/openstack-cloudlet/<name>. MariaDB and RabbitMQ are
machine-wide and shared by boxes (a database set and a vhost per box).
"""

import dataclasses
import json
import os
import pathlib
import secrets

VENV = pathlib.Path(os.environ.get('CLOUDLET_VENV', '/opt/openstack-cloudlet/venv'))
REPO = pathlib.Path(__file__).resolve().parents[2]

# Service -> port for the first box; another box adds its `port_offset`.
BASE_PORTS = {
    'keystone': 5000,
    'glance': 9292,
    'placement': 8778,
    'nova-api': 8774,
    'neutron': 9696,
}
MARIADB_SOCKET = '/run/mysqld/mysqld.sock'
RABBIT_PORT = 5672


@dataclasses.dataclass(frozen=True)
class Box:
    name: str
    port_offset: int = 0

    @property
    def root(self):
        return pathlib.Path('/var/lib/openstack-cloudlet') / self.name

    @property
    def etc(self):
        return self.root / 'etc'

    @property
    def logs(self):
        return pathlib.Path('/var/log/openstack-cloudlet') / self.name

    @property
    def run(self):
        return pathlib.Path('/run/openstack-cloudlet') / self.name

    def port(self, service):
        return BASE_PORTS[service] + self.port_offset

    def url(self, service):
        return 'http://127.0.0.1:%d' % self.port(service)

    @property
    def keystone_url(self):
        return self.url('keystone') + '/v3'

    @property
    def region(self):
        return 'RegionOne'

    @property
    def db_prefix(self):
        # Database names must be identifiers: box "box-2" -> "box_2_nova".
        return self.name.replace('-', '_')

    def db_url(self, database):
        secret = self.secrets()['db']
        return 'mysql+pymysql://%s:%s@127.0.0.1/%s_%s?charset=utf8' % (
            self.db_prefix, secret, self.db_prefix, database)

    def transport_url(self):
        return 'rabbit://%s:%s@127.0.0.1:%d/%s' % (
            self.db_prefix, self.secrets()['rabbit'], RABBIT_PORT, self.db_prefix)

    def secrets(self):
        """Passwords generated on first use, kept in a root-only file."""
        path = self.root / 'secrets.json'
        if path.exists():
            return json.loads(path.read_text())
        names = ('db', 'rabbit', 'admin', 'demo', 'alt', 'glance', 'placement', 'nova', 'neutron')
        values = {name: secrets.token_hex(12) for name in names}
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as handle:
            json.dump(values, handle, indent=1)
        return values


def current():
    """The box named by $CLOUDLET_BOX (default `box`, ports as in BASE_PORTS)."""
    name = os.environ.get('CLOUDLET_BOX', 'box')
    offset = int(os.environ.get('CLOUDLET_BOX_PORT_OFFSET', '0'))
    return Box(name, offset)
