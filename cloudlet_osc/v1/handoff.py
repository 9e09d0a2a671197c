"""openstack cloudlet server handoff: move a running cloudlet server to another cloud (doc/handoff.md).

The source cloud's compute host does the work (the `cloudlet-handoff`
action); this command gives it a destination and a credential of the
destination, and with --wait follows the handoff to its end.

The destination is a clouds.yaml cloud (--dest-cloud): this command
authenticates there itself, and by default creates a short-lived, restricted
application credential for the handoff (the user's roles on that project,
unrestricted=false, expiring --timeout + 10 minutes from now), which the
request carries and which --wait deletes once the handoff has ended.
`--credential token` sends this command's token of the destination instead.
The credential is never printed, and the requests that carry it are sent
with keystoneauth's logging off (--debug does not show them either).

--wait polls, every 2 s: the source server's `cloudlet-handoff` instance
action (its `cloudlet_handoff` event: Error ends the wait with the event's
details), the destination's servers (the one whose metadata
`cloudlet_handoff_id` is the handoff's id) and the source server. The
handoff succeeded when the event says Success, or when the destination server
is ACTIVE and the source server is gone (for SETTLE_GRACE seconds, in which
the event normally ends: the compute host deletes the residue image first).
"""

import datetime
import logging
import urllib.parse
import uuid

from keystoneauth1 import exceptions as ksa_exceptions
from osc_lib.command import command
from osc_lib import exceptions

from cloudlet_glance import properties as props
from cloudlet_nova.handoff import remote
from cloudlet_osc import client as client_mod
from cloudlet_osc.errors import one_line_errors
from cloudlet_osc import progress
from cloudlet_osc.v1 import common
from cloudlet_osc import wait

LOG = logging.getLogger(__name__)

COLUMNS = ('handoff_id', 'source_server_id', 'server_id', 'name', 'status', 'seconds')
HANDOFF_TIMEOUT = 3600
CREDENTIAL_MARGIN = 600         # the credential outlives --timeout by this many seconds
CHANGES_SINCE_MARGIN = 3600     # clock skew allowed between this machine and the destination
# Destination ACTIVE and source gone: the source's compute host still deletes the residue image with
# the credential, then ends the event; wait this long for the event before calling it done.
SETTLE_GRACE = 30
EVENT = 'cloudlet_handoff'
CODECS = ('auto', 'zstd', 'xz')
CREDENTIALS = ('application-credential', 'token')


