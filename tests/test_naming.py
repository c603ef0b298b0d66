import pytest

from project_api.naming import c_identifier, c_member_name


@pytest.mark.parametrize(
    "name, ident",
    [
        ("default", "default"),
        ("serving_default_input:0", "serving_default_input_0"),
        ("conv2d/BiasAdd;StatefulPartitionedCall", "conv2d_BiasAdd_StatefulPartitionedCall"),
        ("1st-layer", "_1st_layer"),
        ("x", "x"),
    ],
)
def test_c_identifier_follows_the_legacy_rule(name, ident):
    assert c_identifier(name) == ident


def test_c_identifier_refuses_an_empty_name():
    with pytest.raises(ValueError, match="empty"):
        c_identifier("")


def test_struct_members_never_collide_with_c_keywords():
    assert c_member_name("double") == "double_"
    assert c_member_name("int") == "int_"
    assert c_member_name("input:0") == "input_0"
    # model names keep the legacy rule: tvmgen_default_run
    assert c_identifier("default") == "default"
