import pytest

from project_api.naming import c_identifier


@pytest.mark.parametrize(
    "name, ident",
    [
        ("default", "default"),
        ("serving_default_input:0", "serving_default_input_0"),
        ("conv2d/BiasAdd;StatefulPartitionedCall", "conv2d_BiasAdd_StatefulPartitionedCall"),
        ("1st-layer", "_1st_layer"),
        ("x", "x"),
        ("double", "double_"),
        ("int", "int_"),
    ],
)
def test_c_identifier_follows_the_legacy_rule(name, ident):
    assert c_identifier(name) == ident


def test_c_identifier_refuses_an_empty_name():
    with pytest.raises(ValueError, match="empty"):
        c_identifier("")
