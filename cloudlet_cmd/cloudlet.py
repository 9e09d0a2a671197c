"""`cloudlet`: the standalone engine command (no nova needed).

    cloudlet base capture DOMAIN --name NAME [--keep-running]
    cloudlet base list | inspect BASE | export BASE FILE | import FILE | delete BASE
    cloudlet overlay create --base BASE (--domain DOMAIN | --disk DISK --memory SAVE) -o FILE
                           [--key-file KEY | --new-key KEY]
    cloudlet overlay info SOURCE                                  (the header: no key needed)
    cloudlet overlay inspect|verify SOURCE [--key-file KEY]
    cloudlet overlay apply --base BASE SOURCE --out DIR [--key-file KEY]
    cloudlet synthesize --base BASE SOURCE --name NAME [--port HOST:GUEST ...] [--key-file KEY]
    cloudlet resume --base BASE --name NAME [--port HOST:GUEST ...]

BASE is a base id, a unique prefix of one, or a base name. SOURCE is a path or
an http(s) URL. KEY is a file of 32 raw bytes, the key of an encrypted overlay
(format version 2); --new-key writes a fresh one (mode 0600) and encrypts with
it. Errors print one line naming the problem and exit 1.
"""

import argparse
import collections
import json
import os
import sys

from cloudlet_engine import apply
from cloudlet_engine import basestore
from cloudlet_engine import basevm
from cloudlet_engine import codecs
from cloudlet_engine import crypto
from cloudlet_engine import errors
from cloudlet_engine import format as fmt
from cloudlet_engine import outbound
from cloudlet_engine import progress as progress_mod
from cloudlet_engine import source as sources

# This command fetches overlay URLs for the user who runs it, with that user's
# own network access: no outbound policy narrows it (the services' policy
# protects a cloud's hosts from its users; doc/outbound-policy.md).
FETCH_POLICY = outbound.OPEN

DEFAULT_STATE_DIR = os.environ.get('CLOUDLET_STATE_DIR', '/var/lib/openstack-cloudlet')


def _print_json(data):
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def resolve_base(store, ref):
    if os.path.isdir(ref):
        return basevm.BaseVM(ref)
    bases = store.list()
    matches = [b for b in bases if b.base_id == ref] or \
        [b for b in bases if b.base_id.startswith(ref)] or [b for b in bases if b.name == ref]
    if len(matches) != 1:
        raise errors.BaseVMError('%s base matches %r in %s' % ('no' if not matches else 'more than one',
                                                              ref, store.root))
    return matches[0]


def _ports(values):
    forwards = {}
    for value in values or ():
        host, _, guest = value.partition(':')
        if not (host.isdigit() and guest.isdigit()):
            raise errors.CloudletError('--port takes HOST:GUEST, got %r' % value)
        forwards[int(guest)] = int(host)
    return forwards


def cmd_base_capture(args, store, progress):
    from cloudlet_engine import capture
    from cloudlet_engine import hypervisor
    base = capture.capture_base(hypervisor.connect(), args.domain, store, args.name,
                                keep_running=args.keep_running, progress=progress)
    _print_json(base.describe())


def cmd_base_list(args, store, progress):
    _print_json([b.describe() for b in store.list()])


def cmd_base_inspect(args, store, progress):
    base = resolve_base(store, args.base)
    _print_json(dict(base.describe(), abi=base.abi, files=base.manifest['files']))


def cmd_base_export(args, store, progress):
    base = resolve_base(store, args.base)
    basevm.export_package(base, args.file, progress)
    _print_json({'base_id': base.base_id, 'package': args.file, 'bytes': os.path.getsize(args.file)})


def cmd_base_import(args, store, progress):
    _print_json(basevm.import_package(store, args.file, progress).describe())


def cmd_base_delete(args, store, progress):
    base = resolve_base(store, args.base)
    store.delete(base.base_id)
    _print_json({'deleted': base.base_id})


def _key(args):
    """The key of --key-file, or None."""
    path = getattr(args, 'key_file', None)
    return crypto.read_key_file(path) if path else None


