"""A telnet console without negotiation: a simulator's serial port (ARM FVP ``terminal_0``, QEMU
``-serial telnet:``) is a telnet server that announces options (``IAC WILL ECHO`` …) and expects
nothing back. :class:`TelnetConnection` is a :class:`TcpConnection` that drops those commands from
what it reads (also across reads), un-doubles ``IAC IAC`` and drops the NUL a telnet server
sends after a bare CR; what it writes has ``IAC`` doubled.
"""

from __future__ import annotations

from .connections import TcpConnection

IAC, SB, SE = 0xFF, 0xFA, 0xF0
_OPTION_VERBS = (0xFB, 0xFC, 0xFD, 0xFE)  # WILL WONT DO DONT: one option byte follows


class TelnetFilter:
    """Strips telnet commands from a byte stream, keeping its state between chunks."""

    def __init__(self) -> None:
        self._state = "data"  # data | iac | option | sb | sb-iac
        self._last_cr = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            state = self._state
            if state == "data":
                if b == IAC:
                    self._state = "iac"
                elif b == 0 and self._last_cr:
                    pass  # CR NUL is a bare CR
                else:
                    out.append(b)
                self._last_cr = b == 0x0D
            elif state == "iac":
                if b == IAC:
                    out.append(IAC)
                    self._state = "data"
                elif b in _OPTION_VERBS:
                    self._state = "option"
                elif b == SB:
                    self._state = "sb"
                else:
                    self._state = "data"  # a two-byte command (NOP, GA, …)
            elif state == "option":
                self._state = "data"
            elif state == "sb":
                if b == IAC:
                    self._state = "sb-iac"
            else:  # sb-iac
                self._state = "data" if b == SE else "sb"
        return bytes(out)


class TelnetConnection(TcpConnection):
    """A telnet server's console, negotiation ignored (see the module docstring)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._filter = TelnetFilter()

    def connect(self, deadline, *, retry_interval: float = 0.1) -> None:  # type: ignore[no-untyped-def]
        self._filter = TelnetFilter()  # a new session starts outside any command
        super().connect(deadline, retry_interval=retry_interval)

    def read(self, max_bytes: int, timeout: float) -> bytes:
        # b"" means "nothing within timeout" to callers; a chunk of pure negotiation is that too
        return self._filter.feed(super().read(max_bytes, timeout))

    def write(self, data: bytes, timeout: float) -> None:
        super().write(data.replace(b"\xff", b"\xff\xff"), timeout)
