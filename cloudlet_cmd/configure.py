"""`cloudlet-configure`: plug openstack-cloudlet into an installed nova 34.

    cloudlet-configure nova --config-file NOVA_CONF [--role compute|api|all]
        [--api-paste PATH] [--virt-type qemu|kvm] [--state-dir DIR]
        [--set SECTION.OPTION=VALUE ...] [--force] [--check]

These are THE configuration steps of a cloudlet: the devstack plugin
(devstack/plugin.sh) and the single-node box (tools/box.sh) both run this
command, so what operators run is what our own bring-up exercises.

  compute  nova.virt.cloudlet.CloudletDriver must import (the shim this
           package installs into nova/virt/); [DEFAULT] compute_driver =
           cloudlet.CloudletDriver; [libvirt] virt_type (--virt-type);
           [cloudlet] state_dir (--state-dir, directory created);
           [compute] consecutive_build_service_disable_threshold = 0 unless
           the operator set it: a synthesis fails for a bad overlay, the
           user's fault, and nova would count it against the host (its
           BuildFailureWeigher then avoids the host; 10 in a row disable it).
  api      api_extensions.router must import; the api-paste.ini nova-api
           loads gets our router in [app:osapi_compute_app_v21]; a commented
           sample of the cloudlet:* policy rules is written to
           <dir of NOVA_CONF>/policy.d/cloudlet.yaml unless that file exists;
           nova-scheduler (which reads the controllers' nova.conf) gets the
           base weigher added to [filter_scheduler] weight_classes
           (cloudlet_nova.scheduler.weigher: hosts holding the base first).
  all      both (the default).
  --set    any further option of NOVA_CONF, e.g.
           --set cloudlet.overlay_url_allowed_hosts=overlays.example

Every step is idempotent (a second run leaves every file byte-identical) and
edits files in place, keeping comments and unrelated content; files are
replaced atomically. One line is printed per change made, nothing for steps
already done. --check changes nothing and prints the state of every step.

Exit status: 0 done (with --check: everything configured); 1 --check found
something not configured; 2 usage error, or a step cannot be done (then
nothing was changed; the message says why and how to fix it).
"""

import argparse
import dataclasses
from importlib import import_module
import importlib.metadata
import json
import os
import sys
import warnings

from cloudlet_cmd import inifile

ROLES = ('compute', 'api', 'all')
VIRT_TYPES = ('qemu', 'kvm')

DRIVER_SHIM = 'nova.virt.cloudlet'
DRIVER_CLASS = 'CloudletDriver'
COMPUTE_DRIVER = 'cloudlet.CloudletDriver'   # nova imports 'nova.virt.' + this
DISTRIBUTION = 'openstack-cloudlet'

WEIGHER = 'cloudlet_nova.scheduler.weigher.BaseWeigher'
STOCK_WEIGHERS = 'nova.scheduler.weights.all_weighers'     # nova's default weight_classes

ROUTER_MODULE = 'api_extensions.router'
ROUTER_SECTION = 'app:osapi_compute_app_v21'
FACTORY_OPTION = 'paste.app_factory'
NOVA_FACTORY = 'nova.api.openstack.compute:APIRouterV21.factory'
CLOUDLET_FACTORY = 'api_extensions.router:APIRouter.factory'
# Above our factory line, as in etc/nova/api-paste.ini (a stock file patched
# here comes out byte-identical to that one).
ROUTER_COMMENT = (
    "# openstack-cloudlet: the only change from nova 34.0.0's api-paste.ini is the next line\n"
    "# (was %s). api_extensions.router.APIRouter is\n"
    "# nova's router plus the cloudlet server actions and /os-cloudlet (both /v2 and /v2.1 use it).\n")
FORCED_ROUTER_COMMENT = (
    "# openstack-cloudlet: cloudlet-configure --force replaced this section's router on the next line\n"
    "# (was %s). api_extensions.router.APIRouter is\n"
    "# nova's router plus the cloudlet server actions and /os-cloudlet (both /v2 and /v2.1 use it).\n")

