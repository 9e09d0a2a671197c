"""Driving a box as its users do: servers, cloudlet actions, images (openstacksdk).

Shared by the demo (tools/cloudlet_box/demo.py) and the end-to-end tests
(tests/e2e), so both exercise the same calls a mobile back end would make.
"""

import time

import openstack

MICROVERSION = '2.96'      # networks "none" needs >= 2.37
BOOT_MARKER = 'CLOUDLET-MARKER up'


class CloudError(RuntimeError):
    pass


def connect(cloud):
    """An openstacksdk connection to a clouds.yaml entry, e.g. `box-demo`."""
    return openstack.connect(cloud=cloud)


def _check(response, what):
    if response.status_code >= 400:
        raise CloudError('%s: HTTP %d %s' % (what, response.status_code, response.text[:500]))
    return response


def create_server(conn, name, image_id, flavor_name='m1.tiny', metadata=None, networks='auto',
                  security_groups=None, trusted_certificates=None, host=None):
    """POST /v2.1/servers; return the new server's id. `networks`: 'auto' (the
    project's `private` network), 'none', or a list of {"uuid": ...};
    `trusted_certificates`: nova's trusted_image_certificates (key manager ids);
    `host`: the compute host to build on (admin only, microversion 2.74).
    """
    flavor = conn.compute.find_flavor(flavor_name, ignore_missing=False)
    body = {'server': {'name': name, 'imageRef': image_id, 'flavorRef': flavor.id,
                       'networks': networks, 'metadata': metadata or {}}}
    if security_groups:
        body['server']['security_groups'] = [{'name': group} for group in security_groups]
    if trusted_certificates:
        body['server']['trusted_image_certificates'] = list(trusted_certificates)
    if host:
        body['server']['host'] = host
    reply = _check(conn.compute.post('/servers', json=body, microversion=MICROVERSION),
                   'create server %s' % name)
    return reply.json()['server']['id']


def wait_server(conn, server_id, timeout=300, poll=0.2):
    """Wait for ACTIVE or ERROR; return the server (its `fault` set on ERROR). A short
    poll: the demo times what follows ACTIVE.
    """
    deadline = time.monotonic() + timeout
    while True:
        server = conn.compute.get_server(server_id)
        if server.status in ('ACTIVE', 'ERROR') and not server.task_state:
            return server
        if time.monotonic() > deadline:
            raise CloudError('server %s still %s/%s after %d s' % (
                server_id, server.status, server.task_state, timeout))
        time.sleep(poll)


def server_ports(conn, server_id):
    return list(conn.network.ports(device_id=server_id))


def delete_server(conn, server_id, timeout=120):
    """Delete the server and the floating IPs of its ports (nova would only disassociate them)."""
    delete_servers(conn, [server_id], timeout)


def delete_servers(conn, server_ids, timeout=120):
    """delete_server for each, the deletes all asked for before the first is waited for:
    nova-compute tears them down side by side.
    """
    asked = []
    for server_id in server_ids:
        server = conn.compute.find_server(server_id)
        if server is not None:
            for port in server_ports(conn, server_id):
                for address in conn.network.ips(port_id=port.id):
                    conn.network.delete_ip(address)
            conn.compute.delete_server(server)
            asked.append(server)
    for server in asked:
        conn.compute.wait_for_delete(server, wait=timeout)


def wait_console(conn, server_id, text, timeout=180):
    """Wait until the server's console log (nova's API) contains `text`."""
    deadline = time.monotonic() + timeout
    while True:
        output = conn.compute.get_server_console_output(server_id).get('output', '')
        if text in output:
            return output
        if time.monotonic() > deadline:
            raise CloudError('no %r on the console of %s after %d s' % (text, server_id, timeout))
        time.sleep(1)


def server_action(conn, server_id, action, body):
    """A cloudlet server action; return its JSON answer (202 expected)."""
    reply = _check(conn.compute.post('/servers/%s/action' % server_id, json={action: body},
                                     microversion=MICROVERSION), action)
    return reply.json() if reply.content else {}


def wait_image(conn, image_id, timeout=600):
    deadline = time.monotonic() + timeout
    while True:
        image = conn.image.get_image(image_id)
        if image.status == 'active':
            return image
        if image.status in ('killed', 'deleted', 'deactivated'):
            raise CloudError('image %s ended %s' % (image_id, image.status))
        if time.monotonic() > deadline:
            raise CloudError('image %s still %s after %d s' % (image_id, image.status, timeout))
        time.sleep(0.5)


def capture(conn, server_id, kind, name):
    """cloudlet-create-base or cloudlet-create-overlay; wait for the image."""
    action = {'base': 'cloudlet-create-base', 'overlay': 'cloudlet-create-overlay'}[kind]
    image_id = server_action(conn, server_id, action, {'name': name})['image_id']
    return wait_image(conn, image_id)
