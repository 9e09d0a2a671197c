# Sphinx configuration of the cloudlet API reference (os-api-ref). Built by
# `tools/house.sh api-ref` (tox -e api-ref) with -W. parameters.yaml is written
# by tools/api_ref_params.py from api_extensions/schemas.py.
project = 'openstack-cloudlet API reference'
copyright = 'openstack-cloudlet developers'
extensions = ['os_api_ref', 'openstackdocstheme']
root_doc = 'index'
exclude_patterns = ['samples']
html_theme = 'openstackdocs'
html_theme_options = {'sidebar_mode': 'toc'}
openstackdocs_repo_name = 'openstack-cloudlet'
openstackdocs_auto_name = False
