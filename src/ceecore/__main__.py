"""``python -m ceecore``: the command line, which ships beside the library as ``ceecore_cli``."""

from ceecore_cli.main import main

main()
