"""Cloudlet in a box: a real single-node OpenStack with openstack-cloudlet.

MariaDB, RabbitMQ, Keystone, Glance, Placement, Neutron and Nova (nova-api
under uwsgi with our api-paste, conductor, scheduler, nova-compute running
CloudletDriver) on libvirtd + QEMU, all on this machine, started by hand
(there is no systemd). Run it through tools/box.sh.
"""
