"""`agentalign check-model`: does an ONNX file meet what Unity's ML-Agents loader checks?

The checks follow the order of the loader behind the Behavior Parameters inspector (expected
tensors, version, memory size, inputs, output shapes, outputs) and word each finding as the
inspector does, so a designer sees here what Unity would show there, before opening the editor.
Unity shows most of these as warnings, but a model with any of them will not act correctly, so
they are errors here. A few checks are ours (marked "agentalign:"): the loader does not look at
dtypes and memory shapes, but inference fails or reads garbage at the first decision if they are
wrong. Last, a model without errors runs one decision in onnxruntime on a zero memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from agentalign.errors import UserError
from agentalign.export.onnx import (
    ACTION_MASKS,
    DETERMINISTIC_ACTIONS,
    DISCRETE_ACTIONS,
    DISCRETE_SHAPE,
    MEMORY_SIZE,
    OBS,
    RECURRENT_IN,
    RECURRENT_OUT,
    VERSION,
    VERSION_NUMBER,
)
from agentalign.spec import ACTION_BRANCHES, CAMERA_SENSOR_NAME, OBS_CHANNELS, OBS_HEIGHT, OBS_WIDTH

DEFAULT_OBS_SHAPE = (OBS_CHANNELS, OBS_HEIGHT, OBS_WIDTH)
ACTION_OUTPUTS = ("action", "continuous_actions", "deterministic_continuous_actions",
                  DISCRETE_ACTIONS, DETERMINISTIC_ACTIONS)
CONTINUOUS_SHAPE = "continuous_action_output_shape"


class ModelFileError(UserError):
    """A file that is not a readable ONNX model."""


class ContractError(UserError):
    """A model that Unity's ML-Agents loader would reject or run wrongly."""


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


def load_model(source: str | Path | bytes) -> onnx.ModelProto:
    """An ONNX model from a path or bytes; one-line ModelFileError if it is not one."""
    name = "model bytes" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such file" if not path.exists()
                                 else f"{path}: is not a file")
        try:
            source = path.read_bytes()
        except OSError as e:
            raise ModelFileError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        model = onnx.load_from_string(source)
    except Exception as e:  # protobuf raises DecodeError and friends; all mean "not ONNX"
        raise ModelFileError(f"{name}: not an ONNX model ({type(e).__name__})") from None
    if not model.graph.node and not model.graph.output:
        raise ModelFileError(f"{name}: not an ONNX model (no graph)")
    return model


def constant_value(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    """The value of tensor `name` if it is a constant of the graph (a Constant node, an
    initializer, or Identity/Cast of one), as the loader's GetTensorByName finds it; else None."""
    graph = model.graph
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if name not in node.output:
            continue
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
                if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
                    return np.atleast_1d(np.asarray(onnx.helper.get_attribute_value(attr)))
        if node.op_type in ("Identity", "Cast") and node.input:
            return constant_value(model, node.input[0])
        return None
    return None


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """Shape as ints (fixed) and names (symbolic); '?' for an unnamed free dimension."""
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in shape.dim]


def _dtype(value: onnx.ValueInfoProto) -> str:
    return TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()


