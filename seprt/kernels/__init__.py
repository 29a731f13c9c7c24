"""Fast kernels of the engine, each beside the numpy reference it is tested against.

    conv.py          conv_u8i8 (dot tiles), conv_bin_popcount, conv_f32, weight packing
    elementwise.py   quantize_u8, add, relu, pool, gap, shortcut_a
    intrinsics.py    LLVM intrinsics (popcount, roundeven, the VNNI / generic dot tile)
    jit.py           numba jit with a cache keyed by the kernels' source
"""