def _utc_text(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%SZ')


def _http_url(value, option):
    parts = urllib.parse.urlsplit(value or '')
    if parts.scheme not in ('http', 'https') or not parts.netloc:
        raise exceptions.CommandError('%s takes an http(s) URL, not %r' % (option, value))
    return value


class _DestinationCloud:
    """The clouds.yaml cloud of the destination: its session, catalog and compute client."""

    def __init__(self, app, name, region_name):
        import openstack.config
        from openstack import exceptions as sdk_exceptions
        config = getattr(app, 'cloud_config', None) or openstack.config.OpenStackConfig(
            app_name='openstack-cloudlet')
        try:
            self.cloud = config.get_one(cloud=name, region_name=region_name or '')
            self.session = self.cloud.get_session()
        except (sdk_exceptions.SDKException, ksa_exceptions.ClientException) as exc:
            raise exceptions.CommandError('--dest-cloud %s: %s' % (name, exc)) from exc
        self.name = name
        self.region_name = self.cloud.region_name or None
        self.interface = self.cloud.get_interface() or 'public'
        self.auth_url = (self.cloud.config.get('auth') or {}).get('auth_url')
        self._access = None

    def _failed(self, what, exc):
        return exceptions.CommandError('destination cloud %s: %s: %s' % (self.name, what, exc))

    @property
    def access(self):
        """The AccessInfo of this command's token of the destination (authenticates once)."""
        if self._access is None:
            try:
                self._access = self.session.auth.get_access(self.session)
            except ksa_exceptions.ClientException as exc:
                raise self._failed('authentication failed', exc) from exc
        return self._access

    @property
    def compute(self):
        return client_mod.CloudletClient(self.session, region_name=self.region_name, interface=self.interface)

    def token(self):
        if not self.access.project_id:
            raise exceptions.CommandError('destination cloud %s: the token is not scoped to a project'
                                          % self.name)
        return self.access.auth_token

    def identity_url(self):
        """Keystone's v3 root as the catalog names it for us (else where we authenticated)."""
        try:
            url = self.access.service_catalog.url_for(service_type='identity', interface=self.interface,
                                                      region_name=self.region_name)
        except ksa_exceptions.EndpointNotFound:
            url = None
        url = url or self.auth_url
        if not url:
            raise exceptions.CommandError('destination cloud %s: no identity endpoint' % self.name)
        return remote.keystone_v3_url(url)


class _AppCredential:
    """A short-lived application credential of the destination, made for one handoff."""

    def __init__(self, cloud, lifetime, source_server):
        self.cloud = cloud
        access = cloud.access
        if not access.project_id:
            raise exceptions.CommandError('destination cloud %s: the token is not scoped to a project'
                                          % cloud.name)
        self.expires_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lifetime)
        self.name = 'cloudlet-handoff-%s' % uuid.uuid4().hex[:12]
        self.url = '%s/users/%s/application_credentials' % (cloud.identity_url(),
                                                            urllib.parse.quote(access.user_id, safe=''))
        body = {'application_credential': {
            'name': self.name,
            'description': 'openstack cloudlet server handoff of server %s (deleted when it ends; expires '
                           'by itself)' % source_server,
            'expires_at': _utc_text(self.expires_at),
            'roles': [{'id': role_id} for role_id in access.role_ids],
            'unrestricted': False}}
        try:
            # log=False: the answer holds the secret.
            response = cloud.session.post(self.url, json=body, raise_exc=False, log=False)
        except ksa_exceptions.ClientException as exc:
            raise cloud._failed('creating an application credential failed', exc) from exc
        if response.status_code >= 400:
            hint = (' (a clouds.yaml entry that is itself an application credential cannot create one: use '
                    '--credential token)' if response.status_code == 403 else '')
            raise exceptions.CommandError(
                'destination cloud %s refused to create an application credential: %s%s'
                % (cloud.name, client_mod.http_error(response), hint))
        created = response.json()['application_credential']
        self.id, self.secret = created['id'], created['secret']
        LOG.debug('application credential %s (%s) created on %s', self.name, self.id, cloud.name)

    def request(self):
        return {'application_credential': {'id': self.id, 'secret': self.secret}}

    def delete(self, stderr):
        try:
            response = self.cloud.session.delete('%s/%s' % (self.url, urllib.parse.quote(self.id, safe='')),
                                                 raise_exc=False, log=False)
            problem = None if response.status_code < 400 or response.status_code == 404 else \
                client_mod.http_error(response)
        except ksa_exceptions.ClientException as exc:
            problem = exc
        if problem:
            stderr.write('Could not delete application credential %s on %s (it expires by itself at %s): %s\n'
                         % (self.name, self.cloud.name, _utc_text(self.expires_at), problem))

    def expiry_note(self):
        return ('Application credential %s on %s expires by itself at %s.\n'
                % (self.name, self.cloud.name, _utc_text(self.expires_at)))


class _Failed(Exception):
    """The handoff ended in error (the source recorded it)."""