def cmd_overlay_create(args, store, progress):
    base = resolve_base(store, args.base)
    if not args.domain and not (args.disk and args.memory):
        raise errors.CloudletError('give --domain, or both --disk and --memory')
    key = crypto.write_new_key_file(args.new_key) if args.new_key else _key(args)
    try:
        stats = _create_overlay(args, base, key, progress)
    except BaseException:
        if args.new_key:
            os.unlink(args.new_key)     # the key of no overlay
        raise
    _print_json(dict(vars(stats), changed_bytes=stats.changed_bytes, overlay=args.output,
                     encrypted=key is not None))


def _create_overlay(args, base, key, progress):
    from cloudlet_engine import create
    if args.domain:
        from cloudlet_engine import capture
        from cloudlet_engine import hypervisor
        return capture.capture_overlay(hypervisor.connect(), args.domain, base, args.output,
                                       args.codec, args.level, args.keep_running, progress, key=key)
    part = args.output + '.part'
    try:
        with open(part, 'xb') as out:
            stats = create.create_overlay(base, args.disk, args.memory, out, args.codec,
                                          args.level, progress,
                                          os.path.dirname(os.path.abspath(args.output)), key=key)
        os.replace(part, args.output)
    finally:
        if os.path.exists(part):
            os.unlink(part)
    return stats


def overlay_info(location):
    """An overlay's header: what anyone can read without the key."""
    with sources.open_overlay(location, policy=FETCH_POLICY) as stream:
        reader = fmt.OverlayReader(stream)
        return {'meta': reader.meta, 'version': reader.version, 'encrypted': reader.encrypted,
                'verified': False}


def cmd_overlay_info(args, store, progress):
    _print_json(overlay_info(args.source))


def inspect_overlay(location, key=None):
    """Read a whole overlay, verifying it; summarise its header and items.

    An encrypted overlay without its key: every check but the GCM tags, no items.
    """
    kinds = collections.Counter()
    codecs_used = collections.Counter()
    stored = raw = 0
    with sources.open_overlay(location, policy=FETCH_POLICY) as stream:
        reader = fmt.OverlayReader(stream, key=key)
        sealed = reader.encrypted and key is None
        for segment in reader.segments(sealed=sealed):
            if not sealed:
                items = fmt.decode_items(codecs.decompress(segment.codec, segment.items_stored,
                                                           segment.items_raw_len, 'items'),
                                         segment.item_count)
                kinds.update(item.kind for item in items)
            codecs_used['%s/%s' % (fmt.CODEC_NAMES[segment.codec], fmt.DELTA_NAMES[segment.delta])] += 1
            stored += segment.stored_size
            raw += segment.items_raw_len + segment.data_raw_len
        names = {v: k.lower() for k, v in vars(fmt).items() if k.startswith(('DISK_', 'MEM_'))
                 and isinstance(v, int)}
        return {'meta': reader.meta, 'version': reader.version, 'encrypted': reader.encrypted,
                'bytes': reader.position, 'segments': reader.segment_count,
                'segment_codecs': dict(codecs_used), 'segments_stored_bytes': stored,
                'segments_raw_bytes': raw, 'items': {names[k]: n for k, n in sorted(kinds.items())},
                'verified': 'checksums only: no key' if sealed else True}


def cmd_overlay_inspect(args, store, progress):
    _print_json(inspect_overlay(args.source, _key(args)))


def cmd_overlay_apply(args, store, progress):
    base = resolve_base(store, args.base)
    key = _key(args)
    with sources.open_overlay(args.source, policy=FETCH_POLICY) as stream:
        launch = apply.apply_overlay(base, stream, args.out, progress=progress, key=key)
    _print_json({'disk': launch.disk_path, 'memory': launch.memory_path,
                 'overlay_bytes': launch.overlay_bytes, 'restored_bytes': launch.restored_bytes,
                 'seconds': round(launch.seconds, 3)})


def _synthesize(args, store, progress, location):
    from cloudlet_engine import synthesis
    base = resolve_base(store, args.base)
    launch_dir = os.path.join(args.state_dir, 'instances', args.name)
    key = _key(args)
    result = synthesis.synthesize(base, location, launch_dir, args.name,
                                  port_forwards=_ports(args.port), progress=progress, key=key,
                                  policy=FETCH_POLICY)
    _print_json(vars(result))


def cmd_synthesize(args, store, progress):
    _synthesize(args, store, progress, args.source)


def cmd_resume(args, store, progress):
    _synthesize(args, store, progress, None)


