"""The deployment's outbound policy and URL rules, from its configuration: one home for every caller.

nova-api (base package imports, the negotiation) and the compute hosts
(overlay_url, handoff destinations) build the policy here, from [cloudlet]
outbound_allowed_hosts and outbound_allowed_networks (cloudlet_engine.outbound
holds the policy itself, doc/outbound-policy.md the operator's view).
"""

from cloudlet_engine import outbound
from cloudlet_engine import urls


def policy(conf):
    """The outbound Policy of `conf` (nova's CONF, [cloudlet] registered).

    Reading the options validates them: a bad CIDR raises oslo.config's
    ConfigFileValueError, which names the option.
    """
    return outbound.Policy(allowed_hosts=conf.cloudlet.outbound_allowed_hosts,
                           allowed_networks=conf.cloudlet.outbound_allowed_networks)


def check_url(conf, url, what='URL'):
    """A URL a user gave for a service to fetch (overlay, base package): parsed, or URLNotAllowed.

    First the outbound policy on an IP address literal (no DNS), so that
    169.254.169.254 is "refused by policy" whatever the other rules say;
    then the schemes and [cloudlet] overlay_url_allowed_hosts
    (urls.check_url); last the policy on the addresses the host name
    resolves to (outbound.Refused). The fetch checks the addresses again
    when it connects: this check only refuses early, with a clear message.
    """
    guard = policy(conf)
    guard.check_url(url, what, resolve=False)
    parsed = urls.check_url(url, conf.cloudlet.overlay_url_schemes, conf.cloudlet.overlay_url_allowed_hosts,
                            what=what)
    guard.check_url(url, what)
    return parsed
