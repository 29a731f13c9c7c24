import os
import shutil

import pytest

import seprt


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    """A calibration folder: six demo images, one class folder each."""
    d = tmp_path_factory.mktemp("calib")
    for i, p in enumerate(seprt.demo_images()[:6]):
        os.makedirs(d / f"c{i}")
        shutil.copy(p, d / f"c{i}" / "0.jpg")
    return d
