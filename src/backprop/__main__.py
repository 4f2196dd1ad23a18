import sys

from backprop.app.cli import main

sys.exit(main())
