"""Helpers every template server uses to lay out a generated project (contract 5).

``generate_common`` does the steps all templates share; a template then adds its build files:

    PROJECT/microtvm_api_server.py, Makefile ...   the template's own files (copy_template)
    PROJECT/model.tar, PROJECT/model/              the MLF and its extracted sources (install_mlf)
    PROJECT/device_runtime/                        the shared on-device runtime (copy_device_runtime)
    PROJECT/src/model_glue.c                       mtp_model for the runtime (write_model_glue)
    PROJECT/project.yaml                           the generation options (write_project_yaml)
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import shutil
from typing import List, Optional, Sequence, Tuple

import numpy as np
import yaml

from . import __version__, naming, resources
from .boards import Board
from .mlf import legacy
from .mlf import reader as mlf
from .server import ServerError, ServerInfo

from .options import compile_definitions, merge_with_project_yaml
from .tool_run import failure_line

MLF_FILENAME = "model.tar"
MLF_DIRNAME = "model"
DEVICE_RUNTIME_DIRNAME = "device_runtime"
MODEL_GLUE_RELPATH = "src/model_glue.c"
PROJECT_YAML = "project.yaml"

# Never copied from a template into a project.
_TEMPLATE_SKIP = ("__pycache__", "build", "logs", "*.pyc")


class ProjectGenerationError(ServerError):
    """A project cannot be generated; the message says why and what to do."""


# ---- the model as project generation sees it --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str  # as in the model (unsanitized)
    dtype: str  # numpy dtype name
    shape: Tuple[int, ...]
    size_bytes: int


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str  # module name: tvmgen_<c_identifier(name)>_run
    inputs: Tuple[TensorInfo, ...]
    outputs: Tuple[TensorInfo, ...]
    workspace_size_bytes: int
    constants_size_bytes: int
    io_size_bytes: int
    has_reset: bool = False  # the MLF's runtime defines tvmgen_<c>_reset (ours do; legacy ones do not)

    @property
    def c_name(self) -> str:
        return naming.c_identifier(self.name)


def read_mlf(mlf_path: pathlib.Path) -> ModelInfo:
    """The model info of an MLF archive (any version read_metadata reads), with one-line errors."""
    mlf_path = pathlib.Path(mlf_path)
    try:
        metadata = mlf.read_metadata(mlf_path)
    except FileNotFoundError as err:
        raise ProjectGenerationError(f"Model Library Format archive {mlf_path} does not exist; run tvmc compile first") from err
    except mlf.MLFError as err:
        raise ProjectGenerationError(str(err)) from err
    return model_info(metadata, str(mlf_path))


def _tensor_infos(tensors: Sequence[dict], where: str) -> Tuple[TensorInfo, ...]:
    infos = []
    for t in tensors:
        name, dtype, size = t["name"], str(t["dtype"]), int(t["size"])
        itemsize = np.dtype(dtype).itemsize
        shape = tuple(int(d) for d in (t.get("shape") if t.get("shape") is not None else (size // itemsize,)))
        if int(np.prod(shape, dtype=np.int64)) * itemsize != size:
            raise ProjectGenerationError(f"{where}: tensor '{name}' has shape {list(shape)} of {dtype} but size {size} B")
        infos.append(TensorInfo(name, dtype, shape, size))
    return tuple(infos)


def model_info(metadata: dict, where: str = "MLF") -> ModelInfo:
    """ModelInfo from ``project_api.compiler.mlf.read_metadata``'s normalized dict."""
    if not metadata.get("inputs") or not metadata.get("outputs"):
        raise ProjectGenerationError(f"{where}: the metadata does not describe the model's inputs and outputs")
    try:
        return ModelInfo(
            name=metadata["model_name"],
            inputs=_tensor_infos(metadata["inputs"], where),
            outputs=_tensor_infos(metadata["outputs"], where),
            workspace_size_bytes=int(metadata.get("workspace_size_bytes") or 0),
            constants_size_bytes=int(metadata.get("constants_size_bytes") or 0),
            io_size_bytes=int(metadata.get("io_size_bytes") or 0),
            has_reset=bool((metadata.get("ours") or {}).get("reset_function")),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ProjectGenerationError(f"{where}: malformed tensor description in the metadata ({err})") from err


def check_model_fits(model: ModelInfo, board: Board) -> None:
    """Refuse a model whose static memory cannot fit the board (code size is checked at link time)."""
    io_bytes = sum(t.size_bytes for t in model.inputs + model.outputs)
    ram = model.workspace_size_bytes + io_bytes
    if ram > board.ram_bytes:
        raise ProjectGenerationError(
            f"model '{model.name}' needs {ram:,} B of RAM (arena {model.workspace_size_bytes:,} B + inputs/outputs "
            f"{io_bytes:,} B) but board {board.name} has {board.ram_bytes:,} B; pick a board with more RAM or a smaller model"
        )
    if model.constants_size_bytes > board.flash_bytes:
        raise ProjectGenerationError(
            f"model '{model.name}' has {model.constants_size_bytes:,} B of constants but board {board.name} has "
            f"{board.flash_bytes:,} B of flash; pick a board with more flash or a smaller model"
        )


# ---- files ------------------------------------------------------------------------------------


def prepare_project_dir(project_dir: pathlib.Path) -> None:
    """Create project_dir; it must not exist yet, or be empty."""
    project_dir = pathlib.Path(project_dir)
    if project_dir.exists() and (not project_dir.is_dir() or any(project_dir.iterdir())):
        raise ProjectGenerationError(f"project directory {project_dir} already exists and is not empty; remove it or pick another")
    try:
        project_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file on the way, /proc, a read-only mount, no permission
        raise ProjectGenerationError(f"cannot create project directory {project_dir}: {err.strerror or err}; "
                                     f"pick a PROJECT_DIR in a writable folder") from err


def copy_template(template_dir: pathlib.Path, project_dir: pathlib.Path) -> None:
    """Copy the template's files (its server, build files, src/) into the project."""
    shutil.copytree(template_dir, project_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_TEMPLATE_SKIP))


