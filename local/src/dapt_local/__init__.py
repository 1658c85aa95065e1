"""The whole method on one machine (see README.md)."""
