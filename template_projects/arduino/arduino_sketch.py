"""The Arduino sketch a project is (docs/arduino.md): the project folder is the sketch folder, its
`.ino` carries the folder's name, and every source Arduino compiles sits flat in `src/` (the device
runtime, the model's generated C, model_glue.c and the board layer), so each `#include "x.h"`
finds its header beside the file that includes it: no include rewriting, no include flags.
On AVR the model's constants live in RAM too, so what fits is checked here before and after the build."""

import pathlib
import re
import shutil

from project_api import project_gen, resources, server
from project_api.emulators import simavr

from arduino_tools import BUILD_DIR

SKETCH_TEMPLATE_DIR = "sketch"  # in the template: <project_type>.ino and src/
# RAM an AVR sketch needs beyond the model: the Arduino core (Serial buffers, millis) and, for
# host_driven, the RPC runtime's two packet buffers (MTP_MAX_PACKET on AVR) and state.
AVR_RUNTIME_RAM_BYTES = {"host_driven": 1024, "example_project": 320}
# Stack the firmware needs at run time on top of its static data (kernels and the RPC server).
AVR_STACK_RESERVE_BYTES = 512
# Arduino's rule for sketch names (the sketch folder and its .ino share it).
SKETCH_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,62}$")


def is_avr(board) -> bool:
    return board.cpu.startswith("atmega")


def check_avr_ram(model, board, project_type) -> None:
    """On AVR, constants live in RAM too (unless placed in program memory, which TVM's C does not do)."""
    io_bytes = sum(t.size_bytes for t in model.inputs + model.outputs)
    runtime = AVR_RUNTIME_RAM_BYTES[project_type]
    need = model.workspace_size_bytes + io_bytes + model.constants_size_bytes + runtime + AVR_STACK_RESERVE_BYTES
    if need > board.ram_bytes:
        raise project_gen.ProjectGenerationError(
            f"model '{model.name}' does not fit the RAM of board {board.name}: it needs about {need:,} B "
            f"(arena {model.workspace_size_bytes:,} + inputs/outputs {io_bytes:,} + constants "
            f"{model.constants_size_bytes:,}, which AVR keeps in RAM, + runtime {runtime:,} + stack "
            f"{AVR_STACK_RESERVE_BYTES:,}) but the board has {board.ram_bytes:,} B; pick a smaller (or int8) model "
            f"or a board with more RAM")


def _copy_flat(files, dest: pathlib.Path, taken: dict) -> None:
    """Copy files into the flat src/ folder, refusing two files with one name."""
    for path in sorted(files):
        if path.name in taken:
            raise project_gen.ProjectGenerationError(
                f"two sources share the name {path.name} ({taken[path.name]} and {path}); the Arduino sketch keeps "
                "all sources in one src/ folder, so rename one")
        taken[path.name] = path
        shutil.copy2(path, dest / path.name)


def _arduino_sources(folder: pathlib.Path):
    return [p for p in folder.glob("*") if p.is_file() and p.suffix in (".c", ".cpp", ".h")]


def lay_out_sketch(template_dir, mlf_path, project_dir, options, model):
    """Lay out the sketch (see the module docstring) in the prepared project_dir."""
    sketch_name = project_dir.name
    if not SKETCH_NAME.match(sketch_name):
        raise project_gen.ProjectGenerationError(
            f"project directory name '{sketch_name}' is not a valid Arduino sketch name (letters, digits, _ - . ; "
            "starting with a letter or digit; at most 63 characters): Arduino names the sketch after its folder")
    project_type = options["project_type"]
    for server_file in template_dir.glob("*.py"):  # the server and these helper modules
        shutil.copy2(server_file, project_dir / server_file.name)
    project_gen.install_mlf(mlf_path, project_dir, model)

    src = project_dir / "src"
    src.mkdir()
    taken = {"model_glue.c": "the generated model glue"}
    sketch = template_dir / SKETCH_TEMPLATE_DIR
    _copy_flat(_arduino_sources(sketch / "src"), src, taken)
    runtime = resources.device_runtime_dir()
    _copy_flat(_arduino_sources(runtime / "include"), src, taken)
    if project_type == "host_driven":  # the standalone demo needs only the model's headers
        _copy_flat(_arduino_sources(runtime / "src"), src, taken)
    codegen = project_dir / project_gen.MLF_DIRNAME / "codegen" / "host"
    unsupported = [p.name for p in (codegen / "src").glob("*") if p.suffix not in (".c", ".h")]
    if unsupported or any((codegen / "lib").glob("*")):
        raise project_gen.ProjectGenerationError(
            f"the MLF holds files Arduino cannot compile ({', '.join(unsupported) or 'codegen/host/lib objects'}); "
            "compile the model with the C target (tvmc compile --target c)")
    _copy_flat(_arduino_sources(codegen / "src") + _arduino_sources(codegen / "include"), src, taken)
    project_gen.write_model_glue(model, src / "model_glue.c")
    shutil.copy2(sketch / f"{project_type}.ino", project_dir / f"{sketch_name}.ino")
    project_gen.extract_extra_files(options.get("extra_files_tar"), project_dir)
    project_gen.write_project_yaml(project_dir, options, model)


def firmware_elf(project_dir: pathlib.Path) -> pathlib.Path:
    return project_dir / BUILD_DIR / f"{project_dir.name}.ino.elf"


def check_avr_firmware_ram(elf, board) -> None:
    """The built firmware's static RAM plus the stack reserve must fit the board."""
    flash, ram = simavr.avr_memory_usage(elf)
    if ram + AVR_STACK_RESERVE_BYTES > board.ram_bytes:
        raise server.ServerError(
            f"the firmware uses {ram:,} B of static RAM (.data + .bss) and needs {AVR_STACK_RESERVE_BYTES:,} B "
            f"of stack, more than the {board.ram_bytes:,} B of board {board.name}; use a smaller model")
    if flash > board.flash_bytes:
        raise server.ServerError(
            f"the firmware takes {flash:,} B of flash, more than the {board.flash_bytes:,} B of board {board.name}")
