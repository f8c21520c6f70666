"""E-mails/s into a local SMTP sink with 5 % transient failures; see bench.channels."""

import sys

from bench.channels import main

if __name__ == "__main__":
    main("email", sys.argv[1:])
