"""A handoff on the source compute host (doc/handoff.md, "Flow").

One `Handoff` per `handoff` RPC message, run in nova's long-task thread
pool, inside `EventReporter(context, 'cloudlet_handoff', host, uuid)`, so
the instance action `cloudlet-handoff` started by nova-api gets an event that
ends in Success or Error with the reason. Steps 1-3 and any roll back run
under the instance lock (`utils.synchronized(instance.uuid)`, the compute
manager's own):

1. destination: authenticate, find the base disk image and a flavor, make
   ports with the VM's MACs there (its NICs go along: doc/handoff.md, "NICs")
   and give the first the floating IP, create the destination server on them
   (it starts building: its compute host fetches the base, then takes the
   residue as it arrives); a failure leaves the VM untouched;
2. residue: stream the VM's residue into the destination server
   (`PUT /servers/{id}/cloudlet-residue` of its compute API) while the VM
   runs (engine LiveResidue): the disk pre-copy first, then, once the
   destination says it is ready (its base in place), QEMU's migration of the
   memory, NICs and all; it returns with the VM paused. NICs that cannot go
   along are unplugged first, and the destination server gets new ones;
3. switch: wait for the destination server to be ACTIVE;
4. delete this server the way nova-api does (task_state deleting, the
   `delete` instance action with a request id of its own, terminate_instance
   cast to this host), after the lock is released: nova's terminate_instance
   takes it.

Any failure before the switch rolls back: the migration is cancelled, the
VM resumed and its NICs plugged back, what was created at the destination
deleted (best effort: the aborted upload fails the destination's build at
once, then the server, its floating IP and ports are deleted), `task_state`
back to None. The VM keeps running. Once the whole residue has gone to the
upload, the destination may have it and run the VM: the VM resumes here only
once the destination confirms its server gone, else it stays paused
(`in_doubt`) and `sweep` settles the doubt once the destination answers
again: it deletes the destination server until it is gone (even one that
runs the VM: the roll back's own delete may land there late), then the VM
resumes here.
Once the destination server is ACTIVE nothing is rolled back (two running
copies would be worse): a failed delete here leaves this VM paused, with the
reason in the event.

The credential arrives as a reference to the key manager (credentials.py):
it is read when the handoff starts, only handed to
`destination_client.DestinationClient`, and the secret is deleted when the
handoff ends. Every message this module
writes (logs, the instance action event, the record) is masked against its
values.
"""

from concurrent import futures
import copy
import os
import shutil
import threading
import time
import traceback

from oslo_context import context as oslo_context
from oslo_log import log as logging

from nova.compute import instance_actions
from nova.compute import power_state
from nova.compute import rpcapi as compute_rpcapi
from nova.compute import task_states
from nova.compute import utils as compute_utils
from nova.compute import vm_states
import nova.conf
from nova import context as nova_context
from nova import exception
from nova import objects
from nova import utils
from nova.virt.libvirt import utils as libvirt_utils

from cloudlet_engine import crypto
from cloudlet_engine import errors as engine_errors
from cloudlet_engine import handoff as engine_handoff
from cloudlet_engine import nics
from cloudlet_engine import urls
from cloudlet_glance import hostcache
from cloudlet_glance import images as glance_images
from cloudlet_glance import properties as props
from cloudlet_nova.handoff import addresses
from cloudlet_nova.handoff import credentials
from cloudlet_nova.handoff import destination_client
from cloudlet_nova.handoff import records
from cloudlet_nova.handoff import remote
from cloudlet_nova import outbound
from cloudlet_nova.virt import faults
from cloudlet_nova.virt import launch
from cloudlet_nova.virt import restore
from cloudlet_nova.virt import state

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

EVENT = 'cloudlet_handoff'                # the instance action event of the compute side
HANDOFF_ID = props.HANDOFF_ID            # server metadata, image property
WORKDIR_PREFIX = 'cloudlet-handoff-'
MAX_MESSAGE = 240                         # nova keeps 255 characters of an event's details


class HandoffFailed(exception.NovaException):
    msg_fmt = 'cloudlet handoff failed: %(reason)s'


class HandoffCancelled(HandoffFailed):
    msg_fmt = 'cloudlet handoff cancelled: %(reason)s'


# -- secrets ---------------------------------------------------------------------

def secrets_of(request):
    """The credential's string values (token, application credential id and secret)."""
    return remote.credential_secrets((request or {}).get('credential'))


def mask(text, secrets):
    """`text` with every secret replaced by ***, and URL user information removed."""
    text = urls.redact_credentials(str(text))
    for secret in secrets:
        text = text.replace(secret, '***')
    return text


