"""python -m converters {seprt,tflite,init} ... (see converters/convert.py)."""
import argparse
import sys

from seprt.errors import FormatError
from seprt.variants import BINARIZE_MODES


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m converters",
                                 description="PyTorch checkpoint -> seprt .bin (R/B/BQ) or TFLite (fp32/int8)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("ckpt", help="seprt PyTorch checkpoint (training/checkpoint.py)")
        p.add_argument("-o", "--out", required=True)
        p.add_argument("--binarize", choices=BINARIZE_MODES,
                       help="convs to binarize from a full checkpoint (default: prb for SEP-Nets, all for ResNets; "
                            "inner: all but the stem conv that reads the image)")
        p.add_argument("--calib", metavar="DATA", help="calibration images: folder or tar")
        p.add_argument("--calib-limit", type=int, default=256, help="at most this many calibration images")
        p.add_argument("--check", metavar="DATA", help="validation images (<class>/<image>) for the parity check")
        p.add_argument("--check-limit", type=int, default=1000)

    p = sub.add_parser("seprt", help="write a seprt .bin")
    common(p)
    p.add_argument("--variant", choices=("R", "B", "BQ"), required=True)
    p.add_argument("--act-bits", type=int, choices=(8, 4, 2), default=8,
                   help="BQ: bits of the activations that feed binary convs")
    p = sub.add_parser("tflite", help="write a TFLite baseline of the same weights")
    common(p)
    p.add_argument("--quant", choices=("fp32", "int8"), required=True)
    p.add_argument("--binarized", action="store_true", help="alpha*B as float weights (binarized checkpoint or --binarize)")
    p = sub.add_parser("init", help="random-init checkpoint with realistic BN statistics")
    p.add_argument("--arch", required=True)
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from . import convert
    fn = {"seprt": convert.to_seprt, "tflite": convert.to_tflite, "init": convert.init}[args.cmd]
    if args.cmd == "tflite" and args.binarize:
        args.binarized = True
    try:
        fn(args)
    except (ValueError, FormatError, OSError) as e:   # ConvertError, checkpoint errors, files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"converters: error: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
