"""pytest plugin (see issue 7); registered through the pytest11 entry point."""
