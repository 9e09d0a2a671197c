# Sphinx configuration of the release notes (reno, from releasenotes/notes/ in
# git). Built by `tools/house.sh releasenotes` (tox -e releasenotes) with -W.
project = 'openstack-cloudlet release notes'
copyright = 'openstack-cloudlet developers'
extensions = ['reno.sphinxext', 'openstackdocstheme']
root_doc = 'index'
html_theme = 'openstackdocs'
openstackdocs_repo_name = 'openstack-cloudlet'
openstackdocs_auto_name = False