def _extract(tar_path: pathlib.Path, dest: pathlib.Path, what: str) -> None:
    try:
        mlf.extract_mlf(tar_path, dest)  # refuses links and members outside dest
    except (mlf.MLFError, OSError) as err:
        raise ProjectGenerationError(f"cannot extract {what}: {err}") from err


def install_mlf(mlf_path: pathlib.Path, project_dir: pathlib.Path, info: ModelInfo) -> None:
    """Copy the MLF to PROJECT/model.tar and extract it to PROJECT/model/; ``info`` is its
    read_mlf (the caller has read it to check the model fits, so it is not read again)."""
    mlf_path = pathlib.Path(mlf_path)
    if mlf_path.is_dir():
        raise ProjectGenerationError(f"{mlf_path} is a directory; give the Model Library Format .tar archive")
    shutil.copy2(mlf_path, project_dir / MLF_FILENAME)
    _extract(project_dir / MLF_FILENAME, project_dir / MLF_DIRNAME, "Model Library Format archive")
    try:  # a TVM 0.8-0.18 archive becomes our layout here, so every template builds it unchanged
        legacy.translate_if_legacy(project_dir / MLF_DIRNAME, str(mlf_path))
    except mlf.MLFError as err:
        raise ProjectGenerationError(str(err)) from err
    header = project_dir / MLF_DIRNAME / "codegen" / "host" / "include" / f"tvmgen_{info.c_name}.h"
    if not header.is_file():
        raise ProjectGenerationError(
            f"{mlf_path} lacks codegen/host/include/tvmgen_{info.c_name}.h: export it with the C interface (tvmc compile)"
        )


def copy_device_runtime(project_dir: pathlib.Path) -> None:
    shutil.copytree(resources.device_runtime_dir(), pathlib.Path(project_dir) / DEVICE_RUNTIME_DIRNAME,
                    dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_TEMPLATE_SKIP))


def extract_extra_files(extra_files_tar: Optional[str], project_dir: pathlib.Path) -> None:
    """The extra_files_tar option: a tar extracted over the project."""
    if not extra_files_tar:
        return
    path = pathlib.Path(extra_files_tar)
    if not path.is_file():
        raise ProjectGenerationError(f"extra_files_tar {path} does not exist")
    _extract(path, project_dir, "extra_files_tar")


