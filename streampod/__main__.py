import sys

from streampod.cli import main

sys.exit(main())