# oslo.policy's default [oslo_policy] policy_dirs is "policy.d", looked up like
# a config file: first next to the --config-file nova-api was given.
POLICY_FILE = os.path.join('policy.d', 'cloudlet.yaml')
POLICY_HEADER = (
    "# openstack-cloudlet: the cloudlet:* policy rules of the cloudlet API, all commented\n"
    "# out, so their defaults apply. To override one, uncomment it and edit it here.\n"
    "# nova-api reads this file through [oslo_policy] policy_dirs (default policy.d, next\n"
    "# to nova.conf). Written once by cloudlet-configure (like oslopolicy-sample-generator\n"
    "# --namespace openstack-cloudlet), never overwritten.\n"
    "\n")

# Options with their own flag: --set must not fight them.
MANAGED_OPTIONS = {('DEFAULT', 'compute_driver'): 'the compute role sets it',
                   ('libvirt', 'virt_type'): 'use --virt-type',
                   ('cloudlet', 'state_dir'): 'use --state-dir'}


class ConfigureError(Exception):
    """A step cannot be done; the message names the problem and the fix."""


# --------------------------------------------------------------------------- the plan

@dataclasses.dataclass
class Finding:
    """One step's state: already done, to be done (`change`), or impossible (`problem`)."""
    what: str
    done: bool
    change: str = ''
    problem: str = ''


class Plan:
    """What a run finds and would change; nothing touches the disk before apply()."""

    def __init__(self):
        self.findings = []
        self.documents = {}     # path -> IniDocument, edited in memory
        self.new_dirs = []
        self.new_files = {}     # path -> text, created only if absent

    def document(self, path):
        if path not in self.documents:
            try:
                self.documents[path] = inifile.IniDocument.load(path)
            except inifile.IniError as exc:
                raise ConfigureError(str(exc))
        return self.documents[path]

    def done(self, what):
        self.findings.append(Finding(what, True))

    def todo(self, what, change):
        self.findings.append(Finding(what, False, change=change))

    def impossible(self, what, problem):
        self.findings.append(Finding(what, False, problem=problem))

    @property
    def problems(self):
        return [f.problem for f in self.findings if f.problem]

    def apply(self):
        for path in self.new_dirs:
            os.makedirs(path, exist_ok=True)
        for path, text in self.new_files.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                inifile.replace_atomically(path, text, existing=False)
            except FileExistsError:
                pass
        for document in self.documents.values():
            if document.changed:
                inifile.replace_atomically(document.path, document.text)


# --------------------------------------------------------------------------- steps

def _quiet_import(name):
    """Import `name` without the deprecation warnings nova's dependencies print."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return import_module(name)


def _editable(distribution):
    """True if `distribution` is installed editable (pip install -e), None if not installed."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    try:
        direct_url = json.loads(dist.read_text('direct_url.json') or '{}')   # PEP 610
    except ValueError:
        return False
    return bool(direct_url.get('dir_info', {}).get('editable'))


def _shim_not_found_message(nova_virt_dir):
    where = 'nova/virt/cloudlet/ is missing from %s, where nova imports it from' % nova_virt_dir
    if _editable(DISTRIBUTION):
        return ('%s: openstack-cloudlet is installed editable (pip install -e), which cannot provide '
                'it; fix: pip install --no-deps <openstack-cloudlet checkout> (without -e)' % where)
    if _editable('nova'):
        return ('%s: nova is installed editable (from a source checkout, e.g. devstack), so a shim '
                'installed into site-packages is not seen; fix: ln -s <openstack-cloudlet checkout>/'
                'nova/virt/cloudlet %s/cloudlet' % (where, nova_virt_dir))
    return ('%s; fix: pip install the openstack-cloudlet package (not editable) into the Python '
            'environment nova runs from (%s)' % (where, sys.prefix))