class HandoffServer(command.ShowOne):
    _description = ('Move a running cloudlet server to another cloud (its memory and disk changes stream '
                    'there while it runs; the source server is deleted once the new one is ACTIVE)')

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>', help='Server to move (name or ID)')
        parser.add_argument('--dest-cloud', metavar='<cloud>', required=True,
                            help='The destination cloud: its clouds.yaml entry (this command authenticates '
                                 'there and makes the credential the handoff uses)')
        where = parser.add_mutually_exclusive_group()
        where.add_argument('--dest-auth-url', metavar='<url>',
                           help="The destination's Keystone URL as the source cloud reaches it (default: "
                                "--dest-cloud's auth_url)")
        where.add_argument('--dest-compute-endpoint', metavar='<url>',
                           help="The destination's compute endpoint as the source cloud reaches it (its "
                                "Keystone is found from there)")
        where.add_argument('--dest-known-cloud', metavar='<name>',
                           help='A destination the source cloud is configured with ([cloudlet_handoff] '
                                'destinations)')
        parser.add_argument('--dest-region', metavar='<region>',
                            help="The destination's region (default: --dest-cloud's)")
        parser.add_argument('--dest-interface', metavar='<interface>', choices=('public', 'internal'),
                            help='Which endpoints of the destination the source cloud uses: public '
                                 '(default) or internal')
        parser.add_argument('--name', metavar='<name>',
                            help="Name of the new server (default: the source server's name)")
        parser.add_argument('--flavor', metavar='<flavor>',
                            help="Flavor on the destination (name or ID; default: the one with exactly "
                                 "the server's RAM and vCPUs, smallest disk first)")
        parser.add_argument('--codec', metavar='<codec>', choices=CODECS,
                            help='How the residue is compressed: auto (default: per segment, from the '
                                 'measured bandwidth), zstd or xz')
        parser.add_argument('--credential', metavar='<kind>', choices=CREDENTIALS,
                            default='application-credential',
                            help='What the source cloud gets to act on the destination: '
                                 'application-credential (default: a restricted one made for this '
                                 'handoff, expiring --timeout + 10 min from now) or token (your token '
                                 'of the destination)')
        wait.add_arguments(parser, 'the handoff has ended (fails with its error)', HANDOFF_TIMEOUT)
        progress.add_arguments(parser)
        return parser

    # ------------------------------------------------------------ the request

    def _destination(self, parsed_args, cloud):
        if parsed_args.dest_compute_endpoint:
            destination = {'compute_endpoint': _http_url(parsed_args.dest_compute_endpoint,
                                                         '--dest-compute-endpoint')}
        elif parsed_args.dest_known_cloud:
            destination = {'cloud': parsed_args.dest_known_cloud}
        elif parsed_args.dest_auth_url:
            destination = {'auth_url': _http_url(parsed_args.dest_auth_url, '--dest-auth-url')}
        elif cloud.auth_url:
            destination = {'auth_url': _http_url(cloud.auth_url, 'the auth_url of --dest-cloud')}
        else:
            raise exceptions.CommandError('--dest-cloud %s has no auth_url: give --dest-auth-url, '
                                          '--dest-compute-endpoint or --dest-known-cloud' % cloud.name)
        if parsed_args.dest_region or cloud.region_name:
            destination['region_name'] = parsed_args.dest_region or cloud.region_name
        if parsed_args.dest_interface:
            destination['interface'] = parsed_args.dest_interface
        return destination

    @staticmethod
    def _flavor(cloud, ref, server):
        """--flavor as an ID of the destination, checked against the server's RAM and vCPUs."""
        flavor = cloud.compute.find_flavor(ref)
        need = server.get('flavor') or {}
        if 'ram' in need and 'vcpus' in need and \
                (flavor['ram'], flavor['vcpus']) != (need['ram'], need['vcpus']):
            raise exceptions.CommandError(
                'flavor %s of the destination has %d MB / %d vCPUs; server %s has %d MB / %d vCPUs'
                % (flavor['name'], flavor['ram'], flavor['vcpus'], server.get('name'), need['ram'],
                   need['vcpus']))
        return flavor['id']

    @one_line_errors
    def take_action(self, parsed_args):
        if parsed_args.name is not None and not 1 <= len(parsed_args.name) <= 255:
            raise exceptions.CommandError('--name takes 1 to 255 characters')
        cloudlet = common.client(self)
        server = cloudlet.find_server(parsed_args.server)
        name = parsed_args.name or server.get('name')
        cloud = _DestinationCloud(self.app, parsed_args.dest_cloud, parsed_args.dest_region)
        destination = self._destination(parsed_args, cloud)
        if parsed_args.flavor:
            destination['flavor'] = self._flavor(cloud, parsed_args.flavor, server)
        app_credential = None
        if parsed_args.credential == 'token':
            credential = {'token': cloud.token()}
        else:
            app_credential = _AppCredential(cloud, parsed_args.timeout + CREDENTIAL_MARGIN, server['id'])
            credential = app_credential.request()
        started = wait.clock()
        try:
            handoff_id, request_id = cloudlet.handoff(server['id'], destination, credential, name=name,
                                                      codec=parsed_args.codec)
        except exceptions.ClientException:
            # nova refused: nothing uses the credential. (Not after other errors: the request
            # may have reached nova all the same, and the handoff need it.)
            if app_credential:
                app_credential.delete(self.app.stderr)
            raise
        except BaseException:
            if app_credential:
                self.app.stderr.write(app_credential.expiry_note())
            raise
        row = {'handoff_id': handoff_id, 'source_server_id': server['id'], 'server_id': None, 'name': name,
               'status': 'started', 'seconds': None}
        if not parsed_args.wait:
            if app_credential:
                self.app.stderr.write(app_credential.expiry_note())
            return COLUMNS, tuple(row[c] for c in COLUMNS)
        ended = False
        try:
            with progress.status_line(parsed_args, self.app.stderr) as line:
                dest_server = self._wait(cloudlet, cloud, server, handoff_id, request_id, parsed_args,
                                         started, line)
            ended = True
        except _Failed as failure:
            ended = True
            raise exceptions.CommandError(str(failure)) from None
        finally:
            if app_credential:
                if ended:
                    app_credential.delete(self.app.stderr)
                else:
                    self.app.stderr.write(app_credential.expiry_note())
        dest_server = dest_server or {}
        row.update(server_id=dest_server.get('id'), name=dest_server.get('name') or name,
                   status=dest_server.get('status') or 'done', seconds=int(round(wait.clock() - started)))
        return COLUMNS, tuple(row[c] for c in COLUMNS)

    # ------------------------------------------------------------ --wait

    @staticmethod
    def _event(cloudlet, server_id, request_id):
        """The handoff's instance action: (its cloudlet_handoff event or None, a failed event or None)."""
        if request_id is None:
            actions = [a for a in cloudlet.list_instance_actions(server_id)
                       if a.get('action') == client_mod.HANDOFF_ACTION]
            if not actions:
                return None, None
            request_id = max(actions, key=lambda a: str(a.get('start_time') or ''))['request_id']
        try:
            action = cloudlet.get_instance_action(server_id, request_id)
        except exceptions.NotFound:
            return None, None
        events = action.get('events') or []
        ours = next((e for e in events if e.get('event') == EVENT), None)
        failed = next((e for e in ([ours] if ours else []) + events if e.get('result') == 'Error'), None)
        return ours, failed

    @staticmethod
    def _dest_server(dest_compute, handoff_id, since):
        servers = [s for s in dest_compute.list_servers({'changes-since': since})
                   if (s.get('metadata') or {}).get(props.HANDOFF_ID) == handoff_id]
        servers.sort(key=lambda s: s.get('status') == 'DELETED')
        return servers[0] if servers else None

    @staticmethod
    def _source(cloudlet, server_id):
        try:
            server = cloudlet.get_server(server_id)
        except exceptions.NotFound:
            return None
        return None if server.get('status') in ('DELETED', 'SOFT_DELETED') else server

    def _wait(self, cloudlet, cloud, server, handoff_id, request_id, parsed_args, started, line):
        """Poll until the handoff ended: the destination server (or None) on success; _Failed on error."""
        dest_compute = cloud.compute
        since = _utc_text(datetime.datetime.now(datetime.timezone.utc)
                          - datetime.timedelta(seconds=CHANGES_SINCE_MARGIN))
        server_id = server['id']
        dest_server = event = failed = problem = settled_at = None
        source = server
        while True:
            try:
                event, failed = self._event(cloudlet, server_id, request_id)
                dest_server = self._dest_server(dest_compute, handoff_id, since)
                source = self._source(cloudlet, server_id)
                problem = None
            except (exceptions.ClientException, ksa_exceptions.ClientException) as exc:
                problem = exc           # a poll that failed: try again until the deadline
            else:
                if failed:
                    detail = failed.get('details') or 'its %s event ended in Error' % failed.get('event')
                    fault = (dest_server or {}).get('fault') or {}
                    if fault.get('message'):
                        detail += '; destination server %s: %s' % (dest_server['id'], fault['message'])
                    raise _Failed('handoff %s of server %s failed: %s' % (handoff_id, server_id, detail))
                if event and event.get('result') == 'Success':
                    return dest_server
                if dest_server is not None and dest_server.get('status') == 'ACTIVE' and source is None:
                    settled_at = settled_at if settled_at is not None else wait.clock()
                    if wait.clock() - settled_at >= SETTLE_GRACE:
                        return dest_server
                else:
                    settled_at = None
            elapsed = wait.clock() - started
            line.update('handoff %s: source %s, destination %s, %d s' % (
                handoff_id[:8], self._describe(source, 'deleted'), self._describe(dest_server, 'not yet'),
                elapsed))
            if elapsed >= parsed_args.timeout:
                raise exceptions.CommandError(
                    'gave up waiting for handoff %s after %d s: it may still be running (source server %s, '
                    'destination server %s)%s' % (handoff_id, parsed_args.timeout,
                                                  self._describe(source, 'deleted'),
                                                  self._describe(dest_server, 'not found'),
                                                  '; last poll failed: %s' % problem if problem else ''))
            wait.sleep(wait.POLL_INTERVAL)

    @staticmethod
    def _describe(server, missing):
        if server is None:
            return missing
        task = server.get('OS-EXT-STS:task_state')
        return '%s%s' % (server.get('status'), ' (%s)' % task if task else '')
