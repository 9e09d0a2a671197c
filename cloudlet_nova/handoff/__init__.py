"""VM handoff between clouds, source side (doc/handoff.md).

- rpc.py          the `cloudlet` RPC topic: nova-api casts `handoff` to the instance's host;
- sender.py       the orchestration on the compute host (destination checks, residue, switch,
                  roll back);
- records.py      `<[cloudlet] state_dir>/handoffs/<handoff id>.json`, without secrets;
- destination.py  the destination cloud through keystoneauth (no nova imports);
- upload.py       the residue's streaming upload into the destination's Glance;
- remote.py       what the API and the CLI share with them: the error, the Keystone URL,
                  the credential values to redact;
- addresses.py    the server's floating IPs across the switch.
"""
