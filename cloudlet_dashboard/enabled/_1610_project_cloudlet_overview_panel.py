PANEL = 'cloudlet_overview'
PANEL_DASHBOARD = 'project'
PANEL_GROUP = 'cloudlet'
ADD_PANEL = 'cloudlet_dashboard.content.overview.panel.Overview'
