import sys

from vidcorr.cli import main

if __name__ == "__main__":  # loader workers (forkserver) import the main module again
    sys.exit(main())
