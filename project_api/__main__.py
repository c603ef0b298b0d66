import sys

from project_api.cli import main

sys.exit(main())
