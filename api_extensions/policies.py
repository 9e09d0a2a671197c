"""Default policy rules of the cloudlet API (oslo.policy, documented in code).

`list_rules()` feeds `oslopolicy-sample-generator --namespace openstack-cloudlet`
(entry point `oslo.policy.policies`); the enforcer is in `api_extensions.policy`.
The check strings are self-contained (no `rule:` references to nova's base
rules, which live in nova's enforcer, not ours) and follow nova's defaults:
project members act on their project's resources, readers read them, admins
do everything.
"""

from oslo_policy import policy

PREFIX = 'cloudlet:%s'

CREATE_BASE = PREFIX % 'create-base'
CREATE_OVERLAY = PREFIX % 'create-overlay'
HANDOFF = PREFIX % 'handoff'
HANDOFF_RECEIVE = PREFIX % 'handoff:receive'
LEASE = PREFIX % 'lease'
DISCOVER = PREFIX % 'discover'
BASE_IMPORT = PREFIX % 'base:import'
BASE_IMPORT_PUBLIC = PREFIX % 'base:import:public'
BASE_SHOW = PREFIX % 'base:show'
BASE_LIST = PREFIX % 'base:list'
BASE_LIST_ALL_PROJECTS = PREFIX % 'base:list:all_projects'
BASE_DELETE = PREFIX % 'base:delete'
NEGOTIATE = PREFIX % 'negotiate'

ADMIN = 'role:admin'
ADMIN_OR_MEMBER = 'role:admin or (role:member and project_id:%(project_id)s)'
ADMIN_OR_READER = 'role:admin or (role:reader and project_id:%(project_id)s)'
ANY_AUTHENTICATED = '@'   # keystonemiddleware has already authenticated the caller

_ACTION_PATH = '/servers/{server_id}/action (%s)'
_BASES = '/os-cloudlet/bases'
_BASE = '/os-cloudlet/bases/{base_import_id}'

rules = [
    policy.DocumentedRuleDefault(
        name=CREATE_BASE,
        check_str=ADMIN_OR_MEMBER,
        description='Capture a server as a base VM (memory snapshot and disk) through the '
                    'snapshot path; creates the base disk image and its companion images.',
        operations=[{'method': 'POST', 'path': _ACTION_PATH % 'cloudlet-create-base'},
                    {'method': 'POST', 'path': _ACTION_PATH % 'cloudlet-base'}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=CREATE_OVERLAY,
        check_str=ADMIN_OR_MEMBER,
        description='Capture a VM overlay (its difference from its base VM) of a server '
                    'synthesized or resumed from a base VM.',
        operations=[{'method': 'POST', 'path': _ACTION_PATH % 'cloudlet-create-overlay'}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=HANDOFF,
        check_str=ADMIN_OR_MEMBER,
        description='Hand a running cloudlet server off to another OpenStack cloud: its residue '
                    'streams into the destination server as it builds there, '
                    'and this server is deleted once the destination server is ACTIVE.',
        operations=[{'method': 'POST', 'path': _ACTION_PATH % 'cloudlet-handoff'}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=HANDOFF_RECEIVE,
        check_str=ADMIN_OR_MEMBER,
        description='Be the destination of a handoff: another cloud, acting with this project\'s '
                    'credential, asks whether the server it created here is ready and streams the '
                    'residue into it.',
        operations=[{'method': 'GET', 'path': '/servers/{server_id}/cloudlet-residue'},
                    {'method': 'PUT', 'path': '/servers/{server_id}/cloudlet-residue'}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=LEASE,
        check_str=ADMIN_OR_MEMBER,
        description='Renew a server\'s lease (cloudlet-heartbeat), or start one or change its '
                    'length with "seconds". A server whose lease has run out is deleted by '
                    'cloudlet-reaper after the grace period.',
        operations=[{'method': 'POST', 'path': _ACTION_PATH % 'cloudlet-heartbeat'}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=DISCOVER,
        check_str=ANY_AUTHENTICATED,
        description='Read the cloudlet API discovery document (version, actions, limits).',
        operations=[{'method': 'GET', 'path': '/os-cloudlet'}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=BASE_IMPORT,
        check_str=ADMIN_OR_MEMBER,
        description='Import a base VM package from a URL into Glance, in the background.',
        operations=[{'method': 'POST', 'path': _BASES}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=BASE_IMPORT_PUBLIC,
        check_str=ADMIN,
        description='Import a base VM package with visibility "public". Glance\'s own '
                    'publicize_image rule applies as well.',
        operations=[{'method': 'POST', 'path': _BASES}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=BASE_SHOW,
        check_str=ADMIN_OR_READER,
        description='Show a base VM import record (status, progress, error, image ids).',
        operations=[{'method': 'GET', 'path': _BASE}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=BASE_LIST,
        check_str=ADMIN_OR_READER,
        description="List the base VM import records of the caller's project.",
        operations=[{'method': 'GET', 'path': _BASES}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=BASE_LIST_ALL_PROJECTS,
        check_str=ADMIN,
        description='See the base VM import records of every project (list, show, delete).',
        operations=[{'method': 'GET', 'path': _BASES},
                    {'method': 'GET', 'path': _BASE},
                    {'method': 'DELETE', 'path': _BASE}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=BASE_DELETE,
        check_str=ADMIN_OR_MEMBER,
        description='Delete a finished base VM import record; for an active import, also '
                    'delete the base VM\'s Glance images (base disk and companions).',
        operations=[{'method': 'DELETE', 'path': _BASE}],
        scope_types=['project']),
    policy.DocumentedRuleDefault(
        name=NEGOTIATE,
        check_str=ADMIN_OR_MEMBER,
        description='Ask whether this cloud can run an overlay (given its header or its URL): '
                    'the base image and flavor it would use, or why not, and an estimate of '
                    'the synthesis time.',
        operations=[{'method': 'POST', 'path': '/os-cloudlet/negotiate'}],
        scope_types=['project']),
]


def list_rules():
    return rules