def describe(exc):
    """One line naming the cause of a failure (not yet masked)."""
    if isinstance(exc, HandoffFailed):
        return exc.kwargs.get('reason') or exc.format_message()
    if isinstance(exc, remote.HandoffDestinationError):
        return str(exc) or 'the destination cloud refused'
    if isinstance(exc, faults.CloudletCaptureFailed):
        return exc.kwargs.get('reason') or exc.format_message()
    if isinstance(exc, exception.NovaException):
        return exc.format_message()
    if isinstance(exc, engine_errors.CloudletError):
        return faults.describe(exc)
    return '%s: %s' % (type(exc).__name__, exc) if str(exc) else type(exc).__name__


def recover(driver, host, record):
    """After nova-compute stopped mid-handoff (init_host, per interrupted record):
    the VM runs here again with its NICs, unless the destination had taken
    over (then it stays paused, for its owner to delete). Returns what was done.

    The handoff unplugged the NICs from the live domain only: the persistent
    definition keeps them, and what it has and the live domain lacks is
    plugged back (the ports on the switch first, as replug_nics does).
    """
    uuid = record.get('instance_uuid')
    try:
        instance = objects.Instance.get_by_uuid(nova_context.get_admin_context(), uuid,
                                                expected_attrs=['info_cache', 'flavor'])
    except exception.InstanceNotFound:
        return 'the server is gone'
    if instance.host != host:
        return 'the server is on %s' % instance.host
    try:
        guest = driver._host.get_guest(instance)     # no public accessor, as in Handoff
    except exception.InstanceNotFound:
        return 'the server has no VM here'
    if any(phase.get('name') == 'activate' and phase.get('result') == 'ok'
           for phase in record.get('phases') or ()):
        LOG.warning('handoff %s: the destination server %s took over before nova-compute stopped; '
                    'the VM here stays paused: delete this server', record.get('handoff_id'),
                    record.get('destination_server_id'), instance=instance)
        return 'left paused: the destination took over'
    done = []
    if guest.get_power_state(driver._host) == power_state.PAUSED:
        guest.resume()
        done.append('resumed')
    live = {nics.mac_of(nic) for nic in restore.interfaces(guest.get_xml_desc())}
    missing = [nic for nic in restore.interfaces(guest.get_xml_desc(dump_inactive=True))
               if nics.mac_of(nic) not in live]
    if missing:
        restore.replug_nics(driver, instance, guest, missing)
        done.append('%d NIC(s) plugged back' % len(missing))
    LOG.warning('handoff %s was interrupted by a nova-compute stop: %s; delete what it made at the '
                'destination if it exists: server %s, ports %s, floating IP %s', record.get('handoff_id'),
                ', '.join(done) or 'nothing to repair', record.get('destination_server_id'),
                ', '.join(record.get('destination_port_ids') or ()) or 'none',
                record.get('destination_floating_ip_id') or 'none', instance=instance)
    return ', '.join(done) or 'nothing to repair'


def sweep_workdirs(instances_path):
    """Remove residue work directories left by a nova-compute that stopped mid-handoff.

    They hold only copies (the VM's state is in QEMU); call from init_host.
    """
    removed = []
    for instance_dir, names in state.instance_dirs(instances_path):
        for name in names:
            if name.startswith(WORKDIR_PREFIX):
                shutil.rmtree(os.path.join(instance_dir, name), ignore_errors=True)
                removed.append(os.path.join(instance_dir, name))
    return removed


# -- one handoff -------------------------------------------------------------------

