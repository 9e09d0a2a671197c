"""The cloudlet API's own oslo.policy Enforcer.

nova's enforcer (`nova.policy._ENFORCER`) only knows nova's rules, and
`context.can('cloudlet:...')` would raise PolicyNotRegistered; registering
ours into it would reach into nova's private state and be undone by
`nova.policy.reset()`. So we keep a separate `oslo_policy.policy.Enforcer`
on nova's CONF: it reads the same `[oslo_policy]` options (policy_file,
policy_dirs, enforce_scope, enforce_new_defaults), so operators override
`cloudlet:*` rules in nova's policy.yaml as usual.

A denial raises `nova.exception.PolicyNotAuthorized` (a Forbidden), which
nova's `expected_errors` lets through and its fault handling turns into 403.
"""

import threading

from oslo_log import log as logging
from oslo_policy import policy

import nova.conf
from nova import exception

from api_extensions import policies

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

_ENFORCER = None
_LOCK = threading.Lock()


def _enforcer():
    """The process-wide enforcer, created (and its rules loaded) on first use."""
    global _ENFORCER
    if _ENFORCER is None:
        with _LOCK:
            if _ENFORCER is None:
                enforcer = policy.Enforcer(CONF)
                enforcer.suppress_default_change_warnings = True
                enforcer.register_defaults(policies.list_rules())
                enforcer.load_rules()
                _ENFORCER = enforcer
    return _ENFORCER


def reset():
    """Forget the enforcer (tests; a configuration reload)."""
    global _ENFORCER
    with _LOCK:
        if _ENFORCER is not None:
            _ENFORCER.clear()
        _ENFORCER = None


def set_rules(rules, overwrite=False):
    """Override rules in the running enforcer: {'cloudlet:...': 'check string'} (tests)."""
    enforcer = _enforcer()
    enforcer.set_rules(policy.Rules.from_dict(rules), overwrite=overwrite, use_conf=False)


def authorize(context, rule, target, do_raise=True):
    """Check `rule` for `context` on `target` (e.g. {'project_id': ...}).

    Raises nova.exception.PolicyNotAuthorized (-> HTTP 403) when denied and
    `do_raise`, else returns False. An unknown rule name is a programming
    error and raises oslo_policy.policy.PolicyNotRegistered.
    """
    try:
        return _enforcer().authorize(rule, target, context, do_raise=do_raise,
                                     exc=exception.PolicyNotAuthorized, action=rule)
    except policy.InvalidScope:
        LOG.debug('Policy check for %(rule)s failed the scope check for %(creds)s',
                  {'rule': rule, 'creds': context.to_policy_values()})
        if do_raise:
            raise exception.PolicyNotAuthorized(action=rule)
        return False


def get_enforcer():
    """For the oslopolicy-* command-line tools (entry point oslo.policy.enforcer).

    Like nova's, it parses the configuration (`--config-file` is handled by
    the tools themselves) when that has not been done yet. Never call it from
    a running service: use `authorize()`.
    """
    if getattr(CONF, '_args', None) is None:   # the tool has not parsed the configuration
        CONF([], project='nova')
    return _enforcer()
