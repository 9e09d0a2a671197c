"""CloudletSession: one app on one cloud, from negotiation to release.

    session = CloudletSession(cloud)                   # a cloud.Cloud (journey.choose makes one)
    session.negotiate(overlay)                          # errors.NotAcceptable when the cloud says no
    session.synthesize(overlay, 'ar-app', lease_seconds=120)
    session.wait_active()                               # errors.ServerFailed with nova's fault
    session.wait_reachable(8080)                        # at the server's floating IP
    session.keep_alive()                                # LeaseKeeper: heartbeats in the background
    session.handoff(other_cloud)                        # the server moves; the session follows it
    session.release()                                   # server, floating IPs, uploads and keys deleted

Every step records its duration in `timings` ([(step, seconds)]).
"""

import contextlib
import datetime
import logging
import os
import tempfile
import time

from cloudlet_glance import properties as props

from cloudlet_client import errors
from cloudlet_client import keys
from cloudlet_client import lease as lease_mod
from cloudlet_client import overlays
from cloudlet_client import reach

LOG = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
ACTIVE_TIMEOUT = 600
HANDOFF_TIMEOUT = 1800
HANDOFF_EVENT = 'cloudlet_handoff'
# Module attributes, so that tests run the loops without real time passing.
clock = time.monotonic
sleep = time.sleep