def build_parser():
    parser = argparse.ArgumentParser(prog='cloudlet', description='VM synthesis on libvirt/QEMU')
    parser.add_argument('--state-dir', default=DEFAULT_STATE_DIR,
                        help='where bases and instances live (default %(default)s; env CLOUDLET_STATE_DIR)')
    parser.add_argument('-q', '--quiet', action='store_true', help='no progress output')
    top = parser.add_subparsers(dest='command', required=True)

    base = top.add_parser('base', help='base VMs').add_subparsers(dest='action', required=True)
    p = base.add_parser('capture', help='capture a running domain as a base VM')
    p.add_argument('domain')
    p.add_argument('--name', required=True)
    p.add_argument('--keep-running', action='store_true')
    p.set_defaults(func=cmd_base_capture)
    base.add_parser('list').set_defaults(func=cmd_base_list)
    for action, func in (('inspect', cmd_base_inspect), ('delete', cmd_base_delete)):
        p = base.add_parser(action)
        p.add_argument('base')
        p.set_defaults(func=func)
    p = base.add_parser('export', help='write a base VM package (zip)')
    p.add_argument('base')
    p.add_argument('file')
    p.set_defaults(func=cmd_base_export)
    p = base.add_parser('import', help='validate and cache a base VM package')
    p.add_argument('file')
    p.set_defaults(func=cmd_base_import)

    overlay = top.add_parser('overlay', help='VM overlays').add_subparsers(dest='action', required=True)
    p = overlay.add_parser('create', help='create an overlay from a VM resumed from a base')
    p.add_argument('--base', required=True)
    p.add_argument('--domain', help='running domain to capture (it stops unless --keep-running)')
    p.add_argument('--disk', help='changed disk: a qcow2 layer over the base disk, or raw')
    p.add_argument('--memory', help='libvirt save image of the changed VM')
    p.add_argument('-o', '--output', required=True)
    p.add_argument('--codec', default='zstd', choices=sorted(codecs.CODEC_BY_NAME))
    p.add_argument('--level', type=int)
    p.add_argument('--keep-running', action='store_true')
    keys = p.add_mutually_exclusive_group()
    keys.add_argument('--key-file', metavar='KEY', help='encrypt with the key in this file (32 raw bytes)')
    keys.add_argument('--new-key', metavar='KEY', help='write a new key to this file (mode 0600) and encrypt')
    p.set_defaults(func=cmd_overlay_create)
    p = overlay.add_parser('info', help="an overlay's header (readable without its key)")
    p.add_argument('source')
    p.set_defaults(func=cmd_overlay_info)
    p = overlay.add_parser('inspect', aliases=['verify'], help='verify an overlay and summarise it')
    p.add_argument('source')
    p.add_argument('--key-file', metavar='KEY', help='the key of an encrypted overlay')
    p.set_defaults(func=cmd_overlay_inspect)
    p = overlay.add_parser('apply', help='apply an overlay into launch files (no VM started)')
    p.add_argument('--base', required=True)
    p.add_argument('source')
    p.add_argument('--out', required=True)
    p.add_argument('--key-file', metavar='KEY', help='the key of an encrypted overlay')
    p.set_defaults(func=cmd_overlay_apply)

    for name, func, helptext in (('synthesize', cmd_synthesize, 'apply an overlay and resume the VM'),
                                 ('resume', cmd_resume, 'resume the base VM itself as a new VM')):
        p = top.add_parser(name, help=helptext)
        p.add_argument('--base', required=True)
        if name == 'synthesize':
            p.add_argument('source')
            p.add_argument('--key-file', metavar='KEY', help='the key of an encrypted overlay')
        p.add_argument('--name', required=True)
        p.add_argument('--port', action='append', metavar='HOST:GUEST',
                       help='forward 127.0.0.1:HOST to the guest port GUEST (repeatable)')
        p.set_defaults(func=func)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    store = basestore.BaseStore(os.path.join(args.state_dir, 'bases'))
    progress = progress_mod.NullProgress() if args.quiet else progress_mod.TerminalProgress()
    try:
        args.func(args, store, progress)
    except errors.CloudletError as exc:
        if hasattr(progress, 'close'):
            progress.close()
        print('cloudlet: error: %s' % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('cloudlet: interrupted', file=sys.stderr)
        return 130
    finally:
        if hasattr(progress, 'close'):
            progress.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
