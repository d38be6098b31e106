"""The README's code runs as printed."""

import re

import numpy as np

from .conftest import REPO


def test_the_extending_sections_snippet_runs():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Extending gr_jax") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md: Extending gr_jax", "exec"), scope)
    samples = np.asarray(scope["samples"])
    assert samples.shape == (16, 28, 28, 1) and np.isfinite(samples).all()
    assert samples.min() >= -1 and samples.max() <= 1
    assert np.asarray(scope["m"]["d_loss"]).shape == ()
