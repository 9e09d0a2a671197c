"""Leases: soft state for servers (the device keeps its VM while it is near).

- lease.py   the rules: a lease length a user may ask for, when a lease runs out (no nova imports);
- reaper.py  `cloudlet-reaper`: deletes the servers whose lease ran out, through nova's API.

The state lives in the server's metadata (cloudlet_glance.properties
META_LEASE_SECONDS, META_LEASE_EXPIRES_AT), set by the API
(api_extensions/leases.py): nothing is lost when a process stops.
"""