def driver_shim_problem():
    """Why nova cannot load compute_driver = cloudlet.CloudletDriver, or None if it can."""
    try:
        nova = _quiet_import('nova')
    except ImportError as e:
        return 'nova is not importable here (%s): run this with the Python nova runs from' % e
    if getattr(nova, '__file__', None) is None:
        return ('`import nova` finds only directories without __init__.py (%s), which hide nova itself: '
                'a shim installed into site-packages next to an editable nova does that; fix: remove '
                'that nova/ directory and link nova/virt/cloudlet into the nova checkout instead'
                % ', '.join(getattr(nova, '__path__', [])))
    try:
        nova_virt = _quiet_import('nova.virt.driver')
    except ImportError as e:
        return 'nova itself does not import (%s): is something shadowing nova/virt?' % e
    nova_virt_dir = os.path.dirname(nova_virt.__file__)
    try:
        shim = _quiet_import(DRIVER_SHIM)
    except ModuleNotFoundError as e:
        if e.name == DRIVER_SHIM:
            return _shim_not_found_message(nova_virt_dir)
        return ('importing %s failed: %s (a package it needs is missing from this Python environment, '
                '%s)' % (DRIVER_SHIM, e, sys.prefix))
    except Exception as e:   # noqa: BLE001 - any failure here is what nova-compute would hit
        return 'importing %s failed: %s: %s' % (DRIVER_SHIM, type(e).__name__, e)
    if not hasattr(shim, DRIVER_CLASS):
        return ('%s (%s) has no %s: reinstall openstack-cloudlet (not editable)'
                % (DRIVER_SHIM, getattr(shim, '__file__', '?'), DRIVER_CLASS))
    return None


def router_problem():
    """Why nova-api cannot load our router, or None if it can."""
    try:
        router = _quiet_import(ROUTER_MODULE)
    except Exception as e:   # noqa: BLE001 - whatever nova-api would hit loading api-paste.ini
        return ('importing %s failed: %s: %s; fix: pip install the openstack-cloudlet package into '
                'the Python environment nova-api runs from (%s)'
                % (ROUTER_MODULE, type(e).__name__, e, sys.prefix))
    if not hasattr(getattr(router, 'APIRouter', None), 'factory'):
        return '%s has no APIRouter.factory: reinstall openstack-cloudlet' % ROUTER_MODULE
    return None


def check_driver_shim(plan):
    what = '%s.%s importable (compute_driver = %s)' % (DRIVER_SHIM, DRIVER_CLASS, COMPUTE_DRIVER)
    problem = driver_shim_problem()
    if problem:
        plan.impossible(what, problem)
    else:
        plan.done(what)


def check_router(plan):
    what = '%s.APIRouter importable (nova-api loads it from api-paste.ini)' % ROUTER_MODULE
    problem = router_problem()
    if problem:
        plan.impossible(what, problem)
    else:
        plan.done(what)


def set_option(plan, path, section, option, value):
    document = plan.document(path)
    current = document.get(section, option)
    what = '[%s] %s = %s in %s' % (section, option, value, path)
    if document.set(section, option, value):
        plan.todo(what if current is None else '%s (now: %s)' % (what, current), 'set ' + what)
    else:
        plan.done(what)


def default_option(plan, path, section, option, value):
    """Set an option the operator has not set; an operator's value stays."""
    current = plan.document(path).get(section, option)
    if current is None:
        set_option(plan, path, section, option, value)
    else:
        plan.done('[%s] %s = %s (the operator\'s) in %s' % (section, option, current, path))


def add_weigher(plan, path):
    """[filter_scheduler] weight_classes: nova's (the stock default when unset), plus ours."""
    document = plan.document(path)
    current = document.get('filter_scheduler', 'weight_classes')
    classes = [c.strip() for c in (current or STOCK_WEIGHERS).split(',') if c.strip()]
    what = '[filter_scheduler] weight_classes has %s in %s' % (WEIGHER, path)
    if WEIGHER in classes:
        plan.done(what)
        return
    document.set('filter_scheduler', 'weight_classes', ','.join(classes + [WEIGHER]))
    plan.todo(what, 'added %s to [filter_scheduler] weight_classes in %s' % (WEIGHER, path))


def ensure_directory(plan, path, purpose):
    what = 'directory %s (%s)' % (path, purpose)
    if os.path.isdir(path):
        plan.done(what)
    elif os.path.exists(path):
        plan.impossible(what, '%s exists and is not a directory' % path)
    else:
        plan.new_dirs.append(path)
        plan.todo(what, 'created directory %s (%s)' % (path, purpose))


