"""ssh into the box's further compute hosts, for nova's cold migration.

nova copies a cold-migrated server's instance directory to the destination
host with scp, and makes and removes directories there with ssh
(`[libvirt] remote_filesystem_transport = ssh`), as root to the host's
`my_ip`. So each further compute host runs an sshd in its namespaces
(compute_host.py: its mount namespace is where its instance directory is),
listening only at its end of the management link, taking only the box's
own key. The first host's nova-compute finds that key through a drop-in of
the system's ssh client configuration, for those addresses only; `destroy`
removes it. The first host runs no sshd (a cold migration into it is not
supported in the box, as a live one is not: doc/multi-host.md).
"""

import os
import pathlib
import subprocess

from cloudlet_box import compute_host

SSHD = '/usr/sbin/sshd'
CLIENT_CONFIG_DIR = pathlib.Path('/etc/ssh/ssh_config.d')


def _dir(box):
    return box.etc / 'ssh'


def client_config_path(box):
    return CLIENT_CONFIG_DIR / ('openstack-cloudlet-%s.conf' % box.name)


def _keygen(path):
    if not path.exists():
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', path.name, '-f', str(path)],
                       check=True, capture_output=True)


def prepare(box):
    """The box's key, each host's host key and sshd_config, known_hosts, the client drop-in."""
    if not box.compute_hosts:
        return
    ssh = _dir(box)
    ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh, 0o700)
    key = ssh / 'id_ed25519'
    _keygen(key)
    (ssh / 'authorized_keys').write_text((ssh / 'id_ed25519.pub').read_text())
    known = []
    for host in box.compute_hosts:
        host_key = ssh / ('ssh_host_ed25519_key-%s' % host.tag)
        _keygen(host_key)
        known.append('%s %s' % (host.address, ' '.join(
            pathlib.Path(str(host_key) + '.pub').read_text().split()[:2])))
        sshd_config(host).write_text('\n'.join([
            '# tools/box.sh: nova\'s cold migration copies into %s over ssh (host_ssh.py)' % host.name,
            'ListenAddress %s' % host.address,
            'HostKey %s' % host_key,
            'AuthorizedKeysFile %s' % (ssh / 'authorized_keys'),
            'PermitRootLogin prohibit-password',
            'PasswordAuthentication no',
            'KbdInteractiveAuthentication no',
            'UsePAM no',
            'StrictModes no',
            'PidFile none',
            # scp speaks SFTP since OpenSSH 9.0.
            'Subsystem sftp internal-sftp',
            '']))
    (ssh / 'known_hosts').write_text('\n'.join(known) + '\n')
    CLIENT_CONFIG_DIR.mkdir(parents=True, exist_ok=True)
    client_config_path(box).write_text('\n'.join([
        '# Written by openstack-cloudlet\'s tools/box.sh (box %s): nova\'s cold migration' % box.name,
        '# reaches the box\'s further compute hosts over ssh. `tools/box.sh destroy` removes it.',
        'Host %s' % ' '.join(host.address for host in box.compute_hosts),
        '    User root',
        '    IdentityFile %s' % key,
        '    IdentitiesOnly yes',
        '    UserKnownHostsFile %s' % (ssh / 'known_hosts'),
        '    StrictHostKeyChecking yes',
        '']))
    # sshd's privilege separation directory (/run is every namespace's here).
    os.makedirs('/run/sshd', mode=0o755, exist_ok=True)


def sshd_config(host):
    return _dir(host.box) / ('sshd_config-%s' % host.tag)


def argv(host):
    """The host's sshd, in the foreground (the box's process tracking), logging to its log."""
    return compute_host.enter(host) + (SSHD, '-D', '-e', '-f', str(sshd_config(host)))


def remove(box):
    client_config_path(box).unlink(missing_ok=True)
