"""microtvm-projects: deploy TVM-compiled models to microcontrollers.

Layers (see docs/architecture.md): the compiler (``project_api.compiler``) writes Model Library
Format archives; the Project API (``project_api.server`` / ``project_api.client``, options in
``project_api.options``) and the template framework (``project_api.template``, laying projects
out with ``project_api.project_gen``) turn them into board projects; the byte-stream RPC
(``project_api.rpc``, ``project_api.session``) drives inference on the device, which
``project_api.emulators`` run without hardware; ``project_api.cli`` is the ``tvmc`` command line.
"""

__version__ = "0.1.0"

# The Project API protocol version we speak (TVM's Project API protocol 1).
PROTOCOL_VERSION = 1
