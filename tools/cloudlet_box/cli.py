"""tools/box.sh's commands: up, stop, status, logs, destroy."""

import argparse
import shutil
import sys

from cloudlet_box import box_libvirt
from cloudlet_box import bringup
from cloudlet_box import compute_host
from cloudlet_box import host_ssh
from cloudlet_box import infra
from cloudlet_box import layout
from cloudlet_box import mounts
from cloudlet_box import network
from cloudlet_box import ovs
from cloudlet_box import processes
from cloudlet_box import services
from cloudlet_box import wan


def other_boxes_running(box):
    """Names of other boxes with a live daemon (they share MariaDB and RabbitMQ)."""
    names = []
    for run_dir in infra.RUN.iterdir() if infra.RUN.exists() else ():
        if run_dir.is_dir() and run_dir.name != box.name:
            if any(processes.pid_of(p) for p in run_dir.glob('*.pid')):
                names.append(run_dir.name)
    return names


def stop(box, keep_shared=False, destroy_domains=False):
    for name in reversed(list(services.all_services(box))):
        if processes.stop(name, box.run, grace=15):
            print('[box] stopped %s' % name)
    if box.remote and wan.WanPath(box).down():
        print('[box] removed the WAN path (%s)' % box.wan.namespace)
    # The libvirtd of a remote box, and of every further compute host.
    for owner in ((box,) if box.remote else ()) + tuple(box.compute_hosts):
        own = box_libvirt.BoxLibvirt(owner)
        if destroy_domains and (own.pid('libvirtd') or own.has_guests()):
            own.start()
            own.destroy_domains()
        for daemon in own.stop():
            print('[box] stopped %s of %s' % (daemon, owner.name))
    for host in box.compute_hosts:
        compute_host.stop_ovs(host)
    if not keep_shared and not other_boxes_running(box):
        infra.stop_rabbitmq()
        infra.stop_mariadb()
        ovs.stop()
        print('[box] stopped RabbitMQ, MariaDB and Open vSwitch '
              '(libvirtd keeps running: tools/libvirtd.sh stop)')
    return 0


def status(box):
    rows = [(name, processes.pid_of(box.run / (name + '.pid')), box.logs / (name + '.log'))
            for name in services.all_services(box)]
    rows += [(name, processes.pid_of(infra.RUN / (name + '.pid')), infra.LOGS / (name + '.log'))
             for name in ('mariadb', 'rabbitmq')]
    rows += ovs.status_rows()
    path = None
    for host in box.compute_hosts:
        rows += [('%s (%s)' % (daemon, host.tag), pid, log)
                 for daemon, pid, log in box_libvirt.BoxLibvirt(host).status_rows()
                 + compute_host.status_rows(host)]
    if box.remote:
        rows += box_libvirt.BoxLibvirt(box).status_rows()
        path = wan.WanPath(box)
        rows.append((wan.RELAY, path.relay_pid(), box.logs / (wan.RELAY + '.log')))
    for name, pid, log in rows:
        print('%-26s %-10s %s' % (name, 'pid %d' % pid if pid else 'stopped', log))
    print('config: %s   clouds.yaml: %s (clouds %s-admin, %s-demo, %s-alt)' % (
        box.etc, '/etc/openstack/clouds.yaml', box.name, box.name, box.name))
    if box.remote:
        print('libvirt: %s' % box.libvirt_uri)
        state = path.status()
        shaping = ('rate %s, delay %s ms%s' % (state['rate'], state['delay_ms'],
                                                ', CUT' if state['cut'] else '')
                   if state['path_up'] else 'down')
        print('WAN path: %s (%s, veth %s), public endpoints %s; %s' % (
            state['namespace'], state['address'], state['veth'], box.public_keystone_url, shaping))
    return 0 if all(pid for _, pid, _ in rows) else 3


def logs(box, service):
    if service is None:
        print(box.logs)
        return 0
    path = box.logs / (service + '.log')
    if not path.exists():
        print('no log %s' % path, file=sys.stderr)
        return 1
    sys.stdout.write(path.read_text(errors='replace')[-20000:])
    return 0


def destroy(box):
    stop(box, keep_shared=True, destroy_domains=True)
    if not box.remote:
        box_libvirt.destroy_nova_domains(box.libvirt_uri)
    network.teardown(box)
    host_ssh.remove(box)
    for host in box.compute_hosts:
        mounts.remove(host.mount_namespace)
    # MariaDB is shared: started if it does not run, so that the box's databases go too.
    infra.start_mariadb()
    infra.drop_databases(box)
    for path in (box.root, box.logs, box.run):
        shutil.rmtree(path, ignore_errors=True)
    print('[box] destroyed %s (its databases, data, logs)' % box.name)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog='tools/box.sh', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('up', help='bring the box up (idempotent)')
    sub.add_parser('stop', help='stop its daemons (data kept)')
    sub.add_parser('status', help='which daemons run; where the logs are')
    log_parser = sub.add_parser('logs', help='print a service log (or the log directory)')
    log_parser.add_argument('service', nargs='?')
    sub.add_parser('destroy', help='stop and delete its databases, data and logs')
    args = parser.parse_args(argv)
    box = layout.current()
    if args.command == 'up':
        return bringup.main_up(box)
    if args.command == 'stop':
        return stop(box)
    if args.command == 'status':
        return status(box)
    if args.command == 'logs':
        return logs(box, args.service)
    return destroy(box)


if __name__ == '__main__':
    sys.exit(main())
