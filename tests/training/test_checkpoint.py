"""The zoo checkpoint format (training/checkpoint.py): the shipped models/*.pt
validate, and every kind of damage is a one-line error."""
import math
import os

import pytest
import torch

from training import checkpoint as ck
from training import modelckpt, models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# the stacked checkpoints (ARCH-stacked-*.pt) are training/stacked.py's format, read and
# re-converted in tests/converters/test_zoo_reconvert.py
ZOO = sorted(f for f in os.listdir(os.path.join(ROOT, "models")) if f.endswith(".pt") and "-stacked-" not in f)


def _full():
    return torch.load(os.path.join(ROOT, "models", "resnet20-full.pt"), weights_only=True)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_checkpoints_validate_and_read_as_modules(name):
    c = ck.load(os.path.join(ROOT, "models", name))
    assert set(c) == set(ck.KEYS) and c["format"] == "seprt-checkpoint" and c["version"] == 1
    assert set(c["state_dict"]) == set(ck.expected_state(c["arch"], c["binarize"]))
    m = modelckpt.read(os.path.join(ROOT, "models", name))
    assert m["model"] == models.ARCH_TO_SPEC[c["arch"]] and m["labels"] == c["labels"]
    assert bool(m["binarized"]) == (c["binarize"] is not None)


def _expect(tmp_path, c, match):
    p = str(tmp_path / "bad.pt")
    torch.save(c, p)
    with pytest.raises(ValueError, match=match) as e:
        ck.load(p)
    assert "\n" not in str(e.value)


def test_validation_errors(tmp_path):
    c = _full(); c["arch"] = "resnet99"
    _expect(tmp_path, c, "unknown architecture 'resnet99'")
    c = _full(); del c["labels"]
    _expect(tmp_path, c, "missing keys: labels")
    c = _full(); c["optimizer"] = {}
    _expect(tmp_path, c, "unexpected keys: optimizer")
    c = _full(); c["state_dict"]["layers.conv1.weight"] = torch.zeros(16, 3, 5, 5)
    _expect(tmp_path, c, r"layers.conv1.weight.*shape \[16, 3, 5, 5\], expected \[16, 3, 3, 3\]")
    c = _full(); c["state_dict"]["layers.fc.bias"][3] = math.nan
    _expect(tmp_path, c, "layers.fc.bias.*NaN")
    c = _full(); del c["state_dict"]["layers.fc.bias"]
    _expect(tmp_path, c, "missing 1 keys, e.g. layers.fc.bias")
    c = _full(); c["state_dict"]["layers.conv1.alpha"] = torch.ones(16)
    _expect(tmp_path, c, "unexpected keys, e.g. layers.conv1.alpha")
    c = _full(); c["format"] = "something"
    _expect(tmp_path, c, "not a seprt checkpoint")
    c = _full(); c["binarize"] = "all"
    _expect(tmp_path, c, "stage 'full' does not go with binarize='all'")
    c = _full(); c["preprocess"] = dict(c["preprocess"], size=[64, 64])
    _expect(tmp_path, c, "preprocess size")
    with pytest.raises(ValueError, match="no such checkpoint"):
        ck.load(str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        ck.load(str(tmp_path / "junk.pt"))


def test_pattern_entries_must_be_pm1(tmp_path):
    c = torch.load(os.path.join(ROOT, "models", "resnet20-refined-all.pt"), weights_only=True)
    c["state_dict"]["layers.conv1.pattern"][0, 0, 0, 0] = 0.5
    _expect(tmp_path, c, r"other than \+1/-1")
