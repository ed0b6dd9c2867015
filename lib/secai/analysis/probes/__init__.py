"""Probes run with the scanners' own interpreter (secai.analysis.harvest): each imports only the
standard library and its scanner, and writes what it found as JSON on stdout."""
