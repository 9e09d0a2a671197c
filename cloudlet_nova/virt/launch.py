"""Before nova's spawn: decide what a cloudlet spawn restores, and write its launch files.

A spawn is a cloudlet spawn when the instance's image is a base disk image
(image properties reach the driver only through
`instance.system_metadata['image_*']`: nova's ImageMetaProps drops unknown
properties from image_meta). Then:

- no overlay in the server metadata: resume the base itself (`apply.empty_launch`);
- `overlay_url`: stream the overlay over http(s) from an allowed host;
- `cloudlet_overlay_id`: stream the overlay image out of Glance;
- `cloudlet_handoff_id` (the destination server of a handoff): once the base
  is in place, open the handoff's inbox (cloudlet_nova.handoff.inbox) and
  apply the residue as the source cloud streams it in (no byte for
  `[cloudlet] handoff_receive_timeout` s: the build fails). Over a RAM file,
  that apply runs in a thread (`apply.Streamed`) and `prepare` returns once
  the launch files exist: nova's spawn goes on meanwhile, and its restore
  reads the launch memory from a pipe as the residue arrives (restore.py).

The base is fetched into the host's base store (`<state_dir>/bases`) first;
the flavor must match the memory and vCPUs the base's memory snapshot was
taken with. Launch files go to `<instance dir>/cloudlet-launch/`, under
instances_path so disk accounting sees them; any failure removes them.
"""

import dataclasses
import functools
import os
import shutil
import time

from oslo_log import log as logging

import nova.conf

from cloudlet_engine import apply
from cloudlet_engine import basestore
from cloudlet_engine import errors
from cloudlet_engine import format as overlay_format
from cloudlet_engine import progress as progress_mod
from cloudlet_engine import ramfile
from cloudlet_engine import savefile
from cloudlet_engine import source
from cloudlet_engine import urls
from cloudlet_glance import hostcache
from cloudlet_glance import images as glance_images
from cloudlet_glance import properties as props
from cloudlet_glance import streams as glance_streams
from cloudlet_nova import outbound
from cloudlet_nova.virt import faults
from cloudlet_nova.virt import state
from cloudlet_nova.virt import trust

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

BASE, URL, GLANCE, HANDOFF = 'base', 'url', 'glance', 'handoff'

# The destination server of a handoff (doc/handoff.md) carries its id.
HANDOFF_ID = props.HANDOFF_ID


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a cloudlet spawn restores: the base disk image, and an overlay or none."""
    base_image_id: str
    kind: str                  # BASE, URL or GLANCE
    ref: str = None            # the URL or the overlay image id

    def source_record(self):
        return {'kind': self.kind, 'ref': urls.redact_credentials(self.ref) if self.ref else None}


def plan(instance):
    """The Plan of a spawn, None for an ordinary spawn; CloudletSpawnFailed for bad requests."""
    metadata = instance.metadata or {}
    url = metadata.get(props.META_OVERLAY_URL)
    overlay_id = metadata.get(props.META_OVERLAY_ID)
    if not props.is_cloudlet_instance(instance):
        if url or overlay_id:
            raise faults.CloudletSpawnFailed(
                reason='server metadata names an overlay (%s) but image %s is not a cloudlet base disk'
                       % (props.META_OVERLAY_URL if url else props.META_OVERLAY_ID, instance.image_ref))
        return None
    if url and overlay_id:
        raise faults.CloudletSpawnFailed(reason='server metadata has both %s and %s: give one'
                                                % (props.META_OVERLAY_URL, props.META_OVERLAY_ID))
    if url:
        check_overlay_url(url)
        return Plan(instance.image_ref, URL, url)
    if overlay_id:
        return Plan(instance.image_ref, GLANCE, overlay_id)
    if metadata.get(HANDOFF_ID):
        return Plan(instance.image_ref, HANDOFF, metadata[HANDOFF_ID])
    return Plan(instance.image_ref, BASE)


def check_overlay_url(url):
    """The deployment's URL rules and outbound policy (cloudlet_nova.outbound), as a spawn fault."""
    try:
        outbound.check_url(CONF, url, what='overlay_url')
    except urls.URLNotAllowed as exc:
        raise faults.CloudletSpawnFailed(reason=str(exc))


def base_store():
    return basestore.BaseStore(os.path.join(CONF.cloudlet.state_dir, 'bases'))


def flavor_fit_error(flavor, base_name, needs_mb, needs_vcpus):
    """The message of a flavor that does not fit a base, or None when it fits."""
    if flavor.memory_mb == needs_mb and flavor.vcpus == needs_vcpus:
        return None
    return ('flavor %s has %d MB / %d vCPUs; base %s needs %d MB / %d vCPUs'
            % (flavor.name, flavor.memory_mb, flavor.vcpus, base_name, needs_mb, needs_vcpus))


