"""The README's Python examples run as written."""

import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # exports land in ./saved_models
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 5
    namespace = {}
    for block in blocks:  # later examples may use names from earlier ones, as a reader would
        exec(compile(block, str(README), "exec"), namespace)
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
