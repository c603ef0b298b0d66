"""Errors the compiler reports to the user.

Each message is one line that names the problem (file, operator, node) and what to do;
``tvmc compile`` prints it as ``tvmc: error: <message>`` without a traceback."""


class CompileError(Exception):
    """The model cannot be compiled; the message says why and what to do."""


class UnsupportedOperatorError(CompileError):
    """The model uses an operator the TVM frontend cannot import."""

    def __init__(self, op_type: str, node_name: str, model_format: str, alternative: str):
        self.op_type = op_type
        self.node_name = node_name
        self.alternative = alternative
        super().__init__(
            f"operator {op_type} (node '{node_name}') is not supported by the TVM {model_format} "
            f"frontend; nearest supported: {alternative}; replace it and export the model again "
            f"(docs/operators.md lists what is supported)"
        )
