"""`python -m tuneloom.cli`: the same as the `tuneloom` command."""

from tuneloom.cli import main

main()
