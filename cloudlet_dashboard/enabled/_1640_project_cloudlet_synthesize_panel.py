PANEL = 'cloudlet_synthesize'
PANEL_DASHBOARD = 'project'
PANEL_GROUP = 'cloudlet'
ADD_PANEL = 'cloudlet_dashboard.content.synthesize.panel.Synthesize'
