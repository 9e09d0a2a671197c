#!/usr/bin/env bash
# Cloudlet in a box: a real single-node OpenStack (MariaDB, RabbitMQ, Keystone,
# Glance, Placement, Neutron, Nova with CloudletDriver) on this machine.
#   tools/box.sh up        set the machine up (tools/setup.sh + the services' packages), then bring
#                          the cloud up; idempotent; prints the time of each step
#   tools/box.sh stop      stop the box's daemons (data kept; `up` restarts them)
#   tools/box.sh status    which daemons run, where their logs are
#   tools/box.sh logs [S]  the log directory, or the end of service S's log
#   tools/box.sh destroy   stop, and delete the box's databases, data and logs
# CLOUDLET_BOX names the box (default `box`); CLOUDLET_BOX_PORT_OFFSET shifts its ports.
# A box with an offset (the second test cloud:
#   CLOUDLET_BOX=box2 CLOUDLET_BOX_PORT_OFFSET=100 tools/box.sh up)
# runs its own libvirtd in a mount namespace and publishes its endpoints through
# an emulated WAN path (PYTHONPATH=tools python -m cloudlet_box.wan status).
# CLOUDLET_SETUP_DONE=1 skips tools/setup.sh (tools/test.sh has just run it).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${CLOUDLET_VENV:-/opt/openstack-cloudlet/venv}
STAMP_DIR=${CLOUDLET_CACHE:-/var/cache/openstack-cloudlet}
command=${1:-status}

if [ "$command" = up ]; then
  [ -n "${CLOUDLET_SETUP_DONE:-}" ] || "$here/tools/setup.sh"
  # shellcheck source=tools/lib/ensure.sh
  . "$here/tools/lib/ensure.sh"
  # openvswitch-switch: the userspace datapath; dnsmasq-base: the DHCP agent;
  # dnsmasq-utils: dhcp_release; iptables, conntrack, iputils-arping: the L3 agent (NAT, floating IPs);
  # haproxy: the routers' metadata proxy; openssh-server: cold migration into a further compute host
  ensure_debian_packages box mariadb-server mariadb-client rabbitmq-server \
    openvswitch-switch dnsmasq-base dnsmasq-utils iptables conntrack iputils-arping haproxy \
    openssh-server
  ensure_box_requirements "$here" "$VENV" "$STAMP_DIR"
fi
cd "$here/tools"
PYTHONPATH="$here/tools" exec "$VENV/bin/python" -m cloudlet_box "$@"
