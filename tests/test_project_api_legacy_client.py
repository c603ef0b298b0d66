"""TVM v0.16's own Project API client (python/tvm/micro/project_api/client.py, unchanged) drives
our servers. The legacy files are not part of this repository: they are imported from the folder
named by MICROTVM_LEGACY_PROJECT_API_DIR (default /work/legacy_tvm_v016), and the tests skip
when it is absent."""

import importlib.util
import os
import pathlib
import sys

import pytest

LOOPBACK_DIR = pathlib.Path(__file__).resolve().parent / "project_api_servers" / "loopback"
_DEFAULT_LEGACY_DIR = pathlib.Path("/work/legacy_tvm_v016")


def _import_legacy_package():
    folder = pathlib.Path(os.environ.get("MICROTVM_LEGACY_PROJECT_API_DIR", _DEFAULT_LEGACY_DIR))
    if not (folder / "client.py").is_file() or not (folder / "server.py").is_file():
        pytest.skip(f"TVM v0.16's project_api client.py/server.py are not in {folder} "
                    "(set MICROTVM_LEGACY_PROJECT_API_DIR to the folder holding them)")
    name = "legacy_tvm_project_api"
    if name not in sys.modules:
        init = folder / "__init__.py"
        spec = importlib.util.spec_from_file_location(
            name, init if init.is_file() else folder / "server.py", submodule_search_locations=[str(folder)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        if init.is_file():
            spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.client"), importlib.import_module(f"{name}.server")


@pytest.fixture(scope="module")
def legacy():
    return _import_legacy_package()


@pytest.fixture
def loopback_api(legacy):
    legacy_client, _ = legacy
    api = legacy_client.instantiate_from_dir(LOOPBACK_DIR)
    try:
        yield api
    finally:
        api.shutdown()  # EOF: our server closes its transport and exits


def test_legacy_client_every_method_on_loopback(legacy, loopback_api, tmp_path):
    legacy_client, legacy_server = legacy
    info = loopback_api.server_info_query("0.16.0")
    assert info["platform_name"] == "loopback" and info["protocol_version"] == 1

    # tvmc passed every option as a string; our framework converts them.
    project = tmp_path / "project"
    assert loopback_api.generate_project(str(tmp_path / "model.tar"), "/legacy/standalone_crt", str(project),
                                         {"flag": "false", "count": "5", "color": "red"}) is None
    assert (project / "call.json").is_file()
    assert loopback_api.build({"color": "green"}) is None

    timeouts = loopback_api.open_transport({})["timeouts"]
    assert timeouts["session_established_timeout_sec"] == 3.0
    payload = bytes(range(256))
    assert loopback_api.write_transport(payload, 1.0) is None
    received = b""
    while len(received) < len(payload):
        received += loopback_api.read_transport(100, 1.0)["data"]
    assert received == payload

    with pytest.raises(legacy_server.IoTimeoutError):
        loopback_api.read_transport(1, 0.01)
    assert loopback_api.close_transport() is None
    with pytest.raises(legacy_server.TransportClosedError):
        loopback_api.read_transport(1, 0.01)
    with pytest.raises(legacy_server.UnsupportedTVMVersionError):
        loopback_api.server_info_query("0.1.0")


def test_legacy_client_sees_our_errors(legacy, loopback_api):
    _, legacy_server = legacy
    with pytest.raises(legacy_server.ServerError) as info:
        loopback_api.flash({})
    assert "KeyError" in info.value.message
    with pytest.raises(legacy_server.JSONRPCError) as info:
        loopback_api.build({"color": "purple"})
    assert info.value.code == -32602 and "option 'color'" in info.value.message
    # The connection is still usable after errors.
    assert loopback_api.server_info_query("0.16.0")["platform_name"] == "loopback"


def test_legacy_client_drives_host_template(legacy):
    legacy_client, _ = legacy
    from project_api import resources

    api = legacy_client.instantiate_from_dir(resources.template_dir("host"))
    try:
        info = api.server_info_query("0.16.0")
        assert info["platform_name"] == "host" and info["is_template"] is True
        options = {o["name"]: o for o in info["project_options"]}
        assert "crt" in options["board"]["choices"]
    finally:
        api.shutdown()


@pytest.mark.slow
def test_legacy_client_generates_builds_and_talks_to_a_host_project(legacy, tmp_path_factory, tmp_path):
    import shutil

    from project_api import resources
    from project_helpers import compiled_mlf

    if not (shutil.which("make") and shutil.which("cc")):
        pytest.skip("needs make and a C compiler")
    legacy_client, _ = legacy
    mlf = compiled_mlf(tmp_path_factory, "tflm_hello_world_float.tflite")
    project = tmp_path / "project"
    template_api = legacy_client.instantiate_from_dir(resources.template_dir("host"))
    try:
        info = template_api.server_info_query("0.16.0")
        # Legacy tvmc sent every advertised option, as strings, with its defaults filled in.
        options = {o["name"]: (None if o["default"] is None else str(o["default"])) for o in info["project_options"]}
        options.update(board="crt", verbose="false")
        template_api.generate_project(str(mlf), "/legacy/standalone_crt", str(project), options)
    finally:
        template_api.shutdown()

    api = legacy_client.instantiate_from_dir(project)
    try:
        assert api.server_info_query("0.16.0")["is_template"] is False
        api.build({"verbose": "false"})
        api.flash({})
        api.open_transport({})
        api.write_transport(bytes.fromhex("FFFD04000000820000017BE9"), 5.0)  # session start, nonce 0x82
        reply = b""
        while len(reply.lstrip(b"\xfe")) < 12:
            reply += api.read_transport(64, 5.0)["data"]
        assert reply.lstrip(b"\xfe")[:7] == bytes.fromhex("FFFD0400000082")
        api.close_transport()
    finally:
        api.shutdown()
