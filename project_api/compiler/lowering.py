"""Lower a model file to a LoweredModel: an ordered list of plain-C kernel calls over storage tensors.

model file --frontend--> Relax --fusion (int8 groups)--> Relax pipeline (legalize, fold, fuse,
schedule; stopped before VM lowering) --> main is a flat list of allocations, kernel calls and
aliases --> LoweredModel (tensors resolved to storage) + the kernels' C source.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Union

from ..naming import c_identifier
from . import ir
from .errors import CompileError

_ALIAS_OPS = ("relax.reshape", "relax.memory.view")


def _target_string(target: Union[str, dict, None]) -> str:
    if target is None or target == "c":
        return "c"
    if isinstance(target, dict):
        spec = target
    else:
        text = str(target).strip()
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as err:
                raise CompileError(f"target '{text}' is not valid JSON: {err}") from None
        else:
            raise CompileError(f"unsupported target '{text}': use \"c\" or a JSON target such as "
                               "'{\"kind\": \"llvm\", \"mtriple\": \"thumbv7em-none-eabihf\", \"mcpu\": \"cortex-m4\"}'")
    if not isinstance(spec, dict) or spec.get("kind") not in ("c", "llvm"):
        raise CompileError(f"unsupported target {json.dumps(spec)}: its \"kind\" must be \"c\" or \"llvm\"")
    return json.dumps(spec, sort_keys=True)


def _relax_pipeline():
    from tvm import relax, transform

    from .schedule import schedule_pass

    return transform.Sequential(
        [
            relax.transform.DecomposeOpsForInference(),
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            relax.transform.DeadCodeElimination(),
            schedule_pass,
            relax.transform.RewriteDataflowReshape(),
            relax.transform.ToNonDataflow(),
            relax.transform.RemovePurityChecking(),
            relax.transform.CallTIRRewrite(),
            relax.transform.DeadCodeElimination(),
        ]
    )


def lower_model(model_path, model_name: str = "default", target="c", mcpu: Optional[str] = None,
                integer_kernels: bool = True, patch_plan=None, chooser=None) -> ir.LoweredModel:
    """``integer_kernels=False`` keeps an int8 TFLite model on TVM's own (float-requantizing)
    lowering: bench/speed.py measures it as the peer the integer kernels replace. ``patch_plan``
    (a ``patching.PatchPlan``) runs the first convolutions of an int8 model band by band.
    ``chooser`` (kernel signature -> knobs, from tuning records) picks the integer kernels' schedules."""
    import tvm

    from . import frontend, fusion
    from ._tvm_c_kernels import build_c_kernels

    target_string = _target_string(target)
    prefix = f"tvmgen_{c_identifier(model_name)}_"
    integer = (_lower_int8_tflite(model_path, model_name, prefix, target_string, mcpu, patch_plan, chooser)
               if integer_kernels else None)
    if integer is not None:
        return integer
    if patch_plan is not None:
        raise CompileError(f"'{model_path}' is not a fully-int8 TFLite model: patch-based inference does not apply")
    imported = frontend.load_model(model_path)
    notes = list(imported.notes)
    mod = fusion.outline_quantized_groups(imported.mod)
    source_text = mod.script(show_meta=False)
    try:
        with tvm.target.Target("c"):
            mod = _relax_pipeline()(mod)
    except CompileError:
        raise
    except Exception as err:
        raise CompileError(f"TVM could not compile '{model_path}': {frontend.error_reason(err)}") from None

    builder = _ModelBuilder(mod, imported, prefix)
    builder.walk()
    try:
        kernels_c, c_kernels = build_c_kernels(builder.kernel_funcs())
    except CompileError:
        raise
    except Exception as err:
        raise CompileError(f"TVM could not generate C kernels for '{model_path}': {frontend.error_reason(err)}") from None
    builder.add_workspaces(c_kernels)
    kernels_c += builder.copy_kernels_c()
    if mcpu:
        notes.append(f"mcpu {mcpu} recorded; the kernels are portable C with no CPU-specific schedule yet")
    if target_string != "c":
        notes.append("LLVM target recorded; the kernels are still emitted as C source")
    return ir.LoweredModel(
        name=model_name,
        tensors=builder.tensors,
        inputs=list(imported.input_names),
        outputs=list(imported.output_names),
        calls=builder.calls,
        kernels_c=kernels_c,
        source_text=source_text,
        target=target_string,
        notes=notes,
    )


