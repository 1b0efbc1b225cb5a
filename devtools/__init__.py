"""Development tools shared by the test suite and the benchmark (neither imports the other)."""