def check_model(source: str | Path | bytes | onnx.ModelProto,
                obs_shape: Sequence[int] = DEFAULT_OBS_SHAPE,
                branches: Sequence[int] = ACTION_BRANCHES, run: bool = True) -> list[Finding]:
    """Every finding for a model against the island's sensors (one camera, `obs_shape` = C, H, W)
    and discrete branches; empty when Unity would load and run it as is."""
    model = source if isinstance(source, onnx.ModelProto) else load_model(source)
    found: list[Finding] = []

    def error(message: str) -> None:
        found.append(Finding("error", message))

    def warning(message: str) -> None:
        found.append(Finding("warning", message))

    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = {i.name: i for i in graph.input if i.name not in initializers}
    outputs = {o.name: o for o in graph.output}

    # -- expected tensors: the loader stops at the first one missing
    version = constant_value(model, VERSION)
    if version is None or version.size == 0:
        error(f'Required constant "{VERSION}" was not found in the model file.')
        return found
    memory = constant_value(model, MEMORY_SIZE)
    if memory is None or memory.size == 0:
        error(f'Required constant "{MEMORY_SIZE}" was not found in the model file.')
        return found
    if not any(name in outputs for name in ACTION_OUTPUTS):
        error("The model does not contain any Action Output Node.")
        return found
    discrete_shape = constant_value(model, DISCRETE_SHAPE)
    if DISCRETE_ACTIONS in outputs and discrete_shape is None:
        error("The model uses discrete action but does not contain Discrete Action Output "
              "Shape Node.")
        return found
    if DISCRETE_ACTIONS not in outputs:
        error(f"agentalign: no {DISCRETE_ACTIONS} output: Unity reads it unless Deterministic "
              "Inference is ticked")
    if DETERMINISTIC_ACTIONS not in outputs:
        warning("The model uses deterministic inference but does not contain Deterministic "
                "Discrete Action Output Tensor. Uncheck `Deterministic inference` flag. "
                "(only when Deterministic Inference is ticked)")

    # -- version and memory size
    model_version = int(version.flat[0])
    if model_version < VERSION_NUMBER:
        error("Model was trained with a older version of the trainer than is supported. Either "
              "retrain with an newer trainer, or use an older version of com.unity.ml-agents. "
              f"Model version: {model_version} Minimum supported version: {VERSION_NUMBER}")
    elif model_version > VERSION_NUMBER:
        error("Model was trained with a newer version of the trainer than is supported. Either "
              "retrain with an older trainer, or update to a newer version of "
              f"com.unity.ml-agents. Model version: {model_version}  Maximum supported "
              f"version: {VERSION_NUMBER}")
    memory_size = int(memory.flat[0])
    if memory_size == -1:
        warning(f"Missing node in the model provided : {MEMORY_SIZE}")
        return found
    if memory_size < 0 or memory_size != float(memory.flat[0]):
        error(f"agentalign: {MEMORY_SIZE} must be a whole number >= 0, found {memory.flat[0]}")

    # -- input presence
    if OBS not in inputs:
        error("The model does not contain an Observation Placeholder Input for sensor component "
              f"0 ({CAMERA_SENSOR_NAME}).")
    if memory_size > 0 and RECURRENT_IN not in inputs:
        error("The model does not contain a Recurrent Input Node but has memory_size.")
    if ACTION_MASKS not in inputs:
        warning("The model does not contain an Action Mask but is using Discrete Control.")

    # -- input shapes
    channels, height, width = obs_shape
    for name, value in inputs.items():
        if name == OBS:
            dims = _dims(value)
            if len(dims) != 4:
                error(f"agentalign: {OBS} must be [batch, {channels}, {height}, {width}] (NCHW), "
                      f"found {dims}")
            elif tuple(dims[1:]) != (channels, height, width):
                c, h, w = dims[1:]  # the loader reads the tensor as NCHW
                error("The visual Observation of the model does not match. Received TensorProxy "
                      f"of shape [?x{width}x{height}x{channels}] but was expecting "
                      f"[?x{w}x{h}x{c}] for the {CAMERA_SENSOR_NAME} Sensor.")
            _check_batch_input(value, found)
            _check_float(value, found)
        elif name == ACTION_MASKS:
            if _dims(value)[1:] != [sum(branches)]:
                error(f"agentalign: {ACTION_MASKS} must be [batch, {sum(branches)}], "
                      f"found {_dims(value)}")
            _check_float(value, found)
        elif name == RECURRENT_IN:
            _check_memory_tensor(value, memory_size, found)
        else:
            error(f"Model contains an unexpected input named : {name}")

    # -- output shapes
    continuous = constant_value(model, CONTINUOUS_SHAPE)
    continuous_size = 0 if continuous is None or continuous.size == 0 else int(continuous.flat[0])
    if continuous_size != 0:
        error("Continuous Action Size of the model does not match. The BrainParameters and "
              f"ActuatorComponents expect 0 but the model contains {continuous_size}.")
    model_branches = [] if discrete_shape is None else [int(b) for b in discrete_shape.flat]
    if len(model_branches) != len(branches):
        error("Discrete Action Size of the model does not match. The BrainParameters expect "
              f"{len(branches)} branches but the model contains {len(model_branches)}.")
    else:
        for i, (want, have) in enumerate(zip(branches, model_branches, strict=True)):
            if want != have:
                error(f"The number of Discrete Actions of branch {i} does not match. Was "
                      f"expecting {want} but the model contains {have}")
                break
    for name in (DISCRETE_ACTIONS, DETERMINISTIC_ACTIONS):
        if name in outputs:
            value = outputs[name]
            if value.type.tensor_type.elem_type != TensorProto.INT64:
                error(f"agentalign: output {name} is {_dtype(value)}, not int64: Unity reads "
                      "discrete actions as integers")
            if len(_dims(value)) != 2 or _dims(value)[1] != len(branches):
                error(f"agentalign: output {name} must be [batch, {len(branches)}], "
                      f"found {_dims(value)}")

    # -- output presence
    if memory_size > 0 and RECURRENT_OUT not in outputs:
        error("The model does not contain a Recurrent Output Node but has memory_size.")
    elif memory_size > 0:
        _check_memory_tensor(outputs[RECURRENT_OUT], memory_size, found)

    if run and not any(f.severity == "error" for f in found):
        _run_once(model, obs_shape, branches, memory_size, found)
    return found


