"""Reach the test guest's app inside a box server from this host.

The box's Neutron has no mechanism driver (no agents run here), so servers
boot without ports and have no network a test could use. To talk to the
guest's app (HTTP on port 8080, guest/www), we plug a user-mode NIC with a
host port forward into the running QEMU through libvirt's monitor
passthrough, and unplug it before anything saves the VM's memory (a capture
must not contain a device the next restore's XML lacks). This is test and
demo instrumentation, not part of the product: libvirt marks such a domain
`custom-monitor` tainted. The guest answers about 1-2 s after the plug (its
udhcpc configures hot-plugged NICs).

The libvirt to talk to is the box's (Box.libvirt_uri: the host's for the first
box, its own daemon for a remote box); the forwarded port is on this host's
loopback either way (the remote box's QEMU shares the root network namespace).
"""

import json
import socket
import time
import urllib.error
import urllib.request

import libvirt
import libvirt_qemu

from cloudlet_box import layout

NETDEV, DEVICE = 'cloudletacc', 'cloudletaccnic'
APP_PORT = 8080


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class GuestApp:
    """The app of the server whose libvirt domain has uuid `server_id`, on the
    libvirt at `uri` (default: the current box's, layout.current())."""

    def __init__(self, server_id, uri=None):
        self.conn = libvirt.open(uri or layout.current().libvirt_uri)
        self.domain = self.conn.lookupByUUIDString(server_id)
        self.port = None

    def _qmp(self, command, **arguments):
        request = {'execute': command}
        if arguments:
            request['arguments'] = arguments
        reply = libvirt_qemu.qemuMonitorCommand(self.domain, json.dumps(request), 0)
        return json.loads(reply).get('return')

    def _peripherals(self):
        return {item['name'] for item in self._qmp('qom-list', path='/machine/peripheral')}

    def plug(self):
        """Plug the NIC; return the host port forwarded to the app."""
        if DEVICE in self._peripherals():
            return self.port
        self.port = _free_port()
        self._qmp('netdev_add', type='user', id=NETDEV,
                  hostfwd=[{'str': 'tcp:127.0.0.1:%d-:%d' % (self.port, APP_PORT)}])
        self._qmp('device_add', driver='virtio-net-pci', netdev=NETDEV, id=DEVICE)
        return self.port

    def unplug(self, timeout=30):
        """Remove the NIC (the guest acknowledges the ACPI eject) and its backend."""
        if DEVICE in self._peripherals():
            self._qmp('device_del', id=DEVICE)
            deadline = time.monotonic() + timeout
            while DEVICE in self._peripherals():
                if time.monotonic() > deadline:
                    raise TimeoutError('the guest did not release its access NIC in %d s' % timeout)
                time.sleep(0.2)
        try:
            self._qmp('netdev_del', id=NETDEV)
        except libvirt.libvirtError:
            pass   # no such netdev: nothing to remove
        self.port = None

    def get(self, path, timeout=120):
        """GET `path` from the app, retrying until it answers; return {key: value}."""
        url = 'http://127.0.0.1:%d%s' % (self.port, path)
        deadline = time.monotonic() + timeout
        while True:
            try:
                # A slow answer (/cgi-bin/install takes ~15 s under TCG) gets
                # all the time left: a retry would start the work over.
                remaining = max(5.0, deadline - time.monotonic())
                with urllib.request.urlopen(url, timeout=remaining) as reply:
                    text = reply.read().decode()
                return dict(line.split('=', 1) for line in text.splitlines() if '=' in line)
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def close(self):
        self.conn.close()


def app_answers(server_id, *paths, box=None):
    """Plug the access NIC, GET each path from the app, unplug; return the last answer.
    `box`: the server's box (default: the current one)."""
    app = GuestApp(server_id, uri=box.libvirt_uri if box is not None else None)
    try:
        app.plug()
        for path in paths:
            state = app.get(path, timeout=300)
        app.unplug()
        return state
    finally:
        app.close()
