"""Several compute hosts: pre-cache per host, a resume on a host with and without the base,
eight resumes at once against one alone.

On the box's two compute hosts (tools/box.sh up; doc/multi-host.md), as its
admin, with servers placed on a named host (microversion 2.74 `host`) and no
network (what is timed is the restore, not the ports):

1. **Pre-cache per host**: the base removed from the second host's store by
   hand (as bench/handoff_bench.py does on box2), then nova's aggregate image
   pre-cache on the aggregate `cloudlet`; each host's time is from the POST to
   its `aggregate.cache_images.progress` notification. The first host holds
   the base already: its time is nova's round trip, the baseline.
2. **Resume, cached against uncached host**: the base is resumed (no overlay:
   the fetch is what differs) on the first host, which holds it, and on the
   second after the base was removed from it again; time to ACTIVE.
3. **Eight at once**: eight resumes, four on each host (both holding the
   base), against one alone measured just before; time until all are ACTIVE.

The base is the handoff scene's (`handoff-base`, captured on first use).
Ratios are of one run; the machine's speed varies from day to day.

    PYTHONPATH=.:tools /opt/openstack-cloudlet/venv/bin/python bench/hosts_bench.py [--report FILE]
"""

import argparse
import concurrent.futures
import shutil
import sys
import time

from cloudlet_box import cloud
from cloudlet_box import handoff_scene
from cloudlet_box import layout
from cloudlet_box import notifications
from cloudlet_box import resources
from cloudlet_glance import properties as props


def log(message):
    print('[hosts-bench] %s' % message, file=sys.stderr, flush=True)


def evict(box, host_name, base_id):
    path = box.host_files(host_name).state_dir / 'bases' / base_id
    if path.is_dir():
        shutil.rmtree(path)
        log('  base %s removed from %s' % (base_id[:12], host_name))


def resume(admin, image_id, host, tag):
    """Seconds from POST /servers to ACTIVE of the base resumed on `host`; the server is deleted."""
    started = time.monotonic()
    server_id = cloud.create_server(admin, 'bench-hosts-%s' % tag, image_id, networks='none', host=host)
    try:
        server = cloud.wait_server(admin, server_id, timeout=900)
        if server.status != 'ACTIVE':
            raise cloud.CloudError('%s: %s' % (tag, server.fault))
        return time.monotonic() - started
    finally:
        cloud.delete_server(admin, server_id)


def at_once(admin, image_id, hosts, count):
    """Seconds until `count` resumes (spread over `hosts`) are all ACTIVE."""
    made, started = [], time.monotonic()
    try:
        for i in range(count):
            made.append(cloud.create_server(admin, 'bench-hosts-%d' % i, image_id, networks='none',
                                            host=hosts[i % len(hosts)]))
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            states = list(pool.map(lambda s: cloud.wait_server(admin, s, timeout=900).status, made))
        if states != ['ACTIVE'] * count:
            raise cloud.CloudError('not all ACTIVE: %s' % states)
        return time.monotonic() - started
    finally:
        for server_id in made:
            cloud.delete_server(admin, server_id)


def precache(box, admin, aggregate, image_id, hosts):
    """{host: seconds from the POST to its progress notification}."""
    with notifications.Listener(box, 'aggregate.cache_images.progress',
                                where={'uuid': aggregate.uuid}) as events:
        started = time.monotonic()
        answer = admin.compute.post('/os-aggregates/%s/images' % aggregate.id,
                                    json={'cache': [{'id': image_id}]}, microversion='2.81')
        if answer.status_code != 202:
            raise cloud.CloudError('pre-cache: HTTP %d %s' % (answer.status_code, answer.text[:300]))
        reports = events.wait_for_hosts(hosts, timeout=900)
        for host in hosts:
            if reports[host]['images_cached'] != [image_id]:
                raise cloud.CloudError('pre-cache on %s: %s' % (host, reports[host]))
        return {host: events.arrived[host] - started for host in hosts}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--report', help='also write the table to this file')
    args = parser.parse_args(argv)
    box = layout.named('box')
    if not box.compute_hosts:
        parser.error('box %s has one compute host' % box.name)
    admin, demo = cloud.connect('box-admin'), cloud.connect('box-demo')
    second = box.compute_hosts[0].name
    first = next(s.host for s in admin.compute.services(binary='nova-compute') if s.host != second)
    image = handoff_scene.box_base(demo, log=log)
    image_id, base_id = image['id'], image[props.BASE_ID]
    aggregate = next(a for a in admin.compute.aggregates() if a.name == resources.AGGREGATE)

    log('warm-up: the base on %s' % first)
    resume(admin, image_id, first, 'warm')
    evict(box, second, base_id)
    log('pre-cache on aggregate %s (%s holds the base, %s does not)' % (aggregate.name, first, second))
    cached_in = precache(box, admin, aggregate, image_id, [first, second])
    log('resume on %s (holds the base)' % first)
    cached = resume(admin, image_id, first, 'cached')
    evict(box, second, base_id)
    log('resume on %s (base removed)' % second)
    uncached = resume(admin, image_id, second, 'uncached')
    log('one resume alone, then eight at once on both hosts')
    one = at_once(admin, image_id, [first], 1)
    eight = at_once(admin, image_id, [first, second], 8)

    rows = [
        ('pre-cache, host holding the base (%s)' % first, cached_in[first], 1.0),
        ('pre-cache, host fetching the base (%s)' % second, cached_in[second], cached_in[second] / cached_in[first]),
        ('resume, host holding the base', cached, 1.0),
        ('resume, host fetching the base', uncached, uncached / cached),
        ('one resume alone', one, 1.0),
        ('eight resumes at once, 4 per host', eight, eight / one),
    ]
    lines = ['| measurement | seconds | ratio |', '|---|---|---|']
    lines += ['| %s | %.1f | %.2f |' % row for row in rows]
    text = '\n'.join(lines)
    print(text)
    if args.report:
        with open(args.report, 'w') as f:
            f.write(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
