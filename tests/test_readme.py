"""The README's Python examples run as written: each alone, or after the first example
when its first line says it continues it."""

import ast
import builtins
import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
CONTINUING = re.compile(r'# Continuing the first example \("Using it"\): its (.*)\.')


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def names(block: str) -> tuple[set[str], set[str]]:
    """The names `block` binds, and those it reads without binding them or builtins."""
    bound, read = set(), set()
    for node in ast.walk(ast.parse(block)):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound, read - bound - set(dir(builtins))


def test_readme_python_blocks_stand_alone_or_say_what_they_continue():
    first, *others = python_blocks()
    assert len(others) >= 8
    assert names(first)[1] == set()  # the first example imports all it uses
    for block in others:
        free = names(block)[1]
        continuing = CONTINUING.match(block.splitlines()[0])
        if continuing:  # it lists every name it takes from the first example, and only those
            assert free == set(re.split(r", | and ", continuing[1])), block
            assert free <= names(first)[0], block
        else:
            assert free == set(), f"uses {sorted(free)} without saying from where:\n{block}"


@pytest.mark.slow
def test_readme_python_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # exports land in ./saved_models
    blocks = python_blocks()
    assert len(blocks) >= 5
    first_example, namespace = {}, {}  # the latter: each name as the last block bound it
    for i, block in enumerate(blocks):  # each alone, or after the first example it continues
        continues = i > 0 and CONTINUING.match(block)
        scope = first_example if i == 0 or continues else {}
        exec(compile(block, str(README), "exec"), scope)
        namespace.update({name: scope[name] for name in names(block)[0] if name in scope})
    model = namespace["model"]
    assert namespace["outputs"].shape == (32, 8, 2)
    assert len(namespace["grads"]) == len(namespace["stages"][0].trainable_variables) * 2 + 2
    assert int(model.buffers.ticks.numpy()) == 4 * 8  # the stream ran 4 chunks of 8 frames
    # The last batch of digit videos streamed whole after its reset: 4 chunks of 8.
    assert int(namespace["streamer"].buffers.ticks.numpy()) == 32
    assert namespace["folder"].class_names == ["bikes", "bunny"]
    assert namespace["arrow"].class_names == ["forwards", "backwards"]
    assert set(np.concatenate([y for _, y in namespace["moves"]])) == {0, 1, 2, 3}
    assert namespace["served"]["probabilities"].shape == (32, 2)
    assert len(namespace["ticks"]) == 8
    mover = namespace["mover"]  # its temporal middle stage sends whole errors
    assert mover.graph.whole_errors and (mover.stash, mover.graph.tail_ticks) == ([5, 2, 0], 5)
    assert (tmp_path / "saved_models" / "readme_demo" / "saved_model.pb").exists()
    history = namespace["fidelity"].history
    assert [h["step"] for h in history] == [0, 2, 4]  # before training, then every 2 steps
    cosines = history[-1]["cosine"]  # the pooling stage has no weights: None, left out
    assert len(cosines) == 3 and cosines[1] is None
    assert history[-1]["cosine_mean"] == pytest.approx(np.mean([cosines[0], cosines[2]]))
    assert (tmp_path / "runs" / "fidelity_demo" / "fidelity").is_dir()
    # SetDataEpoch set the data's epoch to fit's last one, 1, whose pass moved it on to 2.
    assert int(namespace["resume_digits"].epoch.numpy()) == 2
    assert not (tmp_path / "runs" / "resume_demo" / "backup").exists()  # removed at the end