def _lower_int8_tflite(model_path, model_name: str, prefix: str, target_string: str, mcpu: Optional[str],
                       patch_plan=None, chooser=None):
    """A fully-int8 TFLite model in integer kernels (qnn.py), or None for the Relax path."""
    from pathlib import Path

    from . import frontend, qnn, qnn_choices, qnn_micro_kernels
    from ._tvm_c_kernels import build_c_kernels
    from .qnn_schedule import schedule

    from . import onnx_qdq

    path = Path(model_path)
    suffix = path.suffix.lower()
    if suffix not in (".tflite", ".onnx") or not path.is_file():
        return None
    # An ONNX QDQ model takes the integer path as the TFLite graph it states (onnx_qdq.py).
    data = onnx_qdq.file_as_tflite(path) if suffix == ".onnx" else path.read_bytes()
    if data is None:
        return None
    model, subgraph, op_names, input_names, output_names = frontend.read_tflite(path, data)
    builder = qnn.lower_tflite_int8(model, subgraph, op_names, input_names, output_names, prefix, chooser)
    if builder is None:
        return None
    wrappers = {}
    if patch_plan is not None:
        from . import patching

        wrappers = patching.apply(builder, patch_plan)
    funcs = {symbol: schedule(symbol, func) for symbol, func in builder.funcs.items()}
    try:
        kernels_c, c_kernels = build_c_kernels(funcs)
    except Exception as err:
        raise CompileError(f"TVM could not generate C kernels for '{model_path}': {frontend.error_reason(err)}") from None
    knobs = {symbol: spec.knobs for symbol, spec in builder.kernel_specs.items()}
    kernels_c = qnn_micro_kernels.with_micro_kernels(qnn_choices.apply_c_knobs(kernels_c, knobs))
    notes = [f"int8 {'ONNX QDQ' if suffix == '.onnx' else 'TFLite'} model lowered to integer kernels with "
             "tflite-micro's fixed-point requantization"]
    if patch_plan is not None:
        c_kernels = patching.with_wrappers(c_kernels, wrappers)
    builder.add_workspaces(c_kernels)
    if patch_plan is not None:
        kernels_c += patching.wrappers_c(builder.tensors, builder.calls, wrappers)
        notes.append(patch_plan.describe())
    if chooser is not None:
        tuned = [symbol for symbol, spec in builder.kernel_specs.items()
                 if spec.kind and spec.knobs != qnn_choices.default_knobs(spec.kind, spec.params)]
        notes.append(f"tuning records: {len(tuned)} of {len(builder.kernel_specs)} kernels take tuned knobs")
    if mcpu:
        notes.append(f"mcpu {mcpu}: the C compiler picks the DSP micro-kernels from its -mcpu "
                     "(__ARM_FEATURE_SIMD32); the same C is portable elsewhere")
    source = _integer_source_text(builder.calls, input_names, funcs)
    return ir.LoweredModel(
        name=model_name, tensors=builder.tensors, inputs=list(input_names), outputs=list(output_names),
        calls=builder.calls, kernels_c=kernels_c, source_text=source, target=target_string, notes=notes)


def _integer_source_text(calls, input_names, funcs) -> str:
    """What src/<name>.relax archives for the integer path: the call sequence, then each kernel's TIR."""
    import tvm

    lines = ["# int8 TFLite model in integer kernels (project_api/compiler/qnn.py): main calls, in order",
             f"def main({', '.join(input_names)}):"]
    lines += [f"    {call.func_name}({', '.join(call.args)})" for call in calls]
    module = tvm.IRModule({tvm.ir.GlobalVar(symbol): func for symbol, func in funcs.items()})
    return "\n".join(lines) + "\n\n" + module.script(show_meta=False)