def write_project_yaml(project_dir: pathlib.Path, options: dict, model: Optional[ModelInfo] = None) -> pathlib.Path:
    path = pathlib.Path(project_dir) / PROJECT_YAML
    content = {"generated_by": f"microtvm-projects {__version__}", "options": dict(options)}
    if model is not None:
        content["model"] = model.name
    path.write_text(
        "# The options this project was generated with (read by its microtvm_api_server.py).\n"
        + yaml.safe_dump(content, sort_keys=True), encoding="utf-8")
    return path


def read_project_yaml(project_dir: pathlib.Path) -> dict:
    """The options a project was generated with ({} for a template)."""
    path = pathlib.Path(project_dir) / PROJECT_YAML
    if not path.is_file():
        return {}
    regenerate = "regenerate the project with tvmc micro create -f"
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = (f"line {mark.line + 1}: " if mark is not None else "") + (getattr(err, "problem", None) or str(err))
        raise ProjectGenerationError(f"{path} is not valid YAML ({problem}); {regenerate}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ProjectGenerationError(f"cannot read {path} ({err}); {regenerate}") from err
    options = content.get("options") if isinstance(content, dict) else None
    if not isinstance(options, (dict, type(None))) or not isinstance(content, dict):
        raise ProjectGenerationError(f"{path} is not a project.yaml (want a mapping with an 'options' mapping); "
                                     f"{regenerate}")
    return dict(options or {})


# ---- model_glue.c -----------------------------------------------------------------------------

_DTYPE_CODES = {"i": "MTP_DTYPE_INT", "u": "MTP_DTYPE_UINT", "f": "MTP_DTYPE_FLOAT", "b": "MTP_DTYPE_UINT"}


def _c_string(text: str) -> str:
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F and ch != "?":  # '?' avoids trigraphs
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _tensor_table(kind: str, tensors: Sequence[TensorInfo]) -> Tuple[List[str], str]:
    """Buffers + shapes + the mtp_tensor_t array of one direction; returns (lines, array name)."""
    lines = []
    entries = []
    for i, t in enumerate(tensors):
        dtype = np.dtype(t.dtype)
        if dtype.kind not in _DTYPE_CODES:
            raise ProjectGenerationError(f"tensor '{t.name}' has dtype {t.dtype}, which the device runtime cannot carry")
        buf = f"{kind}{i}"
        # A union with the widest scalar types aligns the buffer for any element type, in plain C99.
        lines.append(f"static union {{ uint8_t bytes[{max(t.size_bytes, 1)}]; double d; int64_t i; void* p; }} {buf}_buf;"
                     f"  /* {t.name} */")
        shape = ", ".join(str(d) for d in t.shape) or "1"
        lines.append(f"static const int32_t {buf}_shape[{max(len(t.shape), 1)}] = {{{shape}}};")
        entries.append(
            f"  {{{_c_string(t.name)}, {_DTYPE_CODES[dtype.kind]}, {dtype.itemsize * 8}, {len(t.shape)}, "
            f"{buf}_shape, {t.size_bytes}u, {buf}_buf.bytes}},"
        )
    if not tensors:
        return lines, "0"
    lines.append(f"static const mtp_tensor_t {kind}s[{len(tensors)}] = {{")
    lines.extend(entries)
    lines.append("};")
    return lines, f"{kind}s"


def model_glue_source(model: ModelInfo) -> str:
    mod = model.c_name
    input_lines, inputs = _tensor_table("input", model.inputs)
    output_lines, outputs = _tensor_table("output", model.outputs)
    run = ["static int32_t run_model(void) {",
           f"  struct tvmgen_{mod}_inputs inputs_struct;",
           f"  struct tvmgen_{mod}_outputs outputs_struct;"]
    for kind, tensors in (("inputs", model.inputs), ("outputs", model.outputs)):
        for i, t in enumerate(tensors):
            run.append(f"  {kind}_struct.{naming.c_member_name(t.name)} = {kind[:-1]}{i}_buf.bytes;")
    run += [f"  return tvmgen_{mod}_run(&inputs_struct, &outputs_struct);", "}"]
    return "\n".join([
        f"/* Generated by microtvm-projects {__version__} from the model's MLF metadata: do not edit.",
        " * The model as the device runtime sees it (device_runtime/include/mtp_model.h). */",
        "#include <stdint.h>",
        "",
        '#include "mtp_model.h"',
        f'#include "tvmgen_{mod}.h"',
        "",
        *input_lines,
        *output_lines,
        "",
        *run,
        "",
        "const mtp_model_t mtp_model = {",
        f"  {_c_string(model.name)}, {len(model.inputs)}, {len(model.outputs)}, {inputs}, {outputs},",
        f"  {model.workspace_size_bytes}u, run_model, {f'tvmgen_{mod}_reset' if model.has_reset else '0'},",
        "};",
        "",
        "#ifdef TVMGEN_PROFILE",
        "/* The profiling build's per-kernel tick table (an MLF from before it has none). */",
        f"#ifdef TVMGEN_{mod.upper()}_NUM_CALLS",
        f"const mtp_model_profile_t mtp_model_profile = {{TVMGEN_{mod.upper()}_NUM_CALLS, tvmgen_{mod}_call_ticks}};",
        "#else",
        "const mtp_model_profile_t mtp_model_profile = {0, 0};",
        "#endif",
        "#endif",
        "",
    ])


def write_model_glue(model: ModelInfo, path: pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_glue_source(model), encoding="utf-8")
    return path


# ---- all of it --------------------------------------------------------------------------------


def is_template(server_dir: pathlib.Path) -> bool:
    """A server's directory is a template until generation puts the MLF in it (the legacy rule)."""
    return not (pathlib.Path(server_dir) / MLF_FILENAME).exists()


def server_info(platform: str, server_dir: pathlib.Path, project_options) -> ServerInfo:
    """What every template server answers to server_info_query."""
    template = is_template(server_dir)
    mlf_path = None if template else pathlib.Path(server_dir) / MLF_FILENAME
    return ServerInfo(platform, template, mlf_path, project_options)


@contextlib.contextmanager
def project_dir_removed_on_failure(project_dir: pathlib.Path):
    """Prepare ``project_dir`` for generation; if the body fails, remove what it made (the whole
    directory, or its contents when it existed and was empty) so a retry starts clean."""
    project_dir = pathlib.Path(project_dir)
    existed = project_dir.exists()
    prepare_project_dir(project_dir)
    try:
        yield project_dir
    except BaseException:
        if existed:
            for child in project_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(project_dir, ignore_errors=True)
        raise


def remove_unbuilt(project_dir: pathlib.Path, relpaths: Sequence[str]) -> None:
    """Remove files and folders the project's type does not build (a project holds only the
    sources it builds)."""
    for relpath in relpaths:
        path = pathlib.Path(project_dir) / relpath
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def lay_out_common(template_dir: pathlib.Path, mlf_path: pathlib.Path, project_dir: pathlib.Path, options: dict,
                   model: ModelInfo) -> None:
    """The files every template's project has (see the module docstring), into the prepared
    ``project_dir``; ``model`` is the MLF's read_mlf."""
    copy_template(template_dir, project_dir)
    install_mlf(mlf_path, project_dir, model)
    copy_device_runtime(project_dir)
    write_model_glue(model, project_dir / MODEL_GLUE_RELPATH)
    extract_extra_files(options.get("extra_files_tar"), project_dir)
    write_project_yaml(project_dir, options, model)


def generate_common(template_dir: pathlib.Path, mlf_path: pathlib.Path, project_dir: pathlib.Path,
                    options: dict, board: Board, model: Optional[ModelInfo] = None) -> ModelInfo:
    """lay_out_common after the model is checked to fit the board, with the half-made project
    directory removed on failure so a retry starts clean; returns the model info (``model``: the
    MLF's read_mlf when the caller has it). TemplateHandler.generate_project does this and more;
    this stays for servers written without it (projects generated by microtvm-projects 0.1.0)."""
    with project_dir_removed_on_failure(project_dir) as project_dir:
        model = model or read_mlf(mlf_path)
        check_model_fits(model, board)
        lay_out_common(template_dir, mlf_path, project_dir, options, model)
        return model


# Names the template servers of microtvm-projects 0.1.0 call (compile_definitions too, imported
# above), which the projects they generated keep calling.
options_with_defaults = merge_with_project_yaml
tool_failure = failure_line
