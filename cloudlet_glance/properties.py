"""Glance image property names and values: the one place they are spelled.

A base VM is four linked images (the names are OpenStack++'s, kept as they were):
the base disk carries the ids of its three companions, which are hidden; a
base that boots a kernel directly has two more hidden companions, its kernel
and ramdisk, named by nova's own kernel_id and ramdisk_id. An overlay is one
hidden image. Values are short strings (Glance v2 properties
are strings; nova keeps at most 255 characters of them in system_metadata).
"""

CLOUDLET_TYPE = 'cloudlet_type'
BASE_DISK = 'cloudlet_base_disk'
BASE_MEMORY = 'cloudlet_base_memory'
BASE_DISK_HASH = 'cloudlet_base_disk_hash'
BASE_MEMORY_HASH = 'cloudlet_base_memory_hash'
BASE_KERNEL = 'cloudlet_base_kernel'      # boot companions: only for a direct kernel boot
BASE_RAMDISK = 'cloudlet_base_ramdisk'
OVERLAY = 'cloudlet_overlay'
TYPES = (BASE_DISK, BASE_MEMORY, BASE_DISK_HASH, BASE_MEMORY_HASH, BASE_KERNEL, BASE_RAMDISK, OVERLAY)
COMPANION_TYPES = (BASE_MEMORY, BASE_DISK_HASH, BASE_MEMORY_HASH)
BOOT_COMPANION_TYPES = (BASE_KERNEL, BASE_RAMDISK)

# The base disk image holds each companion's image id under the companion's
# type: disk_image[BASE_MEMORY] is the id of the memory image.
BASE_ID = 'cloudlet_base_id'              # on every image of a base and on overlays
BASE_NAME = 'cloudlet_base_name'
ABI_DIGEST = 'cloudlet_abi_digest'        # on the base disk
MEMORY_MB = 'cloudlet_memory_mb'          # what a flavor must match (base disk)
VCPUS = 'cloudlet_vcpus'
MACHINE = 'cloudlet_machine'
FORMAT_VERSION = 'cloudlet_format_version'
CODEC = 'cloudlet_codec'                  # on an overlay's target image: zstd or xz, chosen by the client
MEMORY_BLOCKS = 'cloudlet_memory_blocks'  # comma-separated RAM block names (base memory hash image)

# Schedules instances of base images onto cloudlet hosts only.
TRAIT = 'CUSTOM_CLOUDLET_V1'
TRAIT_PROPERTY = 'trait:%s' % TRAIT
# A compute host's provider has one per base disk image whose base it holds
# (CloudletDriver.update_provider_tree): the scheduler's base weigher prefers them.
CACHED_IMAGE_TRAIT_PREFIX = 'CUSTOM_CLOUDLET_IMAGE_'

# Server metadata keys read by the driver at spawn.
META_OVERLAY_URL = 'overlay_url'
META_OVERLAY_ID = 'cloudlet_overlay_id'
HANDOFF_ID = 'cloudlet_handoff_id'       # server metadata and residue image property of a handoff
# An encrypted overlay's key: the key manager's (Barbican's) id of an AES-256
# key, in the server metadata or on the overlay image (doc/trust.md).
OVERLAY_KEY_ID = 'cloudlet_overlay_key_id'
# A signed overlay: nova's (and Glance's) names for a signed image, on the
# overlay image or, for an overlay_url, in the server metadata (doc/trust.md).
SIGNATURE = 'img_signature'
SIGNATURE_HASH_METHOD = 'img_signature_hash_method'
SIGNATURE_KEY_TYPE = 'img_signature_key_type'
SIGNATURE_CERTIFICATE = 'img_signature_certificate_uuid'
SIGNATURE_PROPERTIES = (SIGNATURE, SIGNATURE_HASH_METHOD, SIGNATURE_KEY_TYPE, SIGNATURE_CERTIFICATE)
# A leased server (cloudlet_nova/leases): its lease length, set by the user at
# create or by a heartbeat, and when it runs out, set by the API.
META_LEASE_SECONDS = 'cloudlet_lease_seconds'
META_LEASE_EXPIRES_AT = 'cloudlet_lease_expires_at'


def system_metadata_key(prop):
    """nova copies image properties into instance.system_metadata as image_<key>."""
    return 'image_' + prop


def is_cloudlet_instance(instance):
    """Was the server booted from (synthesized or resumed on) a base VM's disk image?"""
    sysmeta = instance.system_metadata or {}
    return sysmeta.get(system_metadata_key(CLOUDLET_TYPE)) == BASE_DISK


# Standard Glance/nova names the model sets or filters on (spelled here too, so
# that every name the model writes comes from this module).
HW_MACHINE_TYPE = 'hw_machine_type'   # nova's own image property (base disk)
# nova's own image properties of an AMI-style image (base disk): nova fetches
# these images into the instance directory and boots them with this command line.
KERNEL_ID = 'kernel_id'
RAMDISK_ID = 'ramdisk_id'
OS_COMMAND_LINE = 'os_command_line'
NO_KERNEL = 'nokernel'                # kernel_id value meaning "none" to nova
MIN_RAM = 'min_ram'                   # Glance image attributes (integers, not extra
MIN_DISK = 'min_disk'                 # properties): MB and GiB
OS_HIDDEN = 'os_hidden'               # Glance attribute; also the list filter for hidden images


def cached_image_trait(image_id):
    """The trait of a host that holds the base of image `image_id` (Placement: [A-Z0-9_])."""
    return CACHED_IMAGE_TRAIT_PREFIX + ''.join(c if c.isalnum() else '_' for c in image_id.upper())