class Handoff:
    """One handoff of one instance to one destination."""

    def __init__(self, driver, context, instance, handoff_id, request, host):
        self.driver, self.context, self.instance = driver, context, instance
        self.handoff_id, self.request, self.host = handoff_id, request, host
        self.secrets = secrets_of(request)
        self.record = records.HandoffRecord(CONF.cloudlet.state_dir, handoff_id, instance.uuid,
                                            server_name=request.get('name'))
        self.record.forbid(*self.secrets)
        self.credential = None           # read from the key manager when the handoff starts
        self._lock = threading.Lock()
        self._cancel_reason = None
        self.destination = None
        self.residue = None
        self.guest = None
        self.nics = []
        self.residue_key = self.residue_key_id = None   # the residue's key: in memory only
        self.server_id = None
        self.floating_ips = []         # of the server here: released with it after the switch
        self.ports = []                # made at the destination with the VM's MACs (its NICs go along)
        self.leftovers = []            # (what, delete call, id) the roll back could not delete there
        self.destination_floating_ip_id = None
        self._floating_ip_job = None   # giving the carried port its floating IP, during the disk pre-copy
        self.switched = False          # the destination server is ACTIVE: no roll back
        # The whole residue went to the upload: the destination may have it all and run the VM,
        # whether or not its answer arrives.
        self.residue_sent = False
        # Set by a roll back that could not confirm the destination server gone although the
        # residue's last byte had gone out: the VM stays paused (never two copies running)
        # until `sweep` settles where it runs: 'source', or 'owner' (who acted first).
        self.in_doubt = False
        self.settled = None
        self.delete_requested = False
        self.error = None

    # -- from other threads --

    def cancel(self, reason):
        """Stop the handoff (thread-safe): it rolls back and ends in Error."""
        with self._lock:
            self._cancel_reason = reason
            residue = self.residue
        if residue is not None:
            try:
                residue.cancel()
            except Exception:   # noqa: BLE001
                LOG.warning('handoff %s: cancelling the residue failed', self.handoff_id,
                            exc_info=True)

    def _check_cancelled(self):
        with self._lock:
            reason = self._cancel_reason
        if reason:
            raise HandoffCancelled(reason=reason)

    # -- the run --

    def run(self):
        """The whole handoff. Never raises; the outcome is in the event, the record and the log."""
        try:
            self._run()
        except Exception:   # noqa: BLE001 - the end of a pool thread: log, do not lose it
            LOG.error('handoff %s: unexpected error: %s', self.handoff_id,
                      self._masked(traceback.format_exc()), instance=self.instance)

    def _locked(self, func, *args):
        """func(*args) under the instance lock, the compute manager's own."""
        @utils.synchronized(self.instance.uuid)
        def locked():
            return func(*args)
        return locked()

    def _run(self):
        if not self._locked(self._claim):
            credentials.forget(self.context, self.request.get('credential'))
            return
        self.record.save()
        try:
            with compute_utils.EventReporter(self.context, EVENT, self.host, self.instance.uuid):
                try:
                    self._locked(self._handoff)
                    # Outside the lock: nova's terminate_instance takes it.
                    self._delete_source()
                except BaseException as exc:
                    with self._lock:
                        cancelled = self._cancel_reason
                    failure = HandoffCancelled if cancelled else HandoffFailed
                    self.error = self._masked(cancelled or describe(exc))[:MAX_MESSAGE]
                    LOG.error('handoff %s %s: %s', self.handoff_id,
                              'cancelled' if cancelled else 'failed', self.error,
                              instance=self.instance)
                    LOG.debug('handoff %s: %s', self.handoff_id,
                              self._masked(''.join(traceback.format_exception(exc))))
                    self._locked(self._roll_back)
                    if self.in_doubt:
                        # Said first: the event keeps MAX_MESSAGE characters.
                        self.error = ('the VM stays paused here: destination server %s may run it; %s'
                                      % (self.server_id, self.error))[:MAX_MESSAGE]
                    if not isinstance(exc, Exception):
                        raise
                    # A masked, one-line reason for the event (its details are shown to the user).
                    raise failure(reason=self.error) from None
        except HandoffFailed:
            pass                # recorded by the EventReporter and logged above
        except Exception as exc:   # noqa: BLE001 - e.g. the event could not be recorded
            self.error = self.error or self._masked(describe(exc))[:MAX_MESSAGE]
            LOG.error('handoff %s: %s', self.handoff_id, self._masked(describe(exc)),
                      instance=self.instance)
        finally:
            self.credential = None
            if not self.unfinished():
                # Else kept until sweep is done with the destination.
                credentials.forget(self.context, self.request.get('credential'))
            if not self.delete_requested:
                self._clear_task_state()
            self.record.finish(records.ERROR if self.error else records.OK, self.error)
            shutil.rmtree(self._workdir(), ignore_errors=True)
        if not self.error:
            LOG.info('handoff %s done: the server runs at the destination as %s',
                     self.handoff_id, self.server_id, instance=self.instance)

    def _claim(self):
        """The API set task_state migrating; still ours? (A delete may have come first.)"""
        try:
            self.instance.task_state = task_states.MIGRATING
            self.instance.save(expected_task_state=[task_states.MIGRATING])
            return True
        except (exception.InstanceNotFound, exception.UnexpectedTaskStateError) as exc:
            message = 'the server changed before the handoff started: %s' % exc.format_message()
            LOG.warning('handoff %s not started: %s', self.handoff_id, message,
                        instance=self.instance)
            self.record.finish(records.ERROR, message)
            return False

    def _read_credential(self):
        try:
            credential = credentials.read(self.context, self.request.get('credential'))
        except credentials.CredentialUnavailable as exc:
            raise HandoffFailed(reason=str(exc)) from None
        secrets = secrets_of({'credential': credential})
        self.secrets = sorted(set(self.secrets) | set(secrets), key=len, reverse=True)
        self.record.forbid(*secrets)
        return credential

    def _handoff(self):
        self._check_cancelled()
        self.credential = self._read_credential()
        self.guest = self._running_guest()
        base = self._base()
        with self.record.phase('destination'):
            self._prepare_destination(base)
        self._check_cancelled()
        with self.record.phase('residue'):
            stats = self._send_residue(base)
        with self.record.phase('activate'):
            self.destination.wait_active(self.server_id, CONF.cloudlet_handoff.activate_timeout)
            active_at = time.monotonic()
        self.switched = True
        paused_at = getattr(stats, 'paused_at', None)
        if paused_at is not None:
            self.record.update(downtime_seconds=round(active_at - paused_at, 3))
        # The destination server has applied the residue: its key was for the residue only.
        if self.residue_key_id:
            self.destination.delete_key(self.residue_key_id)
        self.residue_key = None
        if self.floating_ips and self.destination_floating_ip_id is None:
            self._quietly('give the destination server a floating IP', self._add_floating_ip)

    def _add_floating_ip(self):
        # Named for the handoff: the destination releases it with the server (addresses.py).
        self.destination_floating_ip_id, address = self.destination.add_floating_ip(
            server_id=self.server_id, port_id=self.ports[0] if self.ports else None,
            description=addresses.handoff_description(self.handoff_id))
        self.record.update(destination_floating_ip=address,
                           destination_floating_ip_id=self.destination_floating_ip_id)

    # -- step 1 --

    def _running_guest(self):
        if not props.is_cloudlet_instance(self.instance):
            raise HandoffFailed(reason='the server was not booted from a cloudlet base VM image')
        try:
            # driver._host: nova exposes no public accessor for the libvirt connection's Host.
            guest = self.driver._host.get_guest(self.instance)
        except exception.InstanceNotFound:
            raise HandoffFailed(reason='the server has no VM on this host') from None
        if guest.get_power_state(self.driver._host) != power_state.RUNNING:
            raise HandoffFailed(reason='the server\'s VM is not running')
        return guest

    def _base(self):
        images = glance_images.NovaImages(self.context)
        return hostcache.fetch_base(images, self.instance.image_ref, launch.base_store())

    def _base_needs(self, base):
        """(memory MB, vCPUs) the base's memory snapshot was taken with."""
        abi = getattr(base, 'abi', None) or {}
        memory_mb = (abi.get('memory_kib') or 0) // 1024 or self.instance.flavor.memory_mb
        vcpus = abi.get('vcpus') or self.instance.flavor.vcpus
        return memory_mb, vcpus

    def _prepare_destination(self, base):
        spec = self.request['destination']
        options = CONF.cloudlet_handoff
        self.destination = destination_client.DestinationClient(
            spec, self.credential, known_clouds=dict(options.destinations or {}),
            ca_file=options.ca_file, insecure=options.insecure,
            connect_timeout=options.connect_timeout, stall_timeout=options.stall_timeout,
            policy=outbound.policy(CONF))
        self.destination.connect()
        self._record_destination(spec)
        # Read before the VM is touched: a Neutron that cannot answer fails the handoff here.
        self.floating_ips = addresses.floating_ips(self.context, self.instance)
        memory_mb, vcpus = self._base_needs(base)
        networks = self._destination_networks(options.destination_networks)
        # Independent calls, each a WAN round trip or more and a token validation
        # there: at once. The first failure (in this order) fails the handoff; what
        # the others made is recorded, and the roll back deletes it.
        with futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix='cloudlet-handoff-prepare') as pool:
            calls = [pool.submit(self.destination.find_base_image, base.base_id),
                     pool.submit(self.destination.pick_flavor, memory_mb, vcpus, flavor_id=spec.get('flavor')),
                     pool.submit(self._residue_key, options.residue_encryption),
                     pool.submit(self._carry_nics, networks)]
        base_image, flavor, _key, _nics = [call.result() for call in calls]
        self._record_destination(spec, flavor['id'])
        self._check_cancelled()
        metadata = {HANDOFF_ID: self.handoff_id}
        if self.residue_key_id:
            metadata[props.OVERLAY_KEY_ID] = self.residue_key_id
        lease_seconds = (self.instance.metadata or {}).get(props.META_LEASE_SECONDS)
        if lease_seconds:
            # The lease goes along: the destination's API starts it afresh (its own bounds).
            metadata[props.META_LEASE_SECONDS] = lease_seconds
        if self.ports:
            networks = [{'port': port_id} for port_id in self.ports]
            if self.floating_ips:
                # Before the VM moves (the L3 agent is ready then), but alongside the
                # server's build and the disk pre-copy: _wait_ready joins it.
                self._floating_ip_job = threading.Thread(
                    target=self._quietly, args=('give the destination server a floating IP', self._add_floating_ip),
                    name='cloudlet-handoff-fip', daemon=True)
                self._floating_ip_job.start()
        self.server_id = self.destination.create_server(
            self.request['name'], base_image['id'], flavor['id'], metadata, networks=networks)
        self.record.update(destination_server_id=self.server_id)

    def _join_floating_ip_job(self):
        job, self._floating_ip_job = self._floating_ip_job, None
        if job is not None:
            job.join()

    def _carry_nics(self, networks):
        """Ports at the destination with the VM's MACs, so that its NICs go along
        (doc/handoff.md, "NICs"); else they are replaced, and the record says why.
        """
        live = self.guest.get_xml_desc()
        macs = [nic['mac'] for nic in nics.guest_nics(live)]
        if not macs:
            self.record.update(nics='none')
            return
        why = None
        if not CONF.cloudlet_handoff.carry_nics:
            why = '[cloudlet_handoff] carry_nics is off'
        elif networks != 'auto':
            why = 'the destination server gets networks=%s' % networks
        else:
            why = nics.carriable(live)
        network_id = None
        if why is None:
            try:
                network_id = self.destination.project_network()
            except remote.HandoffDestinationError as exc:
                if not exc.refused:
                    raise
                why = str(exc)
            if network_id is None and why is None:
                why = 'the destination project has no single network of its own'
        if why is None:
            try:
                for mac in macs:
                    self.ports.append(self.destination.create_port(
                        network_id, mac, 'cloudlet-handoff-%s' % self.handoff_id))
                    self.record.update(destination_port_ids=list(self.ports))
            except remote.HandoffDestinationError as exc:
                if not exc.refused:
                    raise
                why = 'the destination refused a port with the VM\'s MAC: %s' % exc
                self._delete_ports()
        if why is not None:
            LOG.info('handoff %s: the NICs are replaced, not carried: %s', self.handoff_id,
                     self._masked(why), instance=self.instance)
        self.record.update(nics='carried' if why is None else self._masked('replaced: %s' % why)[:MAX_MESSAGE])

    def _delete_ports(self):
        for port_id in self.ports:
            self.destination.delete_port(port_id)
        self.ports = []

    def _residue_key(self, mode):
        """A new key for the residue, kept in the destination's key manager.

        [cloudlet_handoff] residue_encryption decides; with a key, the VM's
        memory and disk never rest in the destination's Glance in clear.
        """
        if mode == 'off' or (mode == 'auto' and not self.destination.key_manager_url):
            self.record.update(residue_encrypted=False)
            return
        key = crypto.new_key()
        self.residue_key_id = self.destination.store_key(key, 'cloudlet-handoff-%s' % self.handoff_id)
        self.residue_key = key
        self.record.update(residue_encrypted=True)

    def _destination_networks(self, option):
        if option != 'source':
            return option
        return 'auto' if self.instance.get_network_info() else 'none'

    def _record_destination(self, spec, flavor_id=None):
        self.record.set_destination(auth_url=getattr(self.destination, 'auth_url', None),
                                    cloud=spec.get('cloud'), region_name=spec.get('region_name'),
                                    interface=spec.get('interface'), flavor_id=flavor_id)

    # -- step 2 --

    def _workdir(self):
        return os.path.join(libvirt_utils.get_instance_path(self.instance),
                            WORKDIR_PREFIX + self.handoff_id)

    def _send_residue(self, base):
        try:
            if not self.ports:      # not carried: replaced by the destination's
                self.nics = restore.unplug_nics(self.driver, self.instance, self.guest)
        except faults.CloudletCaptureFailed as exc:
            raise HandoffFailed(reason=describe(exc)) from None
        workdir = self._workdir()
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        codec = (self.request.get('options') or {}).get('codec') or 'auto'
        with self.destination.residue_upload(self.server_id, self.handoff_id) as upload:
            with self._lock:
                # The engine drives QEMU through the raw virDomain (libvirt_qemu monitor
                # commands); nova's Guest exposes no public accessor for it.
                self.residue = engine_handoff.LiveResidue(
                    self.guest._domain, base, workdir, codec=codec, key=self.residue_key,
                    max_downtime_ms=CONF.cloudlet_handoff.max_downtime_ms,
                    memory=CONF.cloudlet_handoff.memory_transfer,
                    progress=launch.LogProgress(self.instance.uuid), bandwidth=upload.bandwidth)
            self._check_cancelled()
            stats = self.residue.run(upload, before_memory=self._wait_ready)
            # Before the destination's answer: a link cut from here on leaves it unknown
            # whether the destination has the whole residue.
            self.residue_sent = True
        self.record.update(
            bytes_sent=getattr(upload, 'bytes_sent', None),
            codecs=dict(getattr(stats, 'codecs', None) or {}),
            residue={key: getattr(stats, key, None) for key in (
                'bytes_out', 'precopy_seconds', 'ready_wait_seconds', 'final_seconds', 'disk_chunks_sent',
                'disk_chunks_resent', 'memory_stream_bytes', 'bytes_after_pause', 'memory_seconds',
                'qemu_wait_seconds', 'send_wait_seconds', 'memory_cpu_seconds', 'disk_pass_skipped',
                'memory_transfer')})
        return stats

    def _wait_ready(self):
        """Until the destination's compute host has the base and takes the residue."""
        self._join_floating_ip_job()
        self.destination.wait_ready(self.server_id, self.handoff_id, CONF.cloudlet_handoff.ready_timeout)
        self._check_cancelled()

    # -- step 3 --

    def _delete_source(self):
        """Delete this server as nova-api does for a server whose host is up.

        compute API's delete() itself cannot run here: it updates the instance
        mapping in the API database, which nova-compute has no access to. So:
        task_state deleting (expected: our migrating; a user's delete that came
        first wins), the `delete`
        instance action (a request id of its own), and the terminate_instance
        cast to this host. The compute manager does
        the rest (notifications, networks, volumes, the domain, the instance
        directory). Not done: the instance mapping's `queued_for_delete` flag
        (only read when quotas are counted from placement; it becomes right
        when the deleted instance is archived).
        """
        context = copy.copy(self.context)
        context.request_id = oslo_context.generate_request_id()
        with self.record.phase('switch'):
            try:
                self.instance.task_state = task_states.DELETING
                self.instance.progress = 0
                self.instance.save(expected_task_state=[task_states.MIGRATING])
            except (exception.UnexpectedDeletingTaskStateError, exception.InstanceNotFound):
                LOG.info('handoff %s: the server is already being deleted', self.handoff_id,
                         instance=self.instance)
                self.delete_requested = True
                return
            except Exception as exc:
                raise HandoffFailed(reason=self._delete_failed(exc))
            self.delete_requested = True
            if self.floating_ips:
                self._quietly('release the floating IPs here', addresses.release, self.context,
                              self.floating_ips)
            try:
                objects.InstanceAction.action_start(context, self.instance.uuid,
                                                    instance_actions.DELETE, want_result=False)
                bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(context,
                                                                           self.instance.uuid)
                compute_rpcapi.ComputeAPI().terminate_instance(context, self.instance, bdms)
            except Exception as exc:
                # No terminate is coming: give the server back to its owner to delete.
                self._quietly('reset the task state', self._reset_deleting)
                raise HandoffFailed(reason=self._delete_failed(exc))

    def _delete_failed(self, exc):
        return ('the server runs at the destination as %s, but deleting it here failed (%s); '
                'it stays paused here: delete it' % (self.server_id, describe(exc)))

    def _reset_deleting(self):
        self.instance.task_state = None
        self.instance.save(expected_task_state=[task_states.DELETING])

    # -- failure --

    def _roll_back(self):
        self._join_floating_ip_job()     # what it makes is deleted below
        if self.switched:
            # The destination server is ACTIVE: never resume this copy, never delete that one.
            return
        # The destination may have the whole residue and run the VM from now on (its answer
        # may be what the link cut), so the VM resumes here only once the destination server
        # is known to be gone.
        if self.residue_sent and not self._destination_gone():
            # Never two copies: the destination may have the whole residue and run the VM.
            self.in_doubt = True
            self.record.update(in_doubt=True)
            LOG.error('handoff %s: the destination server %s may run the VM (its whole residue was sent) '
                      'and cannot be confirmed gone: the VM stays paused here until the destination '
                      'answers (every %d s for %d s): its server ACTIVE, this one is deleted; gone, this '
                      'one resumes', self.handoff_id, self.server_id,
                      CONF.cloudlet_handoff.cleanup_retry_interval, CONF.cloudlet_handoff.cleanup_retry_timeout,
                      instance=self.instance)
            return
        self._resume_source()
        if self.destination is not None:
            # The residue upload was aborted: the destination's build fails at once.
            self._leave_destination(self._destination_deletions())
        self.residue_key = None

    def _resume_source(self):
        """The VM runs here again, with its NICs."""
        residue = self.residue
        if residue is not None:
            self._quietly('cancel the residue migration', residue.cancel)
            self._quietly('resume the VM', residue.resume_source)
        if self.guest is not None:
            self._quietly('resume the VM', self._ensure_running)
            if self.nics:
                self._quietly('plug the NICs back', restore.replug_nics, self.driver, self.instance,
                              self.guest, self.nics)

    def _leave_destination(self, steps):
        """Delete these at the destination; what cannot be is retried by `sweep`."""
        self.leftovers = [step for step in steps if not self._delete(step)]
        self.ports = []
        if self.leftovers:
            self.record.update(destination_leftovers=self._leftover_names())

    def _leftover_names(self):
        return [what for what, _delete, _id in self.leftovers]

    def _destination_deletions(self, server=True):
        """What a roll back deletes at the destination: (what, delete call, id), the server first."""
        steps = []
        if self.server_id and server:
            steps.append(('server %s' % self.server_id, self._delete_server, self.server_id))
        if self.destination_floating_ip_id:
            steps.append(('floating IP %s' % self.destination_floating_ip_id,
                          self.destination.delete_floating_ip, self.destination_floating_ip_id))
        steps += [('port %s' % port_id, self.destination.delete_port, port_id) for port_id in self.ports]
        if self.residue_key_id:
            steps.append(('residue key %s' % self.residue_key_id, self.destination.delete_key,
                          self.residue_key_id))
        return steps

    def _delete_server(self, server_id):
        """Delete the destination server; with carried ports, until it is gone: its compute host
        deletes the ports it adopted and unbinds the others meanwhile, and Neutron refuses to
        delete a port in between (403).
        """
        if not self.destination.delete_server(server_id):
            return False
        if not self.ports:
            return True
        try:
            return self.destination.wait_gone(server_id, CONF.cloudlet_handoff.connect_timeout)
        except remote.HandoffDestinationError as exc:
            LOG.warning('handoff %s: the destination server %s is not gone yet: %s', self.handoff_id, server_id,
                        self._masked(describe(exc)), instance=self.instance)
            return False

    def _delete(self, step):
        what, delete, ident = step
        try:
            return bool(delete(ident))
        except Exception as exc:   # noqa: BLE001 - the other deletions still run
            LOG.error('handoff %s: could not delete the destination\'s %s: %s', self.handoff_id, what,
                      self._masked(describe(exc)), instance=self.instance)
            return False

    def unfinished(self):
        """Whether `sweep` has work: a doubt to settle, or leftovers to delete at the destination."""
        return bool(self.leftovers) or (self.in_doubt and self.settled is None)

    def sweep(self, stop):
        """After the handoff ended: every `cleanup_retry_interval` s, for
        `cleanup_retry_timeout` s or until `stop` is set, settle the doubt
        (`_settle`) and retry deleting what the roll back left at the
        destination; then forget the credential (kept for this until now).
        """
        deadline = time.monotonic() + CONF.cloudlet_handoff.cleanup_retry_timeout
        try:
            while self.unfinished() and time.monotonic() < deadline:
                if stop.wait(min(CONF.cloudlet_handoff.cleanup_retry_interval,
                                 max(0.0, deadline - time.monotonic()))):
                    break
                if self.in_doubt and self.settled is None:
                    self._quietly('settle where the VM runs', self._settle)
                self.leftovers = [step for step in self.leftovers if not self._delete(step)]
                self.record.update(destination_leftovers=self._leftover_names())
            if self.in_doubt and self.settled is None:
                LOG.error('handoff %s: the destination %s never answered whether its server %s runs the VM: '
                          'the VM stays paused here. Delete the destination server, or this server if the '
                          'destination runs it', self.handoff_id, self.destination.auth_url, self.server_id,
                          instance=self.instance)
            if self.leftovers:
                LOG.error('handoff %s: left at the destination %s, to delete there: %s', self.handoff_id,
                          self.destination.auth_url, ', '.join(self._leftover_names()), instance=self.instance)
            elif not self.in_doubt:
                LOG.info('handoff %s: what the roll back left at the destination is deleted', self.handoff_id,
                         instance=self.instance)
        finally:
            self.leftovers = []
            self.destination = None
            credentials.forget(self.context, self.request.get('credential'))

    def _settle(self):
        """One attempt at ending the doubt, once the destination answers. The roll back asked
        the destination to delete its server, and a request whose answer the link cut may
        still land there later: so the VM never stays there, even when that server runs it.
        A server still there is deleted again (unless deleting already) and asked about at
        the next attempt; gone -> the VM resumes here. The owner acting first (this server
        no longer PAUSED with no task) settles it too: nothing is done then.
        """
        server = self.destination.get_server(self.server_id)      # unreachable: raises, tried again later
        if server is not None and server.get('status') not in ('DELETED', 'SOFT_DELETED'):
            if server.get('OS-EXT-STS:task_state') != 'deleting':
                self.destination.delete_server(self.server_id)
            return
        self.instance.refresh()
        if self.instance.vm_state != vm_states.PAUSED or self.instance.task_state is not None:
            where = 'owner'
        else:
            self._locked(self._resume_here)
            where = 'source'
        self.settled = where
        self.record.update(settled=where)
        LOG.warning('handoff %s: settled, the VM runs %s', self.handoff_id, {
            'source': 'here again: the destination server %s is gone' % self.server_id,
            'owner': 'where the owner chose (this server changed meanwhile)'}[where], instance=self.instance)

    def _resume_here(self):
        """The destination server is gone: the VM runs here again, shown ACTIVE, and what the
        handoff made there besides the server is deleted.
        """
        self._resume_source()
        self.instance.vm_state = vm_states.ACTIVE
        self.instance.power_state = power_state.RUNNING
        self.instance.save(expected_task_state=[None])
        self._leave_destination(self._destination_deletions(server=False))

    def _destination_gone(self):
        """Delete the destination server and wait until the destination confirms it is gone."""
        if self.destination is None or not self.server_id:
            return True
        self.destination.delete_server(self.server_id)
        try:
            return self.destination.wait_gone(self.server_id, CONF.cloudlet_handoff.activate_timeout)
        except Exception as exc:   # noqa: BLE001 - unknown is not gone
            LOG.error('handoff %s: cannot confirm that the destination server %s is gone: %s',
                      self.handoff_id, self.server_id, self._masked(describe(exc)), instance=self.instance)
            return False

    def _ensure_running(self):
        if self.guest.get_power_state(self.driver._host) == power_state.PAUSED:
            LOG.warning('handoff %s: the VM was still paused; resuming it', self.handoff_id,
                        instance=self.instance)
            self.guest.resume()

    def _quietly(self, what, func, *args):
        try:
            func(*args)
        except Exception as exc:   # noqa: BLE001 - the other roll back steps still run
            LOG.error('handoff %s: could not %s: %s', self.handoff_id, what,
                      self._masked(describe(exc)), instance=self.instance)

    def _clear_task_state(self):
        try:
            self.instance.task_state = None
            if self.in_doubt:
                # Shown as it is: PAUSED, which its owner can unpause once the
                # destination server is gone (or delete, if that one runs).
                self.instance.vm_state = vm_states.PAUSED
                self.instance.power_state = power_state.PAUSED
            self.instance.save(expected_task_state=[task_states.MIGRATING])
        except (exception.InstanceNotFound, exception.UnexpectedTaskStateError) as exc:
            LOG.warning('handoff %s: task state not reset: %s', self.handoff_id,
                        exc.format_message(), instance=self.instance)

    def _masked(self, text):
        return mask(text, self.secrets)


