"""Discovery by DNS-SD: `cloudlet-advertise`, a service beside nova (issue 12).

- capacity.py    what the advert says, read from the cloud as a service user: free RAM and
                 vCPUs from Placement, the base VMs' short ids from Glance, the cloudlet API
                 version from nova-api (GET /os-cloudlet), the public Keystone URL;
- advertiser.py  the loop: build the advert (cloudlet_engine/advert.py), register it with
                 python-zeroconf as <instance>._cloudlet._tcp.local., update it when it
                 changes, withdraw it on SIGTERM/SIGINT.

The console script is cloudlet_cmd/advertise.py; options are [cloudlet_discovery]
(cloudlet_nova/conf.py).
"""
