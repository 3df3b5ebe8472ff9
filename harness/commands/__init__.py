"""One module per CLI command; see :mod:`harness.cli` for the convention."""
