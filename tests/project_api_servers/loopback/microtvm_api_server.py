"""A Project API server for the conformance tests: its transport is an in-memory loopback and
its methods echo what the framework handed them, so a test can check the wire from outside."""

import json
import time

from project_api import server

OPTIONS = [
    server.ProjectOption("flag", type="bool", default=False, optional=("build",), help="a bool"),
    server.ProjectOption("count", type="int", default=3, optional=("build",), help="an int"),
    server.ProjectOption("color", type="str", choices=("red", "green"), required=("build",), help="a choice"),
    server.ProjectOption("note", type="str", optional=("build",), help="free text"),
    server.ProjectOption("mode", type="str", default="ok", choices=("ok", "bad_timeouts"), optional=("open_transport",)),
]


class LoopbackHandler(server.ProjectAPIHandler):
    def __init__(self):
        self._buffer = None  # bytes written and not read yet; None = transport closed

    def server_info_query(self, tvm_version):
        if tvm_version.startswith("0.1."):
            raise server.UnsupportedTVMVersionError(f"TVM {tvm_version} is too old for this server")
        return server.ServerInfo("loopback", True, None, OPTIONS)

    def project_options(self):
        return OPTIONS

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        project_dir.mkdir(parents=True)
        (project_dir / "call.json").write_text(json.dumps({
            "model_library_format_path": str(model_library_format_path),
            "standalone_crt_dir": None if standalone_crt_dir is None else str(standalone_crt_dir),
            "options": options}))

    def build(self, options):
        pass  # the framework has already checked `color`, which build requires

    def flash(self, options):
        raise KeyError("flash_exploded")

    def open_transport(self, options):
        self._buffer = b""
        if options["mode"] == "bad_timeouts":
            return {"not": "TransportTimeouts"}
        return server.TransportTimeouts(0.5, 2.0, 3.0)

    def close_transport(self):
        self._buffer = None

    def read_transport(self, n, timeout_sec):
        if self._buffer is None:
            raise server.TransportClosedError("the loopback is closed")
        if not self._buffer:
            time.sleep(timeout_sec or 0)
            raise server.IoTimeoutError(f"nothing to read within {timeout_sec} s")
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def write_transport(self, data, timeout_sec):
        if self._buffer is None:
            raise server.TransportClosedError("the loopback is closed")
        if data == b"\x00raise-server-error":
            raise server.ServerError("write refused: the test asked for it")
        self._buffer += data


if __name__ == "__main__":
    server.main(LoopbackHandler())