# -- the handoffs of one host --------------------------------------------------------

class Handoffs:
    """The handoffs running on this compute host; what the RPC endpoint runs."""

    def __init__(self, driver, host):
        self.driver, self.host = driver, host
        self._lock = threading.Lock()
        self._running = {}
        self._stopping = None
        self._sweeps = {}              # handoff id -> the thread retrying its destination clean-up
        self._stop_sweeps = threading.Event()

    def run(self, context, instance, handoff_id, request):
        """One handoff, to its end (in a long-task pool thread)."""
        handoff = Handoff(self.driver, context, instance, handoff_id, request, self.host)
        with self._lock:
            self._running[handoff_id] = handoff
            stopping = self._stopping
        if stopping:
            handoff.cancel(stopping)
        try:
            handoff.run()
        finally:
            with self._lock:
                self._running.pop(handoff_id, None)
        if handoff.unfinished():
            # A thread of its own: the long-task pool is not held for the retries.
            sweep = threading.Thread(target=self._sweep, args=(handoff,), daemon=True,
                                     name='cloudlet-handoff-sweep-%s' % handoff_id[:8])
            with self._lock:
                self._sweeps[handoff_id] = sweep
            sweep.start()

    def _sweep(self, handoff):
        try:
            handoff.sweep(self._stop_sweeps)
        finally:
            with self._lock:
                self._sweeps.pop(handoff.handoff_id, None)

    def sweeping(self):
        """The handoffs whose doubt or destination clean-up is being retried: {handoff id: thread}."""
        with self._lock:
            return dict(self._sweeps)

    def running(self):
        with self._lock:
            return dict(self._running)

    def cancel_all(self, reason, timeout=60):
        """Cancel every running handoff (they roll back) and wait up to `timeout` s for them."""
        with self._lock:
            self._stopping = reason
            handoffs = list(self._running.values())
        for handoff in handoffs:
            handoff.cancel(reason)
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        # The clean-up retries end (each forgets its credential; the record names what is left).
        self._stop_sweeps.set()
        for sweep in self.sweeping().values():
            sweep.join(max(0.0, deadline - time.monotonic()))
        return not self.running()
