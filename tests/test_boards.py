"""The board catalogue (boards/boards.yaml through project_api.boards)."""

import collections

import pytest

from project_api import boards, resources

PLATFORMS = {"host", "cortex_m", "zephyr", "arduino"}


def test_catalogue_entries_are_complete_and_sane():
    all_boards = boards.all_boards()
    assert all_boards, "the catalogue is empty"
    for board in all_boards:
        assert board.platform in PLATFORMS, board
        assert isinstance(board.fpu, bool), board
        assert isinstance(board.ram_bytes, int) and board.ram_bytes > 0, board
        assert isinstance(board.flash_bytes, int) and board.flash_bytes > 0, board
        if board.emulator is not None:
            assert board.emulator.get("kind") in ("qemu", "simavr"), board
        for usb_id in (board.usb_vid, board.usb_pid):
            assert usb_id is None or (len(usb_id) == 4 and int(usb_id, 16) >= 0), board


def test_every_spelling_names_one_board_per_platform():
    for platform in PLATFORMS:
        spellings = collections.Counter(boards.board_choices(platform))
        duplicated = [name for name, count in spellings.items() if count > 1]
        assert not duplicated, f"{platform}: {duplicated} name more than one board"


def test_lookup_by_name_and_legacy_alias():
    assert boards.get_board("host").platform == "host"
    assert boards.get_board("crt", "host").name == "host"
    assert boards.get_board("native").name == "host"
    assert boards.get_board("mps2_an386", "cortex_m").cpu == "cortex-m4"


def test_unknown_board_names_the_choices():
    with pytest.raises(boards.UnknownBoardError) as info:
        boards.get_board("no_such_board", "host")
    message = str(info.value)
    assert "no_such_board" in message and "host" in message and "\n" not in message
    with pytest.raises(boards.UnknownBoardError, match="for platform 'host'"):
        boards.get_board("mps2_an386", "host")


def test_board_choices_lists_names_then_aliases():
    choices = boards.board_choices("host")
    assert choices[0] == "host" and {"crt", "native"} <= set(choices)
    assert set(boards.board_names("cortex_m")) <= set(boards.board_choices("cortex_m"))
    assert boards.board_choices("no_such_platform") == ()


def test_catalogue_file_is_found_through_resources():
    assert resources.boards_file().is_file()
    assert resources.boards_file().name == "boards.yaml"
