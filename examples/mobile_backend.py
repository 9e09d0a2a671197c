#!/usr/bin/env python3
"""A mobile back end's journey with cloudlet_client (doc/client.md), timing each step.

    discover -> rank -> negotiate -> synthesize -> ACTIVE -> the app answers -> heartbeats -> release

Examples (the box: README, "Cloudlet in a box"; its cloudlets advertise themselves with cloudlet-advertise):

    # credentials per region from clouds.yaml; fall back to the cloud box-demo when no cloudlet answers
    examples/mobile_backend.py https://overlays.example/app.clo --cloud-for RegionOne=box-demo \
        --fallback box-demo --lease 120 --heartbeats 3

    # a local overlay file (uploaded to the chosen cloudlet's Glance first), an application credential
    # trusted on every cloudlet whose Keystone is in 10.20.0.0/16
    OS_APPLICATION_CREDENTIAL_ID=... OS_APPLICATION_CREDENTIAL_SECRET=... \
        examples/mobile_backend.py ./app.clo --trust 10.20.0.0/16 --app-port 8080

    # then move the app to another cloud (a clouds.yaml entry) before releasing it
    examples/mobile_backend.py ./app.clo --cloud-for RegionOne=box-demo --handoff-to box2-wan-demo

Exit status 0 when every step worked, 1 otherwise (the failing step is printed).
"""

import argparse
import logging
import os
import sys
import time

from cloudlet_client import credentials as credentials_mod
from cloudlet_client import discovery
from cloudlet_client import errors
from cloudlet_client import journey
from cloudlet_client import overlays
from cloudlet_client import ranking


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('overlay', help='an http(s) URL, a local overlay file, or an overlay image id')
    parser.add_argument('--name', default='mobile-app', help='the server name (default: mobile-app)')
    parser.add_argument('--app-port', type=int, default=8080, help="the app's TCP port (default: 8080)")
    parser.add_argument('--discover-timeout', type=float, default=2.0, help='seconds of DNS-SD browsing')
    parser.add_argument('--lease', type=int, default=120, help='lease length in seconds (default: 120)')
    parser.add_argument('--heartbeats', type=int, default=3, help='heartbeats to see before releasing')
    parser.add_argument('--heartbeat-interval', type=float, default=None,
                        help='seconds between heartbeats (default: a third of the lease)')
    parser.add_argument('--cloud-for', action='append', default=[], metavar='REGION=CLOUD',
                        help='authenticate on the cloudlets of REGION with the clouds.yaml cloud CLOUD')
    parser.add_argument('--trust', action='append', default=[], metavar='HOST',
                        help='send the application credential (OS_APPLICATION_CREDENTIAL_ID/_SECRET) to '
                             'cloudlets whose Keystone host matches (a pattern, an IP network, or *)')
    parser.add_argument('--fallback', metavar='CLOUD', help='clouds.yaml cloud to use when no cloudlet takes it')
    parser.add_argument('--no-floating-ip', action='store_true',
                        help="reach the app at the server's first address, without a floating IP")
    parser.add_argument('--handoff-to', metavar='CLOUD', help='before releasing, move the app to this '
                                                              'clouds.yaml cloud')
    parser.add_argument('--keep', action='store_true', help='leave the server running (and its lease)')
    parser.add_argument('-v', '--verbose', action='store_true')
    return parser.parse_args(argv)


def make_credentials(args):
    clouds = dict(item.split('=', 1) for item in args.cloud_for)
    auth = None
    if args.trust:
        auth = {'application_credential_id': os.environ.get('OS_APPLICATION_CREDENTIAL_ID'),
                'application_credential_secret': os.environ.get('OS_APPLICATION_CREDENTIAL_SECRET')}
        if not all(auth.values()):
            raise SystemExit('--trust needs OS_APPLICATION_CREDENTIAL_ID and OS_APPLICATION_CREDENTIAL_SECRET')
    return credentials_mod.Credentials(auth=auth, trusted_hosts=args.trust, clouds=clouds)


class Steps:
    """Prints each step with its duration."""

    def __init__(self):
        self.total = 0.0

    def run(self, name, action, describe=lambda result: ''):
        started = time.monotonic()
        try:
            result = action()
        except errors.ClientError as exc:
            print('%-12s %8.3f s  FAILED: %s' % (name, time.monotonic() - started, exc))
            raise
        seconds = time.monotonic() - started
        self.total += seconds
        print('%-12s %8.3f s  %s' % (name, seconds, describe(result)))
        return result


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    try:
        overlay = overlays.Overlay.parse(args.overlay)
    except errors.ClientError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 1
    credentials = make_credentials(args)
    steps = Steps()
    session = None
    try:
        found = steps.run('discover', lambda: discovery.browse(args.discover_timeout),
                          lambda c: '%d cloudlet(s): %s' % (len(c), ', '.join(x.name for x in c) or '-'))
        ranked = steps.run('rank', lambda: ranking.rank(found, base_id=overlay.base_id()),
                           lambda r: 'best: %s (%s ms, base %s)' % (
                               r[0].cloudlet.name, '%.1f' % (r[0].rtt * 1000) if r[0].rtt else '-',
                               {True: 'present', False: 'absent', None: 'unknown'}[r[0].has_base]) if r else '-')
        session = steps.run('negotiate', lambda: journey.choose(overlay, ranked, credentials, args.fallback),
                            lambda s: '%s%s: base image %s, flavor %s, estimated %s s' % (
                                s.cloud.name, ' (fallback)' if s.fallback else '', s.negotiation.base_image_id,
                                s.negotiation.flavor_id, s.negotiation.estimated_seconds))
        steps.run('synthesize', lambda: session.synthesize(overlay, args.name, lease_seconds=args.lease),
                  lambda server_id: 'server %s' % server_id)
        steps.run('active', session.wait_active, lambda server: server['status'])
        steps.run('address', lambda: session.app_address(floating=not args.no_floating_ip), str)
        steps.run('reachable', lambda: session.wait_reachable(args.app_port),
                  lambda _: '%s:%d answers' % (session.address, args.app_port))
        keeper = session.keep_alive(args.lease, interval=args.heartbeat_interval)

        def heartbeats():
            while keeper.beats < args.heartbeats and keeper.alive:
                time.sleep(0.1)
            if keeper.error:
                raise keeper.error
            return keeper.lease
        steps.run('heartbeats', heartbeats, lambda lease: '%d sent, lease until %s' % (
            keeper.beats, lease.expires_at if lease else '-'))
        if args.handoff_to:
            destination = credentials_mod.named_cloud(args.handoff_to)
            steps.run('handoff', lambda: session.handoff(destination),
                      lambda server: 'server %s on %s' % (server['id'], destination.name))
            steps.run('reachable', lambda: session.wait_reachable(args.app_port),
                      lambda _: '%s:%d answers' % (session.address, args.app_port))
        if args.keep:
            keeper.stop()
            print('kept: server %s on %s (its lease runs out unless renewed)' % (session.server_id,
                                                                              session.cloud.name))
            session = None
    except errors.ClientError:
        return 1
    finally:
        if session is not None:
            steps.run('release', session.release)
    print('%-12s %8.3f s' % ('total', steps.total))
    return 0


if __name__ == '__main__':
    sys.exit(main())
