"""The machine-wide pieces every box shares: MariaDB, RabbitMQ, libvirtd.

Each box gets its own databases (prefixed by the box name), its own MariaDB
user and its own RabbitMQ user and vhost, so two boxes on one machine are two
independent clouds.
"""

import pathlib
import shutil
import subprocess

from cloudlet_box import layout
from cloudlet_box import processes

RUN = pathlib.Path('/run/openstack-cloudlet')
LOGS = pathlib.Path('/var/log/openstack-cloudlet')
RABBIT_CONF = pathlib.Path('/etc/rabbitmq/rabbitmq.conf')
DATABASES = ('keystone', 'glance', 'placement', 'neutron', 'nova_api', 'nova_cell0', 'nova_cell1',
             'barbican')


def start_mariadb():
    run_dir = pathlib.Path('/run/mysqld')
    run_dir.mkdir(exist_ok=True)
    shutil.chown(run_dir, 'mysql', 'mysql')
    if not pathlib.Path('/var/lib/mysql/mysql').exists():
        subprocess.run(['mariadb-install-db', '--user=mysql', '--datadir=/var/lib/mysql'],
                       check=True, capture_output=True)
    processes.start('mariadb', ['/usr/sbin/mariadbd', '--user=mysql', '--bind-address=127.0.0.1',
                                '--socket=' + layout.MARIADB_SOCKET, '--max-connections=500'],
                    RUN, LOGS)
    processes.wait_for('MariaDB', lambda: _mariadb('SELECT 1').returncode == 0, 60,
                       pid_check=lambda: processes.pid_of(RUN / 'mariadb.pid'), log=LOGS / 'mariadb.log')


def _mariadb(statement, check=False):
    """Run SQL as MariaDB's root through its socket (no password: root's unix account)."""
    return subprocess.run(['mariadb', '-uroot', '-S', layout.MARIADB_SOCKET, '-e', statement],
                          check=check, capture_output=True)


def sql(statement):
    _mariadb(statement, check=True)


def create_databases(box):
    user, secret = box.db_prefix, box.secrets()['db']
    statements = ["CREATE DATABASE IF NOT EXISTS `%s_%s` CHARACTER SET utf8mb4" % (box.db_prefix, name)
                  for name in DATABASES]
    statements.append("CREATE USER IF NOT EXISTS '%s'@'127.0.0.1' IDENTIFIED BY '%s'" % (user, secret))
    # A user left by a box destroyed while MariaDB did not run has another password.
    statements.append("ALTER USER '%s'@'127.0.0.1' IDENTIFIED BY '%s'" % (user, secret))
    statements.append("GRANT ALL PRIVILEGES ON `%s\\_%%`.* TO '%s'@'127.0.0.1'" % (box.db_prefix, user))
    sql('; '.join(statements))


def drop_databases(box):
    statements = ["DROP DATABASE IF EXISTS `%s_%s`" % (box.db_prefix, name) for name in DATABASES]
    statements.append("DROP USER IF EXISTS '%s'@'127.0.0.1'" % box.db_prefix)
    sql('; '.join(statements))


def start_rabbitmq():
    RABBIT_CONF.parent.mkdir(exist_ok=True)
    wanted = 'listeners.tcp.default = 127.0.0.1:%d\n' % layout.RABBIT_PORT
    if not RABBIT_CONF.exists() or RABBIT_CONF.read_text() != wanted:
        RABBIT_CONF.write_text(wanted)   # by default RabbitMQ listens on every interface
    processes.start('rabbitmq', ['/usr/sbin/rabbitmq-server'], RUN, LOGS)
    processes.wait_for('RabbitMQ', lambda: _rabbitmqctl('await_startup', '--timeout', '5'), 120,
                       pid_check=lambda: processes.pid_of(RUN / 'rabbitmq.pid'),
                       log=LOGS / 'rabbitmq.log')


def _rabbitmqctl(*args):
    return subprocess.run(['rabbitmqctl', '-q', *args], capture_output=True).returncode == 0


def create_rabbit_user(box):
    user, vhost, secret = box.db_prefix, box.db_prefix, box.secrets()['rabbit']
    if not _rabbitmqctl('add_user', user, secret):
        _rabbitmqctl('change_password', user, secret)
    _rabbitmqctl('add_vhost', vhost)
    if not _rabbitmqctl('set_permissions', '-p', vhost, user, '.*', '.*', '.*'):
        raise processes.StartError('could not give RabbitMQ user %s its vhost' % user)


def rabbit_consumers(box, queue):
    """How many consumers `queue` of the box's vhost has (0 if it does not exist)."""
    result = subprocess.run(['rabbitmqctl', '-q', 'list_queues', '-p', box.db_prefix, '--no-table-headers',
                             'name', 'consumers'], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == queue:
            return int(fields[1])
    return 0


def stop_rabbitmq():
    if processes.pid_of(RUN / 'rabbitmq.pid'):
        _rabbitmqctl('stop')
    processes.stop('rabbitmq', RUN, grace=20)
    subprocess.run(['pkill', '-x', 'epmd'], capture_output=True)   # rabbitmqctl stop leaves it


def stop_mariadb():
    processes.stop('mariadb', RUN, grace=30)


def start_libvirtd():
    subprocess.run([str(layout.REPO / 'tools' / 'libvirtd.sh'), 'start'], check=True)
