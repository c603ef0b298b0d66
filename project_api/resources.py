"""Where the data files live: in a checkout (top-level folders) or in an installed wheel
(``project_api/_data/``, see pyproject.toml). Every lookup goes through here."""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"microtvm-projects data folder '{name}' is missing: looked in {_PACKAGE_DIR / '_data'} "
        f"and {_PACKAGE_DIR.parent}. Reinstall the package (pip install microtvm-projects)."
    )


def template_projects_dir() -> Path:
    return _data_dir("template_projects")


def template_dir(platform: str) -> Path:
    """The template project folder of a platform (``host``, ``cortex_m``, ``zephyr``, ``arduino``)."""
    return template_projects_dir() / platform


def available_templates() -> list:
    root = template_projects_dir()
    return sorted(p.name for p in root.iterdir() if (p / "microtvm_api_server.py").is_file())


def device_runtime_dir() -> Path:
    """The on-device C runtime shared by every template."""
    return template_projects_dir() / "device_runtime"


def boards_file() -> Path:
    return _data_dir("boards") / "boards.yaml"
