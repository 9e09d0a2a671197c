"""The commands of `openstack cloudlet` (command group openstack.cloudlet.v1)."""
