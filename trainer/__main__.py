"""`python -m trainer …` and `accelerate launch -m trainer run …`."""

from trainer.cli import main

main()
