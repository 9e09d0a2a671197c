"""VM handoff between clouds (doc/handoff.md).

The source side:

- rpc.py          the `cloudlet` RPC topic: nova-api casts `handoff` to the instance's host
                  (and relays a residue to a destination's host, below);
- sender.py       the orchestration on the compute host (destination checks, residue, switch,
                  roll back);
- records.py      `<[cloudlet] state_dir>/handoffs/<handoff id>.json`, without secrets;
- destination.py  the destination cloud through keystoneauth (no nova imports);
- upload.py       the residue's streaming upload into the destination server;
- credentials.py  the destination credential in the key manager while a handoff runs;
- remote.py       what the API and the CLI share with them: the error, the Keystone URL,
                  the credential values to redact;
- addresses.py    the server's floating IPs across the switch.

The receiving side (this cloud as a destination): nova-api's
api_extensions/residue.py relays the residue to the spawning server's host,
where

- inbox.py        takes it, for the spawn (cloudlet_nova.virt.launch) to apply as it arrives.
"""