def _check_float(value: onnx.ValueInfoProto, found: list[Finding]) -> None:
    if value.type.tensor_type.elem_type != TensorProto.FLOAT:
        found.append(Finding("error", f"agentalign: {value.name} is {_dtype(value)}, not "
                                      "float32: Unity feeds float tensors"))


def _check_batch_input(value: onnx.ValueInfoProto, found: list[Finding]) -> None:
    dims = _dims(value)
    if dims and isinstance(dims[0], int):
        found.append(Finding("warning", f"agentalign: {value.name} has a fixed batch of {dims[0]}"
                                        "; Unity batches all agents of a behavior in one call"))


def _check_memory_tensor(value: onnx.ValueInfoProto, memory_size: int,
                         found: list[Finding]) -> None:
    dims = _dims(value)
    if len(dims) != 3 or dims[1:] != [1, memory_size]:
        found.append(Finding("error", f"agentalign: {value.name} must be [batch, 1, "
                                      f"{memory_size}] to match {MEMORY_SIZE}, found {dims}"))
    _check_float(value, found)


def _run_once(model: onnx.ModelProto, obs_shape: Sequence[int], branches: Sequence[int],
              memory_size: int, found: list[Finding]) -> None:
    """Load the model in onnxruntime and run one decision for two agents on a zero memory."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        feeds = {OBS: np.zeros((2, *obs_shape), np.float32)}
        if ACTION_MASKS in names:
            feeds[ACTION_MASKS] = np.ones((2, sum(branches)), np.float32)
        if RECURRENT_IN in names:
            feeds[RECURRENT_IN] = np.zeros((2, 1, memory_size), np.float32)
        results = dict(zip([o.name for o in session.get_outputs()],
                           session.run(None, feeds), strict=True))
    except Exception as e:  # onnxruntime raises its own exception types for each failure
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        found.append(Finding("error", f"agentalign: onnxruntime cannot run one decision: "
                                      f"{first}"))
        return
    for name in (DISCRETE_ACTIONS, DETERMINISTIC_ACTIONS):
        actions = results.get(name)
        if actions is not None and (actions.shape != (2, len(branches)) or (actions < 0).any()
                                    or (actions >= np.array(branches)).any()):
            found.append(Finding("error", f"agentalign: {name} gave {actions.tolist()} for two "
                                          f"agents, not actions within branches "
                                          f"{list(branches)}"))


def errors(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def require_valid(source: str | Path | bytes | onnx.ModelProto,
                  obs_shape: Sequence[int] = DEFAULT_OBS_SHAPE,
                  branches: Sequence[int] = ACTION_BRANCHES) -> onnx.ModelProto:
    """The model if it meets the contract; else ContractError naming the first error."""
    model = source if isinstance(source, onnx.ModelProto) else load_model(source)
    bad = errors(check_model(model, obs_shape, branches))
    if bad:
        more = f" (and {len(bad) - 1} more; run agentalign check-model)" if len(bad) > 1 else ""
        name = source if isinstance(source, (str, Path)) else "the model"
        raise ContractError(f"{name}: {bad[0].message}{more}")
    return model


@dataclass(frozen=True)
class CheckResult:
    file: str
    findings: list[Finding]
    obs_shape: tuple[int, ...]
    branches: tuple[int, ...]


def run(settings: Any, file: str | Path, *, progress: bool = False) -> CheckResult:
    """`agentalign check-model`: print each finding; raise ContractError if any is an error."""
    findings = check_model(file, obs_shape=settings.obs_shape, branches=settings.branches)
    for finding in findings:
        print(finding)
    if bad := errors(findings):
        raise ContractError(f"{file}: {len(bad)} error(s): Unity's ML-Agents would not run "
                            "this model as is")
    return CheckResult(str(file), findings, tuple(settings.obs_shape), tuple(settings.branches))


def summary(result: CheckResult) -> str:
    return (f"ok: {result.file} meets the ML-Agents inference contract (obs_0 "
            f"{list(result.obs_shape)}, branches {list(result.branches)})")
