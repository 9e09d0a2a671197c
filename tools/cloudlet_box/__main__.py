import sys

from cloudlet_box import cli

sys.exit(cli.main())
