"""Exits 0 when every package named in the requirements file is installed.

Used by setup.sh so that a machine that already has everything does not touch
the network.
"""
import sys
from importlib import metadata

import re


def main(path):
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = re.split(r"[<>=!~ ]", line, 1)[0]
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
