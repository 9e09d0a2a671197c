"""The cloudlet API inside nova-api (plugged in through api-paste.ini)."""
