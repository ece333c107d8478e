"""`python -m curator ...` (and `accelerate launch -m curator generate ...`)."""

from curator.cli import main

main()
