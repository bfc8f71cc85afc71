import sys

from hpclaunch.standin.cli import main

sys.exit(main())