def check_flavor_hint(instance):
    """Before any download: the flavor against the base disk image's memory/vCPU properties."""
    sysmeta = instance.system_metadata or {}
    try:
        needs_mb = int(sysmeta[props.system_metadata_key(props.MEMORY_MB)])
        needs_vcpus = int(sysmeta[props.system_metadata_key(props.VCPUS)])
    except (KeyError, TypeError, ValueError):
        return      # not on the image: check_flavor decides once the base is here
    name = sysmeta.get(props.system_metadata_key(props.BASE_NAME)) or instance.image_ref
    message = flavor_fit_error(instance.flavor, name, needs_mb, needs_vcpus)
    if message:
        raise faults.CloudletFlavorMismatch(reason=message)


def check_flavor(flavor, base):
    """The flavor against what the base's memory snapshot was taken with (authoritative)."""
    abi = base.abi
    message = flavor_fit_error(flavor, base.name or base.base_id[:12],
                               (abi.get('memory_kib') or 0) // 1024, abi.get('vcpus') or 0)
    if message:
        raise faults.CloudletFlavorMismatch(reason=message)


def ram_file(base, owner):
    """The base's RamFile to restore over (made on first use), or None for a full-image restore."""
    if CONF.cloudlet.memory_restore != 'ram_file':
        return None
    reason = ramfile.unsupported(savefile.read_save_image(base.memory_path).xml)
    if reason is None:
        try:
            return ramfile.convert(base, owner=owner)
        except ramfile.RamFileError as exc:
            reason = str(exc)
    LOG.warning('base %s restores from its full memory image: %s', base.name or base.base_id[:12], reason)
    return None


def prepare(context, instance, spawn_plan, instance_dir, ram_owner=None, inboxes=None):
    """Fetch the base, check the flavor, write the launch files. Returns (BaseVM, apply.Launch).

    ram_owner: (uid, gid) QEMU runs as, the owner of a base's RAM file.
    inboxes: the host's handoff inboxes (a HANDOFF plan's residue arrives there).
    """
    check_flavor_hint(instance)
    images = glance_images.NovaImages(context)
    started = time.monotonic()
    with faults.spawn_errors('cannot fetch base image %s' % spawn_plan.base_image_id):
        base = hostcache.fetch_base(images, spawn_plan.base_image_id, base_store(),
                                LogProgress(instance.uuid))
    check_flavor(instance.flavor, base)
    with faults.spawn_errors('cannot prepare the RAM file of base %s' % spawn_plan.base_image_id):
        ram = ram_file(base, ram_owner)
    launch_dir = state.launch_dir(instance_dir)
    shutil.rmtree(launch_dir, ignore_errors=True)     # a spawn interrupted earlier
    try:
        with faults.spawn_errors():
            if spawn_plan.kind == BASE:
                launch = apply.empty_launch(base, launch_dir, ram=ram)
            else:
                limits = overlay_format.Limits(max_memory_bytes=CONF.cloudlet.max_memory_image_bytes)
                image = overlay_image(images, spawn_plan, base) if spawn_plan.kind == GLANCE else None
                key, verifier = overlay_trust(context, instance, image)
                apply_from = functools.partial(apply.apply_overlay, base, launch_dir=launch_dir,
                                               limits=limits, progress=LogProgress(instance.uuid),
                                               key=key, verifier=verifier, ram=ram)
                if spawn_plan.kind == HANDOFF and ram is not None:
                    return base, stream_residue(inboxes, spawn_plan.ref, apply_from, base, started)
                if spawn_plan.kind == HANDOFF:
                    launch = receive_residue(inboxes, spawn_plan.ref, apply_from)
                else:
                    with open_overlay(images, spawn_plan) as stream:
                        launch = apply_from(stream)
                del key, apply_from      # the key is held for the apply only
    except BaseException:
        shutil.rmtree(launch_dir, ignore_errors=True)
        raise
    log_ready(base, spawn_plan.kind, launch, started)
    return base, launch


def log_ready(base, kind, launch, started):
    LOG.info('cloudlet launch files for base %s (%s) ready in %.1f s (%.2f s after the overlay\'s last '
             'segment%s): %d overlay bytes', base.base_id[:12], kind, time.monotonic() - started,
             launch.finish_seconds,
             '' if launch.catch_up_seconds is None else
             ', of which %.2f s for the memory walk to catch up' % launch.catch_up_seconds,
             launch.overlay_bytes)


def overlay_trust(context, instance, image):
    """(key bytes or None, signature verifier or None) of the overlay (`image`: its Glance image)."""
    what = 'overlay image %s' % image['id'] if image else 'overlay'
    ref = trust.key_ref(instance, image)
    key = trust.fetch_key(context, ref, what) if ref else None
    return key, trust.verifier(context, instance, image if image else instance.metadata, what)


def overlay_image(images, spawn_plan, base):
    """The Glance image of a GLANCE plan's overlay, checked (an active residue once it is one)."""
    try:
        image = images.get(spawn_plan.ref)
    except Exception as exc:    # cloudlet_glance errors are CloudletErrors already
        if isinstance(exc, errors.CloudletError):
            raise
        raise errors.SourceError('overlay image %s: %s' % (spawn_plan.ref, exc)) from exc
    if image.get(props.CLOUDLET_TYPE) != props.OVERLAY:
        raise errors.SourceError('image %s is not a cloudlet overlay (%s=%s)'
                                 % (spawn_plan.ref, props.CLOUDLET_TYPE, image.get(props.CLOUDLET_TYPE)))
    if image.get(props.BASE_ID) and image[props.BASE_ID] != base.base_id:
        raise errors.WrongBase('overlay image %s was made for base %s, not for base %s'
                               % (spawn_plan.ref, image[props.BASE_ID][:12], base.base_id[:12]))
    return dict(image, id=image.get('id') or spawn_plan.ref)


def open_overlay(images, spawn_plan):
    """A readable stream of the plan's overlay (engine SourceError etc. on failure)."""
    if spawn_plan.kind == URL:
        return source.open_overlay(spawn_plan.ref, max_bytes=CONF.cloudlet.max_overlay_bytes,
                                   timeout=CONF.cloudlet.fetch_timeout, allow_files=False,
                                   policy=outbound.policy(CONF))
    pipe = glance_streams.DownloadPipe(images, spawn_plan.ref, CONF.cloudlet.fetch_timeout)
    return source.Bounded(pipe, CONF.cloudlet.max_overlay_bytes, 'overlay image %s' % spawn_plan.ref)


def receive_residue(inboxes, handoff_id, apply_from):
    """Apply a handoff's residue from its inbox as it arrives: the base is here, so the
    source may now send the VM's memory (it asks the inbox's status first).
    """
    inbox = inboxes.open(handoff_id, CONF.cloudlet.handoff_receive_timeout)
    LOG.info('handoff %s: ready to receive the residue', handoff_id)
    reason = None
    try:
        return apply_from(inbox)
    except BaseException as exc:
        reason = faults.describe(exc) if isinstance(exc, errors.CloudletError) else type(exc).__name__
        raise
    finally:
        LOG.info('handoff %s: residue %s', handoff_id, inbox.describe_pace())
        inboxes.close(inbox, reason)


def stream_residue(inboxes, handoff_id, apply_from, base, started):
    """`receive_residue` in a thread whose launch memory is a pipe (apply.Streamed):
    the Launch (its `streamed` set) once its files exist; `abandon` it if the
    spawn fails before its restore has read the pipe.
    """
    def receive(streamed):
        launch = receive_residue(inboxes, handoff_id, functools.partial(apply_from, streamed=streamed))
        log_ready(base, HANDOFF, launch, started)
        return launch

    streamed = apply.Streamed(receive, name='cloudlet-residue-%s' % handoff_id[:8])
    # Until the residue's header is in; the inbox's idle timeout bounds it.
    return streamed.launch()


def abandon(inboxes, handoff_id, launch, reason, timeout=30.0):
    """A spawn failing while its residue streams in: fail the inbox (an apply
    waiting for bytes stops), close the pipe short, wait for the apply's end.
    """
    if launch is None or launch.streamed is None:
        return
    inboxes.abort(handoff_id, reason)
    launch.streamed.abort()
    try:
        launch.streamed.result(timeout)
    except Exception as exc:    # noqa: BLE001 - the spawn's own error is the one to report
        LOG.debug('the abandoned residue apply ended: %s', exc)


class LogProgress(progress_mod.Progress):
    """Engine progress -> a log line per stage every 10 s (nova-compute has no terminal).

    `instance_uuid` names what the lines are about, or `subject` ('pre-cache of image ...').
    """

    def __init__(self, instance_uuid=None, interval=10.0, subject=None):
        self.subject = subject or 'instance %s' % instance_uuid
        self.interval = interval
        self._stage, self._last = None, 0.0

    def update(self, stage, done, total=None):
        now = time.monotonic()
        if stage == self._stage and now - self._last < self.interval:
            return
        self._stage, self._last = stage, now
        LOG.info('%s: %s: %.1f MB%s', self.subject, stage, done / 1e6,
                 ' of %.1f MB' % (total / 1e6) if total else '')
