"""Pushes/s into the push simulator, 2 % transient failures, 1 % dead tokens; see bench.channels."""

import sys

from bench.channels import main

if __name__ == "__main__":
    main("push", sys.argv[1:])
