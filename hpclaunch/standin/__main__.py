import sys

from hpclaunch.standin.server import main

sys.exit(main())