def plug_router(plan, paste_path, force):
    """[app:osapi_compute_app_v21] paste.app_factory: nova's router -> ours."""
    what = '[%s] %s = %s in %s' % (ROUTER_SECTION, FACTORY_OPTION, CLOUDLET_FACTORY, paste_path)
    try:
        document = plan.document(paste_path)
    except ConfigureError as e:
        plan.impossible(what, str(e))
        return
    if not document.has_section(ROUTER_SECTION):
        plan.impossible(what, '%s has no [%s] section: is it nova\'s api-paste.ini?'
                        % (paste_path, ROUTER_SECTION))
        return
    found = document.assignments(ROUTER_SECTION, FACTORY_OPTION)
    if len(found) != 1:
        plan.impossible(what, '[%s] in %s has %d %s lines, nova\'s has one: not changing a layout '
                        'we do not know' % (ROUTER_SECTION, paste_path, len(found), FACTORY_OPTION))
        return
    current = document.get(ROUTER_SECTION, FACTORY_OPTION)
    if current == CLOUDLET_FACTORY:
        plan.done(what)
        return
    if current != NOVA_FACTORY and not force:
        plan.impossible(what, '[%s] in %s has %s = %s, not nova\'s %s: another router is plugged in '
                        'there; not replacing it (--force does)'
                        % (ROUTER_SECTION, paste_path, FACTORY_OPTION, current, NOVA_FACTORY))
        return
    comment = (ROUTER_COMMENT if current == NOVA_FACTORY else FORCED_ROUTER_COMMENT) % current
    new_lines = [line + document.newline for line in comment.splitlines()]
    new_lines.append('%s = %s%s' % (FACTORY_OPTION, CLOUDLET_FACTORY, document.newline))
    document.replace_line(found[0], new_lines)
    plan.todo('%s (now: %s)' % (what, current), 'set %s (was %s)' % (what, current))


def check_paste_is_loaded(plan, nova_conf, paste_path):
    """nova-api must load the api-paste.ini we patch ([wsgi] api_paste_config, if set)."""
    configured = plan.document(nova_conf).get('wsgi', 'api_paste_config')
    if not configured:
        return   # nova's default: api-paste.ini found next to nova.conf (our default too)
    loaded = os.path.join(os.path.dirname(os.path.abspath(nova_conf)), configured)
    what = 'nova-api loads %s ([wsgi] api_paste_config in %s)' % (paste_path, nova_conf)
    if os.path.realpath(loaded) == os.path.realpath(paste_path):
        plan.done(what)
    else:
        plan.impossible(what, 'nova-api loads %s ([wsgi] api_paste_config in %s), not %s: give '
                        '--api-paste %s' % (loaded, nova_conf, paste_path, loaded))


def policy_sample_text():
    """The cloudlet:* rules as oslopolicy-sample-generator writes them, all commented out."""
    from oslo_policy import generator

    from api_extensions import policies
    # The function the generator itself formats every rule with.
    body = ''.join(generator._format_rule_default_yaml(rule) for rule in policies.list_rules())
    return POLICY_HEADER + body


def write_policy_sample(plan, nova_conf):
    path = os.path.join(os.path.dirname(os.path.abspath(nova_conf)), POLICY_FILE)
    if os.path.exists(path):
        plan.done('cloudlet:* policy file %s (left as it is)' % path)
        return
    plan.new_files[path] = policy_sample_text()
    plan.todo('cloudlet:* policy file %s' % path,
              'wrote %s (cloudlet:* policy rules, all commented out: override them there)' % path)


# --------------------------------------------------------------------------- command line

def default_api_paste(nova_conf, document):
    """The api-paste.ini nova-api loads: [wsgi] api_paste_config, else api-paste.ini next to nova.conf."""
    configured = document.get('wsgi', 'api_paste_config') or 'api-paste.ini'
    return os.path.join(os.path.dirname(os.path.abspath(nova_conf)), configured)


def plan_nova(args):
    plan = Plan()
    nova_conf = args.config_file
    plan.document(nova_conf)     # a missing or unreadable nova.conf stops everything here
    if args.role in ('compute', 'all'):
        check_driver_shim(plan)
        set_option(plan, nova_conf, 'DEFAULT', 'compute_driver', COMPUTE_DRIVER)
        default_option(plan, nova_conf, 'compute', 'consecutive_build_service_disable_threshold', '0')
        if args.virt_type:
            set_option(plan, nova_conf, 'libvirt', 'virt_type', args.virt_type)
        if args.state_dir:
            set_option(plan, nova_conf, 'cloudlet', 'state_dir', args.state_dir)
            ensure_directory(plan, args.state_dir, '[cloudlet] state_dir')
    if args.role in ('api', 'all'):
        paste = args.api_paste or default_api_paste(nova_conf, plan.document(nova_conf))
        check_router(plan)
        check_paste_is_loaded(plan, nova_conf, paste)
        plug_router(plan, paste, args.force)
        write_policy_sample(plan, nova_conf)
        add_weigher(plan, nova_conf)
    for section, option, value in args.set:
        set_option(plan, nova_conf, section, option, value)
    return plan


