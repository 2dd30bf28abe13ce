import sys

from camclassd.cli import main

sys.exit(main())
