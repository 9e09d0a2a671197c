"""Create overlay, Create base and Hand off on the stock Instances table (project dashboard).

Horizon has no hook for a plugin's row actions on another panel's table, so
the app's ready() adds them to InstancesTable's options once, after Create
Snapshot: the table class is built at import time, so its `base_actions`
(the action instances) and `_meta.row_actions` (their order) both get them.
They show only on cloudlet servers (running on a base disk image) that are
ACTIVE with no task running, and only to users nova's policy allows.
"""

from django.utils.translation import gettext_lazy as _
from horizon import tables

from cloudlet_dashboard import api
from openstack_dashboard import policy


class _CloudletServerAction(policy.PolicyTargetMixin, tables.LinkAction):
    classes = ('ajax-modal',)

    def allowed(self, request, instance=None):
        return (instance is not None and instance.status == 'ACTIVE'
                and not getattr(instance, 'OS-EXT-STS:task_state', None)
                and api.is_cloudlet_server(request, instance))


class CreateOverlay(_CloudletServerAction):
    name = 'cloudlet_create_overlay'
    verbose_name = _('Create Overlay')
    url = 'horizon:project:cloudlet_servers:create_overlay'
    icon = 'camera'
    policy_rules = (('compute', 'cloudlet:create-overlay'),)


class CreateBase(_CloudletServerAction):
    name = 'cloudlet_create_base'
    verbose_name = _('Create Base VM')
    url = 'horizon:project:cloudlet_servers:create_base'
    icon = 'camera'
    policy_rules = (('compute', 'cloudlet:create-base'),)


class Handoff(_CloudletServerAction):
    name = 'cloudlet_handoff'
    verbose_name = _('Hand Off')
    url = 'horizon:project:cloudlet_servers:handoff'
    icon = 'share'
    policy_rules = (('compute', 'cloudlet:handoff'),)


ACTIONS = (CreateOverlay, CreateBase, Handoff)
AFTER = 'snapshot'      # Create Snapshot's name in InstancesTable


def add_to_instances_table(table=None):
    """Add ACTIONS to the Instances table's row actions (idempotent)."""
    if table is None:
        from openstack_dashboard.dashboards.project.instances import tables as instances_tables
        table = instances_tables.InstancesTable
    missing = [action for action in ACTIONS if action.name not in table.base_actions]
    if not missing:
        return
    for action in missing:
        table.base_actions[action.name] = action()
    row_actions = list(table._meta.row_actions)
    names = [action.name for action in row_actions]
    where = names.index(AFTER) + 1 if AFTER in names else len(row_actions)
    table._meta.row_actions = tuple(row_actions[:where] + missing + row_actions[where:])
