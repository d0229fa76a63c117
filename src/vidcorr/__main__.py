import sys

from vidcorr.cli import main

sys.exit(main())
