"""Which cloudlet first: the one that holds the base, has room for the app, and answers soonest.

The order (best first):

1. cloudlets whose Keystone answered (a TCP connect within `timeout`);
2. with a base in mind: those that advertise it, then those that may hold it
   (their advert's base list was cut: `bases_more`), then the others;
3. with a size in mind (`memory_mb`, `vcpus`): those whose advertised free RAM
   and vCPUs fit it;
4. the shortest round-trip time (the best of `samples` TCP connects to the
   Keystone URL's host and port: one handshake is one round trip).

The advert is a hint (the negotiation is what counts), so nothing is dropped
here: a cloudlet that did not answer is ranked last with `rtt=None`.
"""

import concurrent.futures
import dataclasses
import socket
import time
import urllib.parse

from cloudlet_client import discovery

RTT_TIMEOUT = 1.0
RTT_SAMPLES = 3
clock = time.perf_counter


def measure_rtt(url, samples=RTT_SAMPLES, timeout=RTT_TIMEOUT):
    """The shortest TCP connect time to the host and port of `url`, in seconds; None if none connected."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    address = (parts.hostname, discovery.url_port(url))
    best = None
    for _ in range(samples):
        started = clock()
        try:
            with socket.create_connection(address, timeout=timeout):
                elapsed = clock() - started
        except (OSError, ValueError):
            continue
        best = elapsed if best is None else min(best, elapsed)
    return best


@dataclasses.dataclass(frozen=True)
class Ranked:
    """A cloudlet with what ranked it."""
    cloudlet: discovery.Cloudlet
    rtt: float = None          # seconds; None: its Keystone did not answer
    has_base: bool = None      # True, False, or None: unknown (no base asked, or its list was cut)
    fits: bool = None          # None: no size asked

    def sort_key(self):
        base_order = {True: 0, None: 1, False: 2}[self.has_base]
        return (self.rtt is None, base_order, self.fits is False,
                self.rtt if self.rtt is not None else 0.0, self.cloudlet.name)


def base_presence(cloudlet, base_id):
    """True (advertised), None (may be there: the list was cut, or no base asked), False."""
    if not base_id:
        return None
    if cloudlet.holds(base_id):
        return True
    return None if cloudlet.advert.bases_more else False


def capacity_fits(cloudlet, memory_mb=None, vcpus=None):
    if memory_mb is None and vcpus is None:
        return None
    return (cloudlet.advert.free_ram_mb >= (memory_mb or 0)
            and cloudlet.advert.free_vcpus >= (vcpus or 0))


def rank(cloudlets, base_id=None, memory_mb=None, vcpus=None, probe=None, workers=8):
    """[Ranked], best first (see the module doc). `probe(url)` measures a round-trip time (measure_rtt)."""
    probe = probe or measure_rtt
    cloudlets = list(cloudlets)
    if not cloudlets:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(cloudlets))) as pool:
        rtts = list(pool.map(lambda c: probe(c.keystone_url), cloudlets))
    ranked = [Ranked(c, rtt, base_presence(c, base_id), capacity_fits(c, memory_mb, vcpus))
              for c, rtt in zip(cloudlets, rtts)]
    return sorted(ranked, key=Ranked.sort_key)
