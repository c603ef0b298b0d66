"""Errors shared by the transports, the emulators, the Project API server and client, and the session.

The three named server errors travel on the Project API wire by class name (a JSON-RPC server
error whose ``message`` is the class name), so their names are part of the protocol."""


class IoTimeoutError(Exception):
    """No byte arrived (or none could be written) within the timeout."""


class TransportClosedError(Exception):
    """The byte stream is closed: the device or emulator went away, or close_transport ran."""


class UnsupportedTVMVersionError(Exception):
    """The client's TVM version is one this server cannot serve."""


class EmulatorError(RuntimeError):
    """An emulator (QEMU, simavr) is missing, failed to start or misbehaved; the message says which
    and what to do. Defined here, not in ``emulators``, so the server framework can report it
    without importing the emulators."""


class SessionError(Exception):
    """The device session failed (handshake, protocol or device error); the message says which."""


class DeviceError(SessionError):
    """The device answered a request with an error status (bad index or range, unknown command...)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class ModelRunError(DeviceError):
    """The model's run function returned a non-zero code on the device."""

    def __init__(self, message: str, status: int, code: int):
        super().__init__(message, status)
        self.code = code
