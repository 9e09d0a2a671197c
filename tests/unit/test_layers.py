"""The packages' layers point one way (CONTRIBUTING.md, "Layers").

Every import counts, also one inside a function: a lazy import is still a
dependency. A new edge belongs in LAYERS only if it points down.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]

# package -> the project packages it may import (lower layers only).
LAYERS = {
    'cloudlet_engine': set(),
    'cloudlet_glance': {'cloudlet_engine'},
    'cloudlet_nova': {'cloudlet_engine', 'cloudlet_glance'},
    'api_extensions': {'cloudlet_engine', 'cloudlet_glance', 'cloudlet_nova'},
    # the client library for mobile back ends: openstacksdk, keystoneauth1, zeroconf, no nova
    'cloudlet_client': {'cloudlet_engine', 'cloudlet_glance'},
    'cloudlet_osc': {'cloudlet_engine', 'cloudlet_glance', 'cloudlet_nova', 'cloudlet_client'},
    'cloudlet_cmd': {'cloudlet_engine', 'cloudlet_glance', 'cloudlet_nova', 'api_extensions'},
    # the Horizon plugin: the CLI's client, flavor and overlay choices; the API's policy defaults
    'cloudlet_dashboard': {'cloudlet_engine', 'cloudlet_glance', 'cloudlet_osc', 'api_extensions'},
}


def imported_modules(package):
    """(file, module name) for every absolute import in `package`."""
    for path in sorted((ROOT / package).rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                yield from ((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                yield path, node.module


def imports(package):
    """{imported project package: [importing files]} of `package`."""
    found = {}
    for path, name in imported_modules(package):
        top = name.split('.')[0]
        if top in LAYERS and top != package:
            found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_import_points_down():
    wrong = {package: {target: files for target, files in imports(package).items()
                       if target not in allowed}
             for package, allowed in LAYERS.items()}
    assert {package: edges for package, edges in wrong.items() if edges} == {}


def test_the_layers_have_no_cycle():
    done, visiting = set(), set()

    def visit(package, path):
        assert package not in visiting, 'import cycle: %s' % ' -> '.join(path + [package])
        if package in done:
            return
        visiting.add(package)
        for target in LAYERS[package]:
            visit(target, path + [package])
        visiting.discard(package)
        done.add(package)
    for package in LAYERS:
        visit(package, [])


def test_the_engine_imports_no_openstack():
    openstack = ('nova', 'glanceclient', 'keystoneauth1', 'oslo_config', 'oslo_log', 'openstack')
    users = ['%s: %s' % (path.name, name) for path, name in imported_modules('cloudlet_engine')
             if name.split('.')[0] in openstack]
    assert users == []
