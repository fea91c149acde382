"""Probes read the world and return plain data; they never raise and never print."""
