"""Sub-commands of the ``purposeguard`` command line, one module each."""
