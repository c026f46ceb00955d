"""`python -m edgekd` — also what `torchrun ... -m edgekd` launches."""

from edgekd.cli import main

main()
