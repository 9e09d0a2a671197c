"""`openstack cloudlet ...`: the python-openstackclient plugin of openstack-cloudlet."""
