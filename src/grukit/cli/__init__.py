"""The ``grukit`` command line."""
