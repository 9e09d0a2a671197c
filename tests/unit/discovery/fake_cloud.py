"""A FAKE cloud over real HTTP for cloudlet-advertise: Keystone's token call, Placement, Glance, nova-api.

Just what the advertiser reads, from plain data the test sets:

    cloud = FakeCloud('127.0.0.1')          # listens on a free port, in a thread
    cloud.providers = {uuid: (inventories, usages)}
    cloud.bases = [(base_id, name, status)]
    cloud.url('placement'), cloud.keystone_url; cloud.close()
"""

import http.server
import json
import threading
import urllib.parse

from keystoneauth1 import fixture as ksa_fixture

from cloudlet_glance import properties as props
from tests.unit.glance.test_glanceclient_images import IMAGE_SCHEMA

PATHS = {'placement': '/placement', 'image': '/image', 'compute': '/compute/v2.1'}


class FakeCloud(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address='127.0.0.1', public_keystone='http://10.254.88.2:5100/v3'):
        super().__init__((address, 0), _Handler)
        self.base = 'http://%s:%d' % (address, self.server_address[1])
        self.keystone_url = self.base + '/v3'
        self.public_keystone = public_keystone
        self.providers = {}
        self.bases = []
        self.api_version = '1.2'
        self.paths = []
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, service_type):
        return self.base + PATHS[service_type]

    def close(self):
        self.shutdown()
        self.server_close()

    def token(self):
        token = ksa_fixture.V3Token(project_name='service', user_name='nova')
        for service_type in PATHS:
            token.add_service(service_type).add_standard_endpoints(
                public='http://10.254.88.2:1' + PATHS[service_type], internal=self.url(service_type),
                region='RegionOne')
        token.add_service('identity').add_standard_endpoints(public=self.public_keystone,
                                                             internal=self.keystone_url, region='RegionOne')
        return token

    def answer(self, method, path, query):
        """(status, body) for a request."""
        if method == 'POST' and path == '/v3/auth/tokens':
            return 201, self.token()
        if path.startswith(PATHS['placement']):
            parts = path[len(PATHS['placement']):].strip('/').split('/')
            if parts == ['resource_providers']:
                return 200, {'resource_providers': [{'uuid': u, 'name': u, 'generation': 1}
                                                    for u in self.providers]}
            if len(parts) == 3 and parts[1] in self.providers and parts[2] in ('inventories', 'usages'):
                inventories, usages = self.providers[parts[1]]
                key = parts[2]
                return 200, {key: inventories if key == 'inventories' else usages,
                             'resource_provider_generation': 1}
        if path == PATHS['image'] + '/v2/schemas/image':
            return 200, IMAGE_SCHEMA
        if path == PATHS['image'] + '/v2/images':
            wanted = query.get(props.CLOUDLET_TYPE, [None])[0]
            images = [_disk(*base) for base in self.bases]
            return 200, {'images': [i for i in images if wanted in (None, i[props.CLOUDLET_TYPE])]}
        if path == PATHS['compute'] + '/os-cloudlet':
            return 200, {'cloudlet': {'version': self.api_version, 'min_version': '1.0'}}
        return 404, {'error': 'no %s %s here' % (method, path)}


def _disk(base_id, name, status='active'):
    return {'id': 'img-' + name, 'name': name, 'status': status, 'visibility': 'public', 'os_hidden': False,
            'protected': False, 'owner': 'p', 'disk_format': 'raw', 'container_format': 'bare', 'min_ram': 0,
            'min_disk': 0, 'tags': [], 'self': '/v2/images/img-' + name, 'file': '/v2/images/img-%s/file' % name,
            'schema': '/v2/schemas/image', props.CLOUDLET_TYPE: props.BASE_DISK, props.BASE_ID: base_id}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'

    def _reply(self):
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get('Content-Length') or 0)
        if length:
            self.rfile.read(length)
        self.server.paths.append((self.command, parsed.path))
        status, body = self.server.answer(self.command, parsed.path, urllib.parse.parse_qs(parsed.query))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        if status == 201:
            self.send_header('X-Subject-Token', 'fake-service-token')
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _reply

    def log_message(self, *args):
        pass
