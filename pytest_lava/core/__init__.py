"""Foundations every layer uses: the error taxonomy, deadlines, secret masking."""
