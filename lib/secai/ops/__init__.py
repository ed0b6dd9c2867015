"""Operations: GitHub Actions fetch, the daemon cycle and its service units, doctor checks, status."""
