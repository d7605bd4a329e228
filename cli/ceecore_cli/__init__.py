"""The ``ceecore`` command line (click), kept apart from the library."""
