"""Black-box conformance of Project API servers: each test starts a server as a subprocess (on the
two pipes a client would give it) and checks the JSON-RPC lines it writes back (docs/project-api.md).

The loopback server (tests/project_api_servers/loopback) exercises every method and error; every
template found on disk (template_projects/*, and the throwaway template of
tests/project_api_servers/throwaway, written as a newcomer would) is checked for the parts a
template can answer, so a new template is tested the day it is added.
"""

import base64
import json
import os
import pathlib
import select
import signal
import subprocess
import sys

import pytest

from project_api import client, errors, resources

LOOPBACK_DIR = pathlib.Path(__file__).resolve().parent / "project_api_servers" / "loopback"
THROWAWAY_DIR = LOOPBACK_DIR.parent / "throwaway"
TEMPLATE_DIRS = [resources.template_dir(name) for name in resources.available_templates()] + [THROWAWAY_DIR]
REPLY_TIMEOUT_SEC = 20.0
OPTION_FIELDS = {"name", "choices", "default", "type", "required", "optional", "help"}


class RawServer:
    """A server subprocess driven line by line, with no client library in between."""

    def __init__(self, server_dir: pathlib.Path):
        server_read, self._write_fd = os.pipe()
        self._read_fd, server_write = os.pipe()
        env = dict(os.environ, PYTHONPATH=str(pathlib.Path(client.__file__).resolve().parents[1]))
        self.proc = subprocess.Popen(
            [sys.executable, str(server_dir / "microtvm_api_server.py"), "--read-fd", str(server_read),
             "--write-fd", str(server_write)],
            pass_fds=(server_read, server_write), cwd=server_dir, env=env, stdin=subprocess.DEVNULL)
        os.close(server_read)
        os.close(server_write)
        self._pending = b""
        self._next_id = 100

    def send_line(self, line: bytes) -> None:
        os.write(self._write_fd, line + b"\n")

    def reply(self) -> dict:
        while b"\n" not in self._pending:
            ready, _, _ = select.select([self._read_fd], [], [], REPLY_TIMEOUT_SEC)
            assert ready, f"no reply within {REPLY_TIMEOUT_SEC} s"
            chunk = os.read(self._read_fd, 65536)
            assert chunk, f"server closed its reply pipe (exit status {self.proc.poll()})"
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        reply = json.loads(line)
        assert reply["jsonrpc"] == "2.0"
        assert ("result" in reply) != ("error" in reply)
        return reply

    def call(self, method, params, request_id=None) -> dict:
        if request_id is None:
            request_id = self._next_id = self._next_id + 1
        self.send_line(json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}).encode())
        reply = self.reply()
        assert reply["id"] == request_id
        return reply

    def result(self, method, params):
        reply = self.call(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    def error(self, method, params, code) -> dict:
        reply = self.call(method, params)
        assert "error" in reply, reply
        assert reply["error"]["code"] == code, reply
        assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
        return reply["error"]

    def close(self) -> int:
        os.close(self._write_fd)
        try:
            return self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            os.close(self._read_fd)


@pytest.fixture
def loopback():
    server = RawServer(LOOPBACK_DIR)
    yield server
    assert server.close() == 0, "the server must exit cleanly at EOF"


@pytest.fixture
def host_template():
    server = RawServer(resources.template_dir("host"))
    yield server
    assert server.close() == 0


@pytest.fixture(scope="module", params=TEMPLATE_DIRS, ids=lambda d: d.name)
def any_template(request):
    server = RawServer(request.param)
    server.directory = request.param
    yield server
    assert server.close() == 0, "the server must exit cleanly at EOF"


def _good_request_still_answered(server):
    assert server.result("server_info_query", {"tvm_version": "0.27.0"})["protocol_version"] == 1


# ---- server_info_query -------------------------------------------------------------------------


@pytest.mark.parametrize("server_fixture", ["loopback", "host_template"])
def test_server_info_query(server_fixture, request):
    server = request.getfixturevalue(server_fixture)
    info = server.result("server_info_query", {"tvm_version": "0.27.0"})
    assert set(info) == {"platform_name", "is_template", "model_library_format_path", "project_options",
                         "protocol_version"}
    assert info["protocol_version"] == 1
    assert info["is_template"] is True
    assert info["model_library_format_path"] == ""
    for option in info["project_options"]:
        assert set(option) == OPTION_FIELDS
        assert option["type"] in ("bool", "int", "str")
        assert isinstance(option["required"], list) and isinstance(option["optional"], list)
    if server_fixture == "host_template":
        assert info["platform_name"] == "host"
        names = {o["name"] for o in info["project_options"]}
        assert {"verbose", "project_type", "board", "warning_as_error", "compile_definitions",
                "extra_files_tar"} <= names


def test_unsupported_tvm_version_is_a_named_server_error(loopback):
    error = loopback.error("server_info_query", {"tvm_version": "0.1.0"}, -32000)
    assert error["message"] == "UnsupportedTVMVersionError"
    assert "too old" in error["data"]["detail"]
    assert "Traceback" in error["data"]["traceback"]


# ---- options -----------------------------------------------------------------------------------


def test_options_arrive_typed_with_defaults_and_unknown_keys_dropped(loopback, tmp_path):
    project = tmp_path / "proj"
    result = loopback.result("generate_project", {
        "model_library_format_path": "/nowhere/model.tar", "standalone_crt_dir": None, "project_dir": str(project),
        "options": {"flag": "true", "count": "0x10", "color": "green", "some_other_platforms_option": "x"}})
    assert result is None
    call = json.loads((project / "call.json").read_text())
    assert call["options"] == {"flag": True, "count": 16, "color": "green", "note": None, "mode": "ok"}
    assert call["standalone_crt_dir"] is None
    assert call["model_library_format_path"] == "/nowhere/model.tar"


@pytest.mark.parametrize("options, words", [
    ({"color": "red", "flag": "maybe"}, ["option 'flag'", "bool", "maybe"]),
    ({"color": "red", "count": "three"}, ["option 'count'", "integer", "three"]),
    ({"color": "red", "count": True}, ["option 'count'", "integer"]),
    ({"color": "red", "note": 5}, ["option 'note'", "string"]),
    ({"color": "blue"}, ["option 'color'", "blue", "red, green"]),
    ({"flag": False}, ["requires option 'color'", "red, green"]),
])
def test_bad_option_values_name_the_option_and_method(loopback, options, words):
    error = loopback.error("build", {"options": options}, -32602)
    for word in words + ["build"]:
        assert word in error["message"], error["message"]
    assert loopback.result("build", {"options": {"color": "red", "flag": 1, "count": 7}}) is None


def test_host_template_rejects_unknown_board(host_template, tmp_path):
    error = host_template.error("generate_project", {
        "model_library_format_path": str(tmp_path / "m.tar"), "standalone_crt_dir": None,
        "project_dir": str(tmp_path / "p"), "options": {"board": "mps2_an386"}}, -32602)
    assert "option 'board'" in error["message"] and "host" in error["message"]
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("method", ["build", "flash", "open_transport"])
def test_a_template_refuses_project_methods(any_template, method):
    error = any_template.error(method, {"options": {}}, -32000)
    assert "generated project" in error["message"] and "\n" not in error["message"]


# ---- every template on disk --------------------------------------------------------------------


def test_a_template_describes_itself(any_template):
    info = any_template.result("server_info_query", {"tvm_version": "0.27.0"})
    assert info["platform_name"] == any_template.directory.name
    assert info["is_template"] is True and info["model_library_format_path"] == ""
    options = {o["name"]: o for o in info["project_options"]}
    assert {"verbose", "project_type", "board", "warning_as_error", "compile_definitions",
            "extra_files_tar"} <= set(options)
    for option in options.values():
        assert set(option) == OPTION_FIELDS and option["type"] in ("bool", "int", "str") and option["help"]


def test_a_template_refuses_an_unknown_board_and_leaves_nothing(any_template, tmp_path):
    error = any_template.call("generate_project", {
        "model_library_format_path": str(tmp_path / "m.tar"), "standalone_crt_dir": None,
        "project_dir": str(tmp_path / "p"), "options": {"board": "no_such_board"}})["error"]
    assert "no_such_board" in error["message"] and "\n" not in error["message"]
    assert not (tmp_path / "p").exists()


def test_a_template_refuses_a_missing_archive_and_leaves_nothing(any_template, tmp_path):
    info = any_template.result("server_info_query", {"tvm_version": "0.27.0"})
    board = next(o for o in info["project_options"] if o["name"] == "board")
    some_board = board["default"] or (board["choices"] or [None])[0] or "qemu_cortex_m3"
    error = any_template.error("generate_project", {
        "model_library_format_path": str(tmp_path / "missing.tar"), "standalone_crt_dir": None,
        "project_dir": str(tmp_path / "p"), "options": {"board": some_board}}, -32000)
    assert "missing.tar does not exist" in error["message"] and "\n" not in error["message"]
    assert not (tmp_path / "p").exists()


# ---- handler errors ----------------------------------------------------------------------------


def test_unexpected_handler_exception_is_a_server_error(loopback):
    error = loopback.error("flash", {"options": {}}, -32000)
    assert "KeyError" in error["message"] and "flash_exploded" in error["message"]
    assert "flash_exploded" in error["data"]["traceback"]
    _good_request_still_answered(loopback)


def test_server_error_message_is_passed_verbatim(loopback):
    loopback.result("open_transport", {"options": {}})
    data = base64.b85encode(b"\x00raise-server-error").decode()
    error = loopback.error("write_transport", {"data": data, "timeout_sec": None}, -32000)
    assert error["message"] == "write refused: the test asked for it"


def test_bad_handler_result_is_an_internal_error(loopback):
    error = loopback.error("open_transport", {"options": {"mode": "bad_timeouts"}}, -32603)
    assert "TransportTimeouts" in error["message"]
    _good_request_still_answered(loopback)


# ---- transport ---------------------------------------------------------------------------------


def test_transport_base85_round_trip_and_named_errors(loopback):
    error = loopback.error("read_transport", {"n": 4, "timeout_sec": 0}, -32000)
    assert error["message"] == "TransportClosedError"

    timeouts = loopback.result("open_transport", {"options": {}})["timeouts"]
    assert timeouts == {"session_start_retry_timeout_sec": 0.5, "session_start_timeout_sec": 2.0,
                        "session_established_timeout_sec": 3.0}

    payload = bytes(range(256)) * 4 + b"\n\"\\{}"
    assert loopback.result("write_transport", {"data": base64.b85encode(payload).decode(), "timeout_sec": 1.5}) is None
    received = b""
    while len(received) < len(payload):
        chunk = base64.b85decode(loopback.result("read_transport", {"n": 300, "timeout_sec": 1})["data"])
        assert 1 <= len(chunk) <= 300
        received += chunk
    assert received == payload

    error = loopback.error("read_transport", {"n": 1, "timeout_sec": 0.05}, -32000)
    assert error["message"] == "IoTimeoutError"
    assert "0.05" in error["data"]["detail"]

    assert loopback.result("close_transport", {}) is None
    assert loopback.error("write_transport", {"data": "", "timeout_sec": None}, -32000)["message"] == "TransportClosedError"


# ---- malformed requests ------------------------------------------------------------------------


@pytest.mark.parametrize("line", [b"{not json", b"\xff\xfe{}", b'{"jsonrpc": "2.0", "method": "build"',
                                  b"[" * 100000 + b"]" * 100000],
                         ids=["not_json", "not_utf8", "truncated", "nested_100k_deep"])
def test_parse_error_then_still_serving(loopback, line):
    loopback.send_line(line)
    reply = loopback.reply()
    assert reply["error"]["code"] == -32700 and reply["id"] is None
    _good_request_still_answered(loopback)


@pytest.mark.parametrize("request_obj, echoed_id", [
    ([], None),
    ("just a string", None),
    ({"jsonrpc": "1.0", "method": "build", "params": {}, "id": 7}, 7),
    ({"method": "build", "params": {}, "id": 8}, 8),
    ({"jsonrpc": "2.0", "method": 5, "params": {}, "id": 9}, 9),
    ({"jsonrpc": "2.0", "method": "build", "params": [1, 2], "id": "ten"}, "ten"),
    ({"jsonrpc": "2.0", "method": "build", "params": {}, "id": [11]}, None),
])
def test_invalid_request_then_still_serving(loopback, request_obj, echoed_id):
    loopback.send_line(json.dumps(request_obj).encode())
    reply = loopback.reply()
    assert reply["error"]["code"] == -32600
    assert reply["id"] == echoed_id
    _good_request_still_answered(loopback)


def test_unknown_method(loopback):
    error = loopback.error("launch_rockets", {}, -32601)
    assert "launch_rockets" in error["message"] and "server_info_query" in error["message"]
    _good_request_still_answered(loopback)


@pytest.mark.parametrize("method, params, words", [
    ("server_info_query", {}, ["missing", "tvm_version"]),
    ("server_info_query", {"tvm_version": 27}, ["tvm_version", "string"]),
    ("server_info_query", {"tvm_version": "0.27", "extra": 1}, ["unexpected", "extra"]),
    ("generate_project", {"model_library_format_path": "m.tar", "project_dir": "p", "options": {}},
     ["missing", "standalone_crt_dir"]),
    ("generate_project", {"model_library_format_path": 1, "standalone_crt_dir": None, "project_dir": "p",
                          "options": {}}, ["model_library_format_path", "string"]),
    ("build", {}, ["missing", "options"]),
    ("build", {"options": "color=red"}, ["options", "object"]),
    ("flash", {"options": {}, "verbose": True}, ["unexpected", "verbose"]),
    ("close_transport", {"now": True}, ["unexpected", "now"]),
    ("read_transport", {"n": "3", "timeout_sec": 1}, ["'n'", "integer"]),
    ("read_transport", {"n": 0, "timeout_sec": 1}, ["'n'", ">= 1"]),
    ("read_transport", {"n": 3, "timeout_sec": "soon"}, ["timeout_sec"]),
    ("read_transport", {"n": 3, "timeout_sec": -1}, ["timeout_sec"]),
    ("read_transport", {"n": 3}, ["missing", "timeout_sec"]),
    ("read_transport", {"n": 10**30, "timeout_sec": 1}, ["'n'", "integer 1..2147483647"]),
    ("read_transport", {"n": 3, "timeout_sec": 1e300}, ["timeout_sec", "or null (wait forever)"]),
    ("read_transport", {"n": 3, "timeout_sec": float("inf")}, ["timeout_sec"]),  # Python's JSON reads Infinity
    ("write_transport", {"data": "", "timeout_sec": 1e300}, ["timeout_sec"]),
    ("write_transport", {"data": "~~~~~", "timeout_sec": None}, ["data", "Base85"]),
    ("write_transport", {"data": b"\x01".hex(), "timeout_sec": True}, ["timeout_sec"]),
])
def test_invalid_params(loopback, method, params, words):
    error = loopback.error(method, params, -32602)
    for word in words + [method]:
        assert word in error["message"], error["message"]
    _good_request_still_answered(loopback)


def test_many_requests_one_reply_each_in_order(loopback):
    for i in range(50):
        loopback.send_line(json.dumps({"jsonrpc": "2.0", "method": "server_info_query",
                                       "params": {"tvm_version": "x"}, "id": i}).encode())
    assert [loopback.reply()["id"] for _ in range(50)] == list(range(50))


# ---- our client on the same server -------------------------------------------------------------


def test_client_rebuilds_typed_errors_and_reaps_server():
    with client.instantiate_from_dir(LOOPBACK_DIR) as api:
        process = api.process
        assert api.server_info_query("0.27.0")["platform_name"] == "loopback"
        with pytest.raises(errors.UnsupportedTVMVersionError, match="too old"):
            api.server_info_query("0.1.2")
        with pytest.raises(errors.TransportClosedError, match="loopback is closed"):
            api.read_transport(1, 0)
        api.open_transport({})
        api.write_transport(b"\x00\xffabc", None)
        assert api.read_transport(10, 1)["data"] == b"\x00\xffabc"
        with pytest.raises(errors.IoTimeoutError):
            api.read_transport(1, 0.01)
        with pytest.raises(client.ServerError, match="KeyError") as info:
            api.flash({})
        assert "flash_exploded" in info.value.server_traceback
        with pytest.raises(client.RPCError, match="option 'color'") as info:
            api.build({"color": "purple"})
        assert info.value.code == -32602 and not isinstance(info.value, client.ServerError)
        api.build({"color": "red"})
    assert process.poll() == 0
    with pytest.raises(client.ConnectionShutdownError):
        api.build({"color": "red"})


def test_client_kills_a_server_that_ignores_eof(tmp_path):
    stubborn = tmp_path / "microtvm_api_server.py"
    stubborn.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                        "while True:\n    time.sleep(1)\n")
    api = client.instantiate_from_dir(tmp_path)
    process = api.process
    client_module_grace = client._EXIT_GRACE_SEC
    try:
        client._EXIT_GRACE_SEC = 0.5
        api.close()
    finally:
        client._EXIT_GRACE_SEC = client_module_grace
    assert process.poll() is not None