def _utc_text(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%SZ')


def addresses_of(server):
    """[(address, kind)] of a server's `addresses` (kind: 'floating', 'fixed' or None), floating first."""
    found = []
    for entries in (server.get('addresses') or {}).values():
        for entry in entries or ():
            if entry.get('addr'):
                found.append((entry['addr'], entry.get('OS-EXT-IPS:type')))
    return sorted(found, key=lambda a: a[1] != 'floating')


class CloudletSession:
    """An app on `cloud` (a cloudlet_client.cloud.Cloud); `cloudlet` is the discovered one, if any."""

    def __init__(self, cloud, cloudlet=None, fallback=False):
        self.cloud = cloud
        self.cloudlet = cloudlet
        self.fallback = fallback
        self.negotiation = None
        self.server_id = None
        self.server = None
        self.address = None
        self.keeper = None
        self.timings = []
        self._uploaded = []         # (cloud, image id) of overlay files uploaded for this app
        self._moving = False        # a handoff runs: the source server's 404 is not a lost lease
        self._floating_ips = []     # (cloud, floating IP id) made for this app
        self._keys = []             # (keys.KeyManager, key id) of overlay keys made for this app

    def __repr__(self):
        return '<CloudletSession %s server %s>' % (self.cloud.name, self.server_id)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()

    @contextlib.contextmanager
    def timed(self, step):
        started = clock()
        try:
            yield
        finally:
            self.timings.append((step, clock() - started))

    # ------------------------------------------------------------ negotiate, synthesize

    def negotiate(self, overlay):
        """Ask the cloud whether it can run `overlay` (an overlays.Overlay); the Negotiation.

        errors.NotAcceptable when it says no (its reason in the message).
        """
        with self.timed('negotiate'):
            answer = self.cloud.negotiate(overlay.negotiation_request(self.cloud))
        self.negotiation = answer
        if not answer.acceptable:
            raise errors.NotAcceptable('%s does not accept %s: %s' % (self.cloud.name, overlay.describe(),
                                                                     answer.reason or 'no reason given'),
                                       answer)
        return answer

    def synthesize(self, overlay, name, lease_seconds=None, networks='auto', metadata=None,
                   encrypt=False, signer=None):
        """POST /servers on the negotiated base and flavor; the new server's id.

        A local file is uploaded to this cloud's Glance first (a hidden overlay
        image, deleted by release()). `lease_seconds` makes the server leased.
        `encrypt`: a local file is encrypted here, with a new key kept in this
        cloud's key manager (deleted by release()); `signer` (keys.Signer)
        signs what is uploaded (doc/trust.md).
        """
        negotiation = self.negotiation if self.negotiation is not None else self.negotiate(overlay)
        metadata = dict(metadata or {})
        if lease_seconds is not None:
            metadata[props.META_LEASE_SECONDS] = str(int(lease_seconds))
        uploaded = None
        if overlay.kind == overlays.URL:
            metadata[props.META_OVERLAY_URL] = overlay.location
        elif overlay.kind == overlays.IMAGE:
            metadata[props.META_OVERLAY_ID] = overlay.location
        else:
            with self.timed('upload'):
                uploaded = self._upload(overlay.location, negotiation, encrypt, signer)
            metadata[props.META_OVERLAY_ID] = uploaded
        try:
            with self.timed('create'):
                server = self.cloud.create_server(name, negotiation.base_image_id, negotiation.flavor_id,
                                                  networks=networks, metadata=metadata)
        except errors.ClientError:
            if uploaded:
                self._delete_quietly(self.cloud.delete_image, uploaded, 'overlay image')
                self._uploaded.remove((self.cloud, uploaded))
            raise
        self.server_id, self.server, self.address = server['id'], server, None
        return self.server_id

    def _upload(self, path, negotiation, encrypt=False, signer=None):
        described, meta = overlays.describe_file(path)
        if negotiation.base_id and described['base_id'] != negotiation.base_id:
            raise errors.ClientError('%s was made against base %s, not the negotiated %s'
                                     % (path, described['base_id'], negotiation.base_id))
        properties = {props.CLOUDLET_TYPE: props.OVERLAY, props.BASE_ID: described['base_id'],
                      props.CODEC: described['codec']}
        name = os.path.basename(path)
        with tempfile.TemporaryDirectory(prefix='cloudlet-upload-') as tmp:
            if encrypt:
                manager = keys.KeyManager(self.cloud.session, self.cloud.region_name, self.cloud.interface)
                key, key_id = manager.new_key('overlay %s' % name)
                self._keys.append((manager, key_id))
                encrypted = os.path.join(tmp, name)
                overlays.encrypt_file(path, encrypted, key)
                del key
                path = encrypted
                properties[props.OVERLAY_KEY_ID] = key_id
            if signer is not None:
                properties.update(signer.properties(self.cloud, path))
            image_id = self.cloud.create_image(name, properties)
            self._uploaded.append((self.cloud, image_id))
            try:
                with open(path, 'rb') as f:
                    self.cloud.upload_image(image_id, f, os.path.getsize(path))
            except BaseException:
                self._delete_quietly(self.cloud.delete_image, image_id, 'overlay image')
                self._uploaded.remove((self.cloud, image_id))
                raise
        return image_id

    def wait_active(self, timeout=ACTIVE_TIMEOUT, poll=POLL_INTERVAL):
        """The server once ACTIVE; errors.ServerFailed on ERROR (nova's fault) or after `timeout` s."""
        deadline = clock() + timeout
        with self.timed('active'):
            while True:
                server = self.cloud.get_server(self.server_id)
                status = server.get('status')
                if status == 'ERROR':
                    raise errors.ServerFailed('server %s is in ERROR on %s: %s' % (
                        self.server_id, self.cloud.name,
                        (server.get('fault') or {}).get('message') or 'nova recorded no fault'))
                if status == 'ACTIVE' and not server.get('OS-EXT-STS:task_state'):
                    self.server = server
                    return server
                if clock() >= deadline:
                    raise errors.ServerFailed('server %s is still %s on %s after %d s'
                                              % (self.server_id, status, self.cloud.name, timeout))
                sleep(poll)

    # ------------------------------------------------------------ reach the app

    def app_address(self, floating=True, external_network=None):
        """Where the app is reached: the server's floating IP (one is made on `external_network`, or the
        first external network, when it has none); with floating=False its first address.
        """
        with self.timed('address'):
            server = self.server = self.cloud.get_server(self.server_id)
            known = addresses_of(server)
            if known and (known[0][1] == 'floating' or not floating):
                self.address = known[0][0]
                return self.address
            if not floating:
                raise errors.ClientError('server %s has no address yet' % self.server_id)
            ports = self.cloud.server_ports(self.server_id)
            if not ports:
                raise errors.ClientError('server %s has no port for a floating IP' % self.server_id)
            port = ports[0]
            existing = self.cloud.floating_ips(port['id'])
            if existing:
                self.address = existing[0]['floating_ip_address']
                return self.address
            network = external_network or self.cloud.external_network()
            made = self.cloud.create_floating_ip(network, port['id'])
            self._floating_ips.append((self.cloud, made['id']))
            self.address = made['floating_ip_address']
            return self.address

    def wait_reachable(self, port, timeout=120.0, host=None):
        """Seconds until the app answers on TCP `port` at `host` (default: app_address())."""
        host = host or self.address or self.app_address()
        with self.timed('reachable'):
            return reach.wait_reachable(host, port, timeout)

    # ------------------------------------------------------------ the lease

    def heartbeat(self, seconds=None):
        """Renew the server's lease now (`seconds`: change its length); the Lease."""
        server_id, cloud = self.server_id, self.cloud
        try:
            answer = cloud.heartbeat(server_id, seconds)
        except errors.HTTPError as exc:
            # A 404 of the source server during (or just after) a handoff is not a lost lease.
            if exc.status == 404 and not self._moving and self.server_id == server_id:
                raise errors.LeaseLost('server %s is gone from %s: %s' % (server_id, cloud.name,
                                                                         exc.message)) from exc
            raise
        return lease_mod.Lease.from_answer(answer)

    def lease(self):
        """The server's lease as its metadata says (None: not leased)."""
        return lease_mod.Lease.from_metadata(self.cloud.get_server(self.server_id).get('metadata'))

    def keep_alive(self, seconds=None, interval=None):
        """Start (once) the LeaseKeeper: heartbeats every `interval` (default a third of the lease).

        `seconds`: the lease length to keep (default: the server's own); a
        different one is set by the first heartbeat, at once.
        """
        if self.keeper is not None and self.keeper.alive:
            return self.keeper
        current = self.lease()
        if seconds is None and current is None:
            raise errors.ClientError('server %s has no lease: give seconds' % self.server_id)
        seconds = int(seconds if seconds is not None else current.seconds)
        change = current is None or current.seconds != seconds
        self.keeper = lease_mod.LeaseKeeper(self.heartbeat, seconds, interval, set_seconds=change).start()
        return self.keeper

    # ------------------------------------------------------------ handoff

    def handoff(self, to, name=None, credential=None, codec=None, timeout=HANDOFF_TIMEOUT,
                poll=POLL_INTERVAL * 2):
        """Move the server to the cloud `to` (a Cloud); the session then follows the new server.

        The source cloud is told `to.keystone_url` and gets `credential` of the
        destination (default: the destination session's token). The lease
        keeper goes on through the move and then renews the new server's lease.
        errors.HandoffFailed when the source recorded an error or `timeout` passed;
        the server then still runs where it was.
        """
        if not to.keystone_url:
            raise errors.ClientError('the destination %s has no Keystone URL' % to.name)
        destination = {'auth_url': to.keystone_url}
        if to.region_name:
            destination['region_name'] = to.region_name
        credential = credential or {'token': to.token()}
        source_cloud, source_id = self.cloud, self.server_id
        since = _utc_text(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1))
        with self.timed('handoff'):
            handoff_id, request_id = source_cloud.handoff(source_id, destination, credential,
                                                          name=name or (self.server or {}).get('name'),
                                                          codec=codec)
            LOG.info('handoff %s of server %s from %s to %s', handoff_id, source_id, source_cloud.name, to.name)
            self._moving = True
            try:
                moved = self._wait_handoff(source_cloud, source_id, to, handoff_id, request_id, since, timeout,
                                           poll)
                self.cloud, self.server_id, self.server, self.address = to, moved['id'], moved, None
            finally:
                self._moving = False
        for cloud, fip in [f for f in self._floating_ips if f[0] is source_cloud]:
            self._delete_quietly(cloud.delete_floating_ip, fip, 'floating IP')
            self._floating_ips.remove((cloud, fip))
        self.negotiation = None
        if self.keeper is not None and self.keeper.alive:
            # The new server gets the lease length kept here (whatever the handoff carried over).
            self.keeper.resend_seconds()
            try:
                self.keeper.beat_once()
            except errors.ClientError as exc:
                LOG.warning('setting the lease of the moved server %s failed (the keeper tries again): %s',
                            moved['id'], exc)
        return moved

    def _handoff_error(self, cloud, server_id, request_id):
        """The failed event's message of the handoff's instance action, or None."""
        try:
            if request_id is None:
                actions = [a for a in cloud.instance_actions(server_id) if a.get('action') == 'cloudlet-handoff']
                if not actions:
                    return None
                request_id = max(actions, key=lambda a: str(a.get('start_time') or ''))['request_id']
            action = cloud.instance_action(server_id, request_id)
        except errors.HTTPError as exc:
            if exc.status == 404:
                return None
            raise
        for event in action.get('events') or ():
            if event.get('result') == 'Error':
                return event.get('details') or 'its %s event ended in Error' % event.get('event')
        return None

    def _wait_handoff(self, source, source_id, to, handoff_id, request_id, since, timeout, poll):
        deadline = clock() + timeout
        while True:
            problem = self._handoff_error(source, source_id, request_id)
            if problem:
                raise errors.HandoffFailed('handoff %s of server %s failed: %s' % (handoff_id, source_id,
                                                                                  problem))
            moved = [s for s in to.list_servers({'changes-since': since})
                     if (s.get('metadata') or {}).get(props.HANDOFF_ID) == handoff_id
                     and s.get('status') != 'DELETED']
            if moved and moved[0].get('status') == 'ERROR':
                raise errors.HandoffFailed('handoff %s: server %s on %s is in ERROR: %s' % (
                    handoff_id, moved[0]['id'], to.name, (moved[0].get('fault') or {}).get('message')))
            if moved and moved[0].get('status') == 'ACTIVE' and self._gone(source, source_id):
                return moved[0]
            if clock() >= deadline:
                raise errors.HandoffFailed('handoff %s of server %s did not end within %d s (it may still '
                                           'be running)' % (handoff_id, source_id, timeout))
            sleep(poll)

    @staticmethod
    def _gone(cloud, server_id):
        try:
            return cloud.get_server(server_id).get('status') in ('DELETED', 'SOFT_DELETED')
        except errors.HTTPError as exc:
            if exc.status == 404:
                return True
            raise

    # ------------------------------------------------------------ release

    def release(self):
        """Stop the lease keeper; delete the server, the floating IPs and overlay uploads made for it.

        Safe to call twice; a failing delete is logged, not raised.
        """
        with self.timed('release'):
            if self.keeper is not None:
                self.keeper.stop()
            if self.server_id:
                self._delete_quietly(self.cloud.delete_server, self.server_id, 'server')
                self.server_id = None
            for cloud, fip in self._floating_ips:
                self._delete_quietly(cloud.delete_floating_ip, fip, 'floating IP')
            for cloud, image_id in self._uploaded:
                self._delete_quietly(cloud.delete_image, image_id, 'overlay image')
            for manager, key_id in self._keys:
                self._delete_quietly(manager.delete, key_id, 'overlay key')
            self._floating_ips, self._uploaded, self._keys = [], [], []

    @staticmethod
    def _delete_quietly(delete, resource_id, what):
        try:
            delete(resource_id)
        except errors.ClientError as exc:
            LOG.warning('could not delete %s %s: %s', what, resource_id, exc)
