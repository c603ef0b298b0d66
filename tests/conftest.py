"""Shared pytest fixtures. ../shared (beside the checkout) holds real models; tests that need it
skip with a reason when it is absent, as it is in a user's clone."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
FIXTURE_MODELS_DIR = SHARED_DIR / "fixtures" / "models"
LEGACY_MLF_DIR = SHARED_DIR / "fixtures" / "legacy-mlf"


def fixture_path(*parts) -> Path:
    """Path of a file under ../shared/fixtures, or skip the test saying why."""
    path = SHARED_DIR.joinpath("fixtures", *parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the ../shared fixtures are not beside this checkout")
    return path


@pytest.fixture
def shared_fixtures() -> Path:
    if not (SHARED_DIR / "fixtures").is_dir():
        pytest.skip(f"{SHARED_DIR / 'fixtures'} is absent: the ../shared fixtures are not beside this checkout")
    return SHARED_DIR / "fixtures"