def test_client_reports_a_server_that_dies(tmp_path):
    (tmp_path / "microtvm_api_server.py").write_text("import sys\nsys.exit(3)\n")
    with client.instantiate_from_dir(tmp_path) as api:
        with pytest.raises(client.ConnectionShutdownError, match="exit status 3"):
            api.server_info_query()


def test_client_needs_a_server_script(tmp_path):
    with pytest.raises(client.ServerNotFoundError, match="microtvm_api_server.py"):
        client.instantiate_from_dir(tmp_path)


def test_client_resolves_relative_paths_against_the_callers_cwd(tmp_path, monkeypatch):
    """The server runs in its template's directory; 'model.tar' and 'proj' mean the caller's."""
    monkeypatch.chdir(tmp_path)
    with client.instantiate_from_dir(LOOPBACK_DIR) as api:
        api.generate_project("model.tar", None, "proj", {"color": "red"})
        api.generate_project(tmp_path / "m2.tar", "crt", tmp_path / "abs", {"color": "red"})
    call = json.loads((tmp_path / "proj" / "call.json").read_text())
    assert call["model_library_format_path"] == str(tmp_path / "model.tar")
    assert not (LOOPBACK_DIR / "proj").exists()
    call = json.loads((tmp_path / "abs" / "call.json").read_text())
    assert call["model_library_format_path"] == str(tmp_path / "m2.tar")
    assert call["standalone_crt_dir"] == str(tmp_path / "crt")


def test_server_ignores_sigint_its_client_owns_it(loopback):
    """Ctrl-C reaches the server with its client (one process group); the client decides."""
    loopback.result("server_info_query", {"tvm_version": "0.27.0"})  # up and serving
    loopback.proc.send_signal(signal.SIGINT)
    assert loopback.result("server_info_query", {"tvm_version": "0.27.0"})["platform_name"] == "loopback"


def test_an_interrupted_request_ends_the_connection(monkeypatch):
    """Ctrl-C while waiting for a reply: the reply would come out of step with the next request,
    so the client stops its server at once; closing the transport afterwards is a no-op."""
    with client.instantiate_from_dir(LOOPBACK_DIR) as api:
        process = api.process
        api.open_transport({})

        def interrupted_readline():
            raise KeyboardInterrupt

        monkeypatch.setattr(api, "_read_file", type("R", (), {"readline": staticmethod(interrupted_readline),
                                                              "close": api._read_file.close})())
        with pytest.raises(KeyboardInterrupt):
            api.read_transport(1, 5.0)
        assert process.poll() is not None and api.is_shutdown
        assert api.close_transport() is None
        with pytest.raises(client.ConnectionShutdownError):
            api.build({"color": "red"})
