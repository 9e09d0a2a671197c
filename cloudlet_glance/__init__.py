"""The Glance model of openstack-cloudlet: base VMs as linked images, overlays as images."""
