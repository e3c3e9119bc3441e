"""Support for the reliability tests (tests/test_reliability_*.py): a hostile loopback server,
pipeline and subprocess helpers, and the figures the suite reports."""
