"""api_extensions.policies / api_extensions.policy: defaults, enforcement, the sample file."""

import os
from unittest import mock

from oslo_config import cfg
from oslo_policy import generator
from oslo_policy import policy as oslo_policy
import pytest

from nova import context as nova_context
from nova import exception

from api_extensions import policies
from api_extensions import policy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# oslo.policy reads is_admin from the credentials; nova filters this warning the same way.
pytestmark = pytest.mark.filterwarnings("ignore:Policy enforcement is depending on the value of is_admin")

PROJECT, OTHER = 'p' * 32, 'o' * 32


@pytest.fixture(autouse=True)
def fresh_enforcer():
    # A parsed configuration of our own (no policy file): nova's global CONF is
    # not parsed in unit tests, and oslo.policy needs a parsed one to load rules.
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[], default_config_dirs=[])
    policy.reset()
    with mock.patch.object(policy, 'CONF', conf):
        yield
    policy.reset()


def ctx(roles, project=PROJECT):
    # is_admin given: else nova asks its own (unconfigured here) enforcer.
    return nova_context.RequestContext('user', project, roles=list(roles), is_admin='admin' in roles)


def test_rules_are_documented_and_project_scoped():
    names = [rule.name for rule in policies.list_rules()]
    assert len(names) == len(set(names))
    assert set(names) >= {'cloudlet:create-base', 'cloudlet:create-overlay', 'cloudlet:handoff',
                          'cloudlet:handoff:receive', 'cloudlet:discover',
                          'cloudlet:base:import', 'cloudlet:base:show', 'cloudlet:base:list',
                          'cloudlet:base:delete'}
    for rule in policies.list_rules():
        assert isinstance(rule, oslo_policy.DocumentedRuleDefault)
        assert rule.scope_types == ['project']
        assert rule.operations and rule.description


@pytest.mark.parametrize('rule', [policies.CREATE_BASE, policies.CREATE_OVERLAY,
                                  policies.HANDOFF, policies.HANDOFF_RECEIVE,
                                  policies.BASE_IMPORT, policies.BASE_DELETE,
                                  policies.NEGOTIATE])
def test_member_rules(rule):
    target = {'project_id': PROJECT}
    assert policy.authorize(ctx(['reader', 'member']), rule, target)
    assert policy.authorize(ctx(['admin'], project=OTHER), rule, target)
    for denied in (ctx(['reader']), ctx(['member'], project=OTHER), ctx([])):
        with pytest.raises(exception.PolicyNotAuthorized):
            policy.authorize(denied, rule, target)
        assert policy.authorize(denied, rule, target, do_raise=False) is False


@pytest.mark.parametrize('rule', [policies.BASE_SHOW, policies.BASE_LIST])
def test_reader_rules(rule):
    assert policy.authorize(ctx(['reader']), rule, {'project_id': PROJECT})
    with pytest.raises(exception.PolicyNotAuthorized):
        policy.authorize(ctx(['reader'], project=OTHER), rule, {'project_id': PROJECT})


def test_admin_only_rules():
    for rule in (policies.BASE_IMPORT_PUBLIC, policies.BASE_LIST_ALL_PROJECTS):
        assert policy.authorize(ctx(['admin']), rule, {'project_id': PROJECT})
        assert not policy.authorize(ctx(['member']), rule, {'project_id': PROJECT}, do_raise=False)


def test_discover_any_authenticated_user():
    assert policy.authorize(ctx(['other']), policies.DISCOVER, {'project_id': PROJECT})


def test_forbidden_is_a_403_for_nova():
    with pytest.raises(exception.Forbidden) as info:
        policy.authorize(ctx([]), policies.CREATE_BASE, {'project_id': PROJECT})
    assert info.value.code == 403
    assert 'cloudlet:create-base' in str(info.value)


def test_set_rules_overrides():
    policy.set_rules({policies.DISCOVER: '!'})
    with pytest.raises(exception.PolicyNotAuthorized):
        policy.authorize(ctx(['admin']), policies.DISCOVER, {'project_id': PROJECT})
    policy.reset()
    assert policy.authorize(ctx(['admin']), policies.DISCOVER, {'project_id': PROJECT})


def test_unknown_rule_is_a_bug():
    with pytest.raises(oslo_policy.PolicyNotRegistered):
        policy.authorize(ctx(['admin']), 'cloudlet:nope', {'project_id': PROJECT})


def test_get_enforcer_for_the_tools(tmp_path):
    # The tools hand over a parsed configuration or none; an own ConfigOpts keeps
    # nova's global CONF out of this.
    conf = cfg.ConfigOpts()
    policy.reset()
    with mock.patch.object(policy, 'CONF', conf):
        enforcer = policy.get_enforcer()
        assert conf._args == []   # parsed by get_enforcer
        assert policies.CREATE_OVERLAY in enforcer.registered_rules


def test_sample_file_is_current(tmp_path):
    # What `oslopolicy-sample-generator --config-file etc/cloudlet-policy-generator.conf`
    # writes once the oslo.policy.policies entry point is installed.
    out = tmp_path / 'policy.yaml.sample'
    with mock.patch.object(generator, 'get_policies_dict',
                           lambda namespaces: {'openstack-cloudlet': policies.list_rules()}):
        generator.generate_sample(
            args=['--config-file', os.path.join(REPO, 'etc', 'cloudlet-policy-generator.conf'),
                  '--output-file', str(out)],
            conf=cfg.ConfigOpts())
    with open(os.path.join(REPO, 'etc', 'nova', 'policy.yaml.sample')) as f:
        assert out.read_text() == f.read()
