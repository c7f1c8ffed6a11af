"""``python -m pico``: the same as the ``pico`` command."""

from pico.cli import main

main()
