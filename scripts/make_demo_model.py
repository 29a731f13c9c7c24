"""Write seprt/data/demo.bin: a sepnet-cifar BQ model with RANDOM weights.

Until a trained model ships (training issue), `seprt demo` runs this one; its
provenance says it is not trained, and the demo prints that.

    python scripts/make_demo_model.py
"""
import os

from seprt import arch, format, variants

out = os.path.join(os.path.dirname(__file__), "..", "seprt", "data", "demo.bin")
g = variants.random_graph(arch.get("sepnet-cifar"), "BQ", "prb", seed=0)
print(f"wrote {out}: {format.save(g, out)} bytes")
