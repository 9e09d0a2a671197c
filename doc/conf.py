# Sphinx configuration of the developer documentation (doc/*.md, through
# myst-parser). Built by `tools/house.sh docs` (tox -e docs) with -W.
project = 'openstack-cloudlet'
copyright = 'openstack-cloudlet developers'
extensions = ['myst_parser', 'openstackdocstheme']
source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['build']
html_theme = 'openstackdocs'
openstackdocs_repo_name = 'openstack-cloudlet'
openstackdocs_auto_name = False
# Headings get anchors, so cross-links like handoff.md#api resolve.
myst_heading_anchors = 3