class _ModelBuilder(ir.PartsBuilder):
    """Walks the lowered Relax main and records storage tensors and kernel calls."""

    def __init__(self, mod, imported, prefix: str):
        super().__init__(imported.input_names, imported.output_names)
        self.mod = mod
        self.imported = imported
        self.prefix = prefix
        self._storage: Dict = {}  # relax Var -> storage tensor name (or list of names for tuples)
        self._constants: List = []  # (GenericConst, name)
        self._used_funcs: Dict[str, object] = {}
        self._copies: Dict = {}  # (C type, element count) -> copy kernel symbol
        self._written = set()

    def _lookup(self, var):
        for key, value in self._storage.items():
            if key.same_as(var):
                return value
        raise CompileError(f"internal error: lowered model reads '{var.name_hint}' before defining it")

    def _constant(self, const) -> str:
        for known, name in self._constants:
            if known.same_as(const):
                return name
        data = const.value.numpy()
        name = self._fresh("constant")
        self.tensors[name] = ir.Tensor(name, tuple(int(d) for d in data.shape), str(data.dtype), ir.CONSTANT, data)
        self._constants.append((const, name))
        return name

    def _arg(self, arg) -> str:
        from tvm import relax

        if isinstance(arg, relax.Var):
            storage = self._lookup(arg)
            if isinstance(storage, list):
                raise CompileError(f"internal error: tuple '{arg.name_hint}' passed to a kernel")
            return storage
        import tvm

        if isinstance(arg, tvm.ir.GenericConst):
            return self._constant(arg)
        raise CompileError(f"internal error: unsupported kernel argument {type(arg).__name__}")

    def walk(self) -> None:
        import tvm
        from tvm import relax

        main = self.mod["main"]
        for param, name in zip(main.params, self.imported.input_names):
            self._storage[param] = name
            self.tensors[name] = ir.Tensor(name, tuple(int(d) for d in param.ty.shape), str(param.ty.dtype), ir.INPUT)
        for block in main.body.blocks:
            for binding in block.bindings:
                self._binding(binding, tvm, relax)
        self._outputs(main.body.body, relax)

    def _binding(self, binding, tvm, relax) -> None:
        value = binding.value
        var = binding.var
        if isinstance(value, relax.Var):
            self._storage[var] = self._lookup(value)
        elif isinstance(value, relax.Tuple):
            self._storage[var] = [self._arg(field) for field in value.fields]
        elif isinstance(value, relax.TupleGetItem):
            self._storage[var] = self._lookup(value.tuple_value)[value.index]
        elif isinstance(value, tvm.ir.GenericConst):
            self._storage[var] = self._constant(value)
        elif isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
            op_name = value.op.name
            if op_name == "relax.builtin.alloc_tensor":
                name = self._fresh("intermediate")
                self.tensors[name] = ir.Tensor(
                    name, tuple(int(d) for d in var.ty.shape), str(var.ty.dtype), ir.INTERMEDIATE
                )
                self._storage[var] = name
            elif op_name in _ALIAS_OPS:
                self._storage[var] = self._arg(value.args[0])
            else:
                raise CompileError(f"cannot lower Relax operator {op_name} to a kernel call")
        elif isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar):
            func = self.mod[value.op]
            symbol = self.prefix + value.op.name_hint
            self._used_funcs[symbol] = func
            args = [self._arg(arg) for arg in value.args]
            # Destination-passing style: the outputs are the fresh allocations nothing wrote yet.
            writes = [a for a in args if self.tensors[a].kind == ir.INTERMEDIATE and a not in self._written]
            if not writes:
                raise CompileError(f"internal error: kernel {symbol} writes no tensor")
            self._written.update(writes)
            self.calls.append(ir.KernelCall(symbol, args, writes))
        else:
            raise CompileError(f"cannot lower Relax binding of {type(value).__name__}")

    def _outputs(self, body, relax) -> None:
        if isinstance(body, relax.Tuple):
            storages = [self._arg(field) for field in body.fields]
        else:
            storage = self._lookup(body) if isinstance(body, relax.Var) else self._arg(body)
            storages = storage if isinstance(storage, list) else [storage]
        types = list(body.ty.fields) if isinstance(body.ty, relax.TupleType) else [body.ty]
        if len(storages) != len(self.imported.output_names) or len(types) != len(storages):
            raise CompileError(
                f"the model declares {len(self.imported.output_names)} outputs but computes {len(storages)}"
            )
        renamed: Dict[str, str] = {}
        for storage, ty, name in zip(storages, types, self.imported.output_names):
            shape = tuple(int(d) for d in ty.shape)  # the model's shape, which a view may change
            tensor = self.tensors[renamed.get(storage, storage)]
            if tensor.kind == ir.INTERMEDIATE and storage not in renamed:
                self._rename(storage, name)
                renamed[storage] = name
                tensor.kind, tensor.shape = ir.OUTPUT, shape
                continue
            # An output that aliases an input, a constant or another output needs its own copy.
            self.tensors[name] = ir.Tensor(name, shape, tensor.dtype, ir.OUTPUT)
            self.calls.append(ir.KernelCall(self._copy_kernel(tensor), [tensor.name, name], [name]))

    def _copy_kernel(self, tensor: ir.Tensor) -> str:
        from .runtime_gen import c_type  # the runtime's C types, so prototypes agree

        key = (c_type(tensor.dtype), tensor.count)
        if key not in self._copies:
            self._copies[key] = f"{self.prefix}copy_{len(self._copies)}"
        return self._copies[key]

    def _rename(self, old: str, new: str) -> None:
        tensor = self.tensors.pop(old)
        tensor.name = new
        self.tensors[new] = tensor
        for call in self.calls:
            call.args = [new if a == old else a for a in call.args]
            call.writes = [new if a == old else a for a in call.writes]

    def kernel_funcs(self) -> Dict[str, object]:
        return dict(self._used_funcs)

    def copy_kernels_c(self) -> str:
        lines = []
        for (ctype, count), symbol in self._copies.items():
            lines.append(
                f"\nint32_t {symbol}({ctype}* source, {ctype}* destination) {{\n"
                f"  for (int32_t i = 0; i < {count}; ++i) {{\n"
                f"    destination[i] = source[i];\n  }}\n  return 0;\n}}\n"
            )
        return "".join(lines)
