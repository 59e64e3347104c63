"""Consoles: connections (TCP, telnet, pty, processes), the expect engine, logs, shells."""