def report_check(plan, out):
    for finding in plan.findings:
        if finding.done:
            print('ok       %s' % finding.what, file=out)
        else:
            print('MISSING  %s%s' % (finding.what, ': ' + finding.problem if finding.problem else ''),
                  file=out)
    return 0 if all(f.done for f in plan.findings) else 1


def run_nova(args, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    try:
        plan = plan_nova(args)
        if args.check:
            return report_check(plan, out)
        if plan.problems:
            for problem in plan.problems:
                print('cloudlet-configure: %s' % problem, file=err)
            print('cloudlet-configure: nothing was changed', file=err)
            return 2
        plan.apply()
    except (ConfigureError, OSError) as e:
        print('cloudlet-configure: %s' % e, file=err)
        return 2
    for finding in plan.findings:
        if not finding.done:
            print(finding.change, file=out)
    return 0


def section_option_value(text):
    """--set SECTION.OPTION=VALUE -> (section, option, value)."""
    key, equal, value = text.partition('=')
    section, dot, option = key.strip().rpartition('.')
    if not (equal and dot and section and option):
        raise argparse.ArgumentTypeError('%r is not SECTION.OPTION=VALUE' % text)
    if '\n' in value or '\r' in value:
        raise argparse.ArgumentTypeError('%r: a value is one line' % text)
    if (section, option) in MANAGED_OPTIONS:
        raise argparse.ArgumentTypeError('%s.%s: %s' % (section, option, MANAGED_OPTIONS[(section, option)]))
    return section, option, value.strip()


def build_parser():
    parser = argparse.ArgumentParser(
        prog='cloudlet-configure',
        description='Plug openstack-cloudlet into an installed nova 34 (idempotent; --check changes nothing).')
    commands = parser.add_subparsers(dest='command', required=True, metavar='nova')
    nova = commands.add_parser(
        'nova', help='configure nova for CloudletDriver and the cloudlet API',
        description='compute: the driver shim must import; [DEFAULT] compute_driver, [libvirt] virt_type, '
                    '[cloudlet] state_dir. api: our router must import; our router in api-paste.ini; '
                    'a commented cloudlet:* policy sample in policy.d/cloudlet.yaml next to nova.conf.')
    nova.add_argument('--config-file', required=True, metavar='NOVA_CONF',
                      help='the nova.conf the role\'s services read (it must exist)')
    nova.add_argument('--role', choices=ROLES, default='all', help='default: all')
    nova.add_argument('--api-paste', metavar='PATH',
                      help='the api-paste.ini nova-api loads, patched in place (default: [wsgi] '
                           'api_paste_config of NOVA_CONF, else api-paste.ini next to NOVA_CONF)')
    nova.add_argument('--virt-type', choices=VIRT_TYPES, help='[libvirt] virt_type')
    nova.add_argument('--state-dir', metavar='DIR',
                      help='[cloudlet] state_dir (created); default: nova\'s, $instances_path/_cloudlet')
    nova.add_argument('--set', action='extend', nargs='+', default=[], type=section_option_value,
                      metavar='SECTION.OPTION=VALUE', help='further options of NOVA_CONF')
    nova.add_argument('--force', action='store_true',
                      help='replace a router other than nova\'s in api-paste.ini')
    nova.add_argument('--check', action='store_true',
                      help='change nothing; print what is and is not configured; exit 1 if anything is not')
    return parser


def parse_args(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.role == 'api' and (args.virt_type or args.state_dir):
        parser.error('--virt-type and --state-dir are compute options (--role compute or all)')
    if args.role == 'compute' and (args.api_paste or args.force):
        parser.error('--api-paste and --force are api options (--role api or all)')
    if args.state_dir:
        args.state_dir = os.path.abspath(args.state_dir)
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_nova(args)


if __name__ == '__main__':
    sys.exit(main())
