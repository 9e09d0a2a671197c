"""Which flavor restores a base: its memory snapshot fixes the RAM and the vCPUs.

CloudletDriver refuses a flavor whose RAM or vCPU count differs from the
base's (cloudlet_nova.virt.launch.flavor_fit_error), and nova refuses a root
disk smaller than the base disk image's min_disk. The server's disks must
also be the base's (cloudlet_nova.virt.restore): a flavor with an ephemeral
or swap disk adds a disk the base was most likely captured without, so such
flavors are chosen only when nothing else fits.
"""

import dataclasses

from osc_lib import exceptions

from cloudlet_glance import properties as props


@dataclasses.dataclass(frozen=True)
class Needs:
    """What a base disk image asks of a flavor."""
    base: str               # the base's name, for messages
    memory_mb: int
    vcpus: int
    min_disk_gb: int


def needs(disk_image):
    name = disk_image.get(props.BASE_NAME) or disk_image.get('name') or disk_image['id']
    try:
        memory_mb, vcpus = int(disk_image[props.MEMORY_MB]), int(disk_image[props.VCPUS])
    except (KeyError, TypeError, ValueError):
        raise exceptions.CommandError(
            'base %s (image %s) does not record its RAM and vCPUs (image properties %s, %s): '
            'give --flavor' % (name, disk_image['id'], props.MEMORY_MB, props.VCPUS))
    return Needs(name, memory_mb, vcpus, int(disk_image.get(props.MIN_DISK) or 0))


def _extra_disks(flavor):
    return int(flavor.get('OS-FLV-EXT-DATA:ephemeral') or 0) + int(flavor.get('swap') or 0)


def mismatch(flavor, need):
    """Why `flavor` cannot restore the base, or None when it can."""
    if flavor['ram'] != need.memory_mb or flavor['vcpus'] != need.vcpus:
        return ('flavor %s has %d MB / %d vCPUs; base %s needs %d MB / %d vCPUs'
                % (flavor['name'], flavor['ram'], flavor['vcpus'], need.base, need.memory_mb,
                   need.vcpus))
    # A zero-disk flavor takes the image's size: nova decides (by policy) whether it may.
    if flavor['disk'] and flavor['disk'] < need.min_disk_gb:
        return ('flavor %s has a %d GB root disk; base %s needs at least %d GB'
                % (flavor['name'], flavor['disk'], need.base, need.min_disk_gb))
    return None


def check(flavor, need):
    """A flavor the user named: refused here, before nova and the driver would refuse it."""
    problem = mismatch(flavor, need)
    if problem:
        raise exceptions.CommandError(problem)
    return flavor


def choose(flavors, need):
    """The smallest enabled flavor that fits: exact RAM and vCPUs, root disk >= min_disk.

    Zero-disk flavors are left out (nova lets only admins boot images on
    them by default); among the rest, fewest extra disks, then the smallest
    root disk, then the name.
    """
    fitting = [f for f in flavors
               if not f.get('OS-FLV-DISABLED:disabled') and f['disk'] and mismatch(f, need) is None]
    if not fitting:
        raise exceptions.CommandError(
            'no flavor available to you has %d MB RAM, %d vCPUs and a root disk of at least %d GB, '
            'which base %s needs: give --flavor, or ask for such a flavor'
            % (need.memory_mb, need.vcpus, max(need.min_disk_gb, 1), need.base))
    return min(fitting, key=lambda f: (_extra_disks(f) > 0, f['disk'], _extra_disks(f), f['name'], f['id']))


def select(client, ref, disk_image):
    """The flavor for a server of `disk_image`: `ref` (checked when the base records its
    needs), else the smallest fitting one (cloudlet_osc.client.CloudletClient lists them).
    """
    if ref:
        flavor = client.find_flavor(ref)
        if props.MEMORY_MB in disk_image and props.VCPUS in disk_image:
            check(flavor, needs(disk_image))
        return flavor
    return choose(client.list_flavors(), needs(disk_image))
