# The servers panel has no navigation entry: it holds the forms of the Instances actions.
PANEL = 'cloudlet_servers'
PANEL_DASHBOARD = 'project'
PANEL_GROUP = 'cloudlet'
ADD_PANEL = 'cloudlet_dashboard.content.servers.panel.Servers'
