"""A Functional Keras model of the per-frame computation, cut into Sideways stages.

`cut(model, at=[...])` splits the model's graph at the outputs of the named layers: stage
i ends at `at[i]` (the last stage at the model's output) and holds every layer that the
stage's output needs and that no earlier cut already computes. A tensor that crosses a cut
must be a cut layer's output (or the model's input): it becomes an edge of the stage graph,
so a ResNet's residual adds and a U-Net's skips across cuts become skip connections between
stages (docs/algorithm.md, "Stage graphs"). `cut(model, num_stages=N)` picks the cut
layers itself, balancing an estimate of each layer's cost (`layer_costs`).

The stages are Functional models over the same layers as `model` (they share its
weights): training the Sideways model trains `model`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras
import numpy as np

from keras_sideways.graph import VIDEO
from keras_sideways.layers import TemporalLayer


def cut(
    model: keras.Model,
    at: Sequence[str] | None = None,
    num_stages: int | None = None,
) -> tuple[list[keras.Model], list]:
    """Cuts a per-frame Functional model into stages and the stage graph joining them.

    Args:
        model: a Functional `keras.Model` of one input (a frame, [H, W, C]) and one
            output, or a built `keras.Sequential` (one that starts with a `keras.Input`).
        at: the names of the layers whose outputs end the stages, bottom first (one name:
            two stages); the last stage ends at the model's output.
        num_stages: instead of `at`, the number of stages, cut where the estimated cost
            (`layer_costs`) is most even among the layers that can be cut at.

    Returns:
        (stages, inputs) for `SidewaysModel(stages, inputs=inputs)`: stage i is a
        Functional model of the layers between its sources' cuts and its own, and
        `inputs[i]` lists its sources (earlier stages, `VIDEO`), in the order it takes them.

    Raises:
        ValueError: naming the layer: an unknown layer, a model that is not a Functional
            model of one input and output, a temporal layer (a cut model is per-frame;
            temporal stages are written as stages), cuts given out of order or twice, a
            cut at the output layer, an unbuilt `keras.Sequential`, a layer that more than
            one stage would run (shared weights across a cut), or a tensor other than a
            cut layer's output that crosses a cut.
    """
    model = _functional(model)
    _check_model(model)
    if (at is None) == (num_stages is None):
        raise ValueError(
            f"cut needs either the layers to cut at (at=[...]) or num_stages; got at={at!r} "
            f"and num_stages={num_stages!r}."
        )
    if at is None:
        at = balanced_cuts(model, num_stages)
    at = [at] if isinstance(at, str) else list(at)
    for item in at:
        if not isinstance(item, str):
            given = f"the layer {item.name!r} itself" if hasattr(item, "name") else repr(item)
            raise ValueError(
                f"at= takes the names of the layers to cut at, bottom first; got {given}: "
                "give layer names, e.g. at=[layer.name]."
            )
    if not at:
        raise ValueError(
            "at=[] names no layer to cut at: a Sideways model needs at least two stages, "
            "so name at least one layer (or use num_stages)."
        )
    twice = [name for i, name in enumerate(at) if name in at[:i]]
    if twice:
        raise ValueError(
            f"Layer {twice[0]!r} is named more than once in at={at!r}: each name ends one "
            "stage, so name each layer once, bottom first."
        )
    calls = _layer_calls(model)
    ends = [_cut_output(model, name, calls) for name in at] + [model.outputs[0]]
    plan = _plan(model, list(at), ends)
    stages = []
    for k, sources in enumerate(plan):
        graph, graph_ends = model, ends
        if VIDEO in sources and len(sources) > 1:
            # Keras builds a model of an input and other tensors by wiring the input layer
            # to a new node (`clone_graph_nodes`), after which the models over the old one
            # (the user's, the earlier stages) fail to save ("could not find node key"):
            # such a stage is built over a graph of its own, the same layers called again.
            graph = keras.models.clone_model(model, clone_function=lambda layer: layer)
            own_calls = _layer_calls(graph)
            graph_ends = [_cut_output(graph, name, own_calls) for name in at]
            graph_ends.append(graph.outputs[0])
        tensors = [graph.inputs[0] if s == VIDEO else graph_ends[s] for s in sources]
        stages.append(
            keras.Model(
                tensors[0] if len(tensors) == 1 else tensors,
                graph_ends[k],
                name=f"{model.name}_stage{k}",
            )
        )
    return stages, [list(sources) for sources in plan]


def layer_costs(model: keras.Model) -> dict:
    """An estimate of each layer's cost per frame, by name: its weights times the positions
    it applies them at (multiply-adds of a convolution or a dense layer), or its output's
    size for a layer without weights. A proxy for time that needs no run."""
    costs = {}
    for layer in model.layers:
        output = layer.output if layer._inbound_nodes else None
        shape = () if isinstance(output, (list, tuple)) or output is None else output.shape
        shape = tuple(d for d in shape[1:] if d is not None)
        positions = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        weights = layer.count_params() if layer.built else 0
        costs[layer.name] = weights * positions if weights else int(np.prod(shape or (1,)))
    return costs


_MAX_TRIALS = 2000  # cut sets `balanced_cuts` checks at most (each a plan of the graph)


def balanced_cuts(model: keras.Model, num_stages: int) -> list[str]:
    """The names of `num_stages - 1` layers to cut `model` at, bottom first, so that the
    stages' estimated costs (`layer_costs`) are as even as this search finds: for each
    share i/N of the total cost, in order, the cuttable layer whose running cost is
    nearest to it, among those that leave a layer to cut at for each share still to come
    and give stages that are all valid (`cut`); where none does, the search takes the
    next nearest for the share before (back-tracking), so any count of stages that some
    valid cuts give is found."""
    whole = isinstance(num_stages, numbers.Integral) and not isinstance(num_stages, bool)
    if not whole or num_stages < 2:
        raise ValueError(f"num_stages must be an int >= 2; got {num_stages!r}.")
    num_stages = int(num_stages)
    model = _functional(model)
    _check_model(model)
    costs = layer_costs(model)
    names = [layer.name for layer in model.layers if not _is_input(layer)]
    running = np.cumsum([costs[n] for n in names])
    total = float(running[-1])
    calls = _layer_calls(model)
    candidates = [i for i, n in enumerate(names[:-1]) if _cuttable(model, n, calls)]

    trials = 0

    def valid(chosen: list[int]) -> bool:
        nonlocal trials
        trials += 1
        if trials > _MAX_TRIALS:  # a graph few cuts suit: give up as for none
            return False
        trial = [names[i] for i in chosen]
        try:
            ends = [_cut_output(model, n, calls) for n in trial] + [model.outputs[0]]
            _plan(model, trial, ends)
        except ValueError:
            return False
        return True

    def search(chosen: list[int]) -> list[int] | None:
        share = len(chosen) + 1
        if share == num_stages:
            return chosen
        target = total * share / num_stages
        still = num_stages - 1 - share  # cuts to make after this one
        later = [i for i in candidates if not chosen or i > chosen[-1]]
        later = later[: len(later) - still]
        for i in sorted(later, key=lambda i: abs(running[i] - target)):
            if valid(chosen + [i]):
                found = search(chosen + [i])
                if found is not None:
                    return found
        return None

    chosen = search([]) if num_stages - 1 <= len(candidates) else None
    if chosen is None:
        if num_stages - 1 > len(candidates):
            most = len(candidates) + 1
            why = f"it has {len(candidates)} layers it can cut at: at most {most} stages"
        else:
            why = (
                f"this search found no {num_stages - 1} of the {len(candidates)} layers it "
                "can cut at that leave every stage valid (a tensor other than a cut layer's "
                "output would cross a cut)"
            )
        raise ValueError(
            f"Cannot cut {model.name} into {num_stages} stages: {why}. Name the cut layers "
            "(at=[...]) or ask for fewer stages."
        )
    return [names[i] for i in chosen]


# ------------------------------------------------------------------ the model's graph
# Keras has no public way to walk a Functional model's nodes: a KerasTensor's
# `_keras_history` names the operation and node that made it, and the node its inputs
# (tests/test_keras_surface.py checks both).
def _parents(tensor) -> list:
    """The tensors the operation that made `tensor` read."""
    history = tensor._keras_history
    return list(history.operation._inbound_nodes[history.node_index].input_tensors)


def _operation(tensor):
    return tensor._keras_history.operation


def _is_input(layer) -> bool:
    return isinstance(layer, keras.layers.InputLayer)


def _functional(model):
    """A built `keras.Sequential` as the Functional model of its layers (the same layers,
    so the same weights); any other model as it is."""
    if not isinstance(model, keras.Sequential):
        return model
    if getattr(model, "outputs", None) is None:
        raise ValueError(
            f"cut needs a built model, and the keras.Sequential {model.name!r} is not built: "
            "start it with keras.Input(frame_shape), or call "
            "model.build((None, height, width, channels)) first."
        )
    return keras.Model(model.inputs[0], model.outputs[0], name=model.name)


def _check_model(model) -> None:
    if not isinstance(model, keras.Model) or getattr(model, "outputs", None) is None:
        raise ValueError(
            "cut takes a Functional keras.Model (keras.Model(inputs, outputs)) of the "
            f"per-frame computation; got a {type(model).__name__}."
        )
    for name in ("inputs", "outputs"):
        tensors = getattr(model, name)
        if len(tensors) != 1:
            raise ValueError(
                f"cut takes a model of one input (a frame) and one output; {model.name!r} "
                f"has {len(tensors)} {name}."
            )
    for layer in model.layers:
        if isinstance(layer, TemporalLayer):
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) is temporal: it sees a window "
                "of frames, which a cut per-frame model cannot give it, and a cut inside "
                "its window has no meaning. Cut the per-frame part and make the temporal "
                "layer the first layer of its own stage (a keras.Sequential)."
            )


def _layer_calls(model) -> dict:
    """Per layer (by id), the output tensors of each of its calls in `model`'s graph, found
    by walking back from its output once: a layer's own list of calls also holds those in
    other models, such as the stages of an earlier cut, and a nested model's `output` is
    its inner one."""
    calls, stack, seen = {}, [model.outputs[0]], set()
    while stack:
        tensor = stack.pop()
        history = tensor._keras_history
        key = (id(history.operation), history.node_index)
        if key in seen:
            continue
        seen.add(key)
        node = history.operation._inbound_nodes[history.node_index]
        calls.setdefault(id(history.operation), {})[history.node_index] = list(node.output_tensors)
        stack.extend(_parents(tensor))
    return {layer: list(by_node.values()) for layer, by_node in calls.items()}


def _cut_output(model, name: str, calls: dict):
    """The tensor a cut at layer `name` ends its stage with (`calls`: `_layer_calls`)."""
    try:
        layer = model.get_layer(name)
    except ValueError:
        names = ", ".join(layer.name for layer in model.layers)
        raise ValueError(
            f"No layer {name!r} to cut at in {model.name!r}; its layers: {names}."
        ) from None
    if _is_input(layer):
        raise ValueError(
            f"Layer {name!r} is the input of {model.name!r}: the first stage starts there "
            "anyway; name only the layers where stages end."
        )
    called = calls.get(id(layer), [])
    if len(called) != 1:
        raise ValueError(
            f"Layer {name!r} is called {len(called)} times in {model.name!r}: "
            "a cut must be at a layer called once (its output then ends one stage)."
        )
    (outputs,) = called
    if len(outputs) != 1:
        raise ValueError(f"Layer {name!r} has several outputs; cut at a layer of one output.")
    if outputs[0] is model.outputs[0]:
        raise ValueError(
            f"Layer {name!r} makes the output of {model.name!r}, where the last stage ends "
            "anyway: name only the layers where the stages below it end."
        )
    return outputs[0]


def _cuttable(model, name: str, calls: dict) -> bool:
    called = calls.get(id(model.get_layer(name)), [])
    return len(called) == 1 and len(called[0]) == 1


def _plan(model, at: list[str], ends: list) -> list[tuple]:
    """Per stage, its sources (VIDEO, earlier stages), checking every rule of `cut`."""
    stage_of_end = {id(t): k for k, t in enumerate(ends)}
    names = [*at, "the model's output"]
    owner: dict = {}  # per operation, (stage, id of the node's output) that runs it
    plan = []
    for k, end in enumerate(ends):
        sources, stack, seen = set(), [end], set()
        while stack:
            tensor = stack.pop()
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            if tensor is model.inputs[0]:
                sources.add(VIDEO)
                continue
            j = stage_of_end.get(id(tensor))
            if j is not None and j != k:
                if j > k:
                    raise ValueError(
                        f"The cut at {names[j]!r} comes before the cut at {names[k]!r} in "
                        f"{model.name!r}: name the cut layers bottom first."
                    )
                sources.add(j)
                continue
            layer = _operation(tensor)
            if _is_input(layer):
                raise ValueError(f"Stage {k} reads {layer.name!r}, which is not the model's input.")
            if id(layer) in owner and owner[id(layer)][0] != k:
                other, node = owner[id(layer)]
                if node == id(tensor):
                    raise ValueError(
                        f"The output of layer {layer.name!r} (in stage {other}) is used past "
                        f"the cut at {names[other]!r} (by stage {k}) but is not a cut: only "
                        f"the cut layers' outputs cross cuts. Cut at {layer.name!r} too, or "
                        "move the cut."
                    )
                raise ValueError(
                    f"Layer {layer.name!r} is used in stages {other} and {k}: its weights "
                    "would be shared across a cut. Cut where it is used on one side only."
                )
            owner[id(layer)] = (k, id(tensor))
            stack.extend(_parents(tensor))
        ordered = ([VIDEO] if VIDEO in sources else []) + sorted(s for s in sources if s != VIDEO)
        if not ordered:
            raise ValueError(f"Stage {k} (ending at {names[k]!r}) reads nothing of the frame.")
        plan.append(tuple(ordered))
    for k in range(len(ends) - 1):
        if not any(k in sources for sources in plan[k + 1 :]):
            raise ValueError(
                f"Nothing after the cut at {names[k]!r} reads it: every cut must feed a later "
                "stage."
            )
    return plan
