"""The client library for mobile back ends: find a nearby cloudlet, run an app there, keep it, move it.

Importable on its own (openstacksdk, keystoneauth1, zeroconf, the engine's
overlay reader); doc/client.md describes the API and the journey, and
examples/mobile_backend.py runs it.

    discovery   browse DNS-SD (_cloudlet._tcp) for the cloudlets on the link
    ranking     order them: base present, capacity, round-trip time
    credentials how to authenticate on a cloudlet that was discovered (and on the fallback cloud)
    cloud       one cloud's HTTP API: compute (stock and cloudlet calls), images, floating IPs
    overlays    what an overlay is (URL, Glance image, local file) and its negotiation request;
                encrypting an overlay file on the device
    keys        the cloud's key manager: overlay keys, signing certificates (Signer)
    session     CloudletSession: negotiate, synthesize, wait, lease, hand off, release
    lease       the lease and the thread that keeps it alive
    reach       wait until an app answers on a TCP port
    journey     discover -> rank -> negotiate, falling back to a configured cloud
    errors      what the library raises
"""
