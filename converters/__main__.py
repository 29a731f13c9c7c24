"""python -m converters {seprt,tflite,init} ... (see converters/convert.py)."""
import argparse
import sys

from seprt.errors import FormatError


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m converters",
                                 description="PyTorch checkpoint -> seprt .bin (R/B/BQ) or TFLite (fp32/int8)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("ckpt", nargs="?", help="checkpoint of `python -m training` (module checkpoint) or of the "
                                               "zoo (models/*.pt); or --model")
        p.add_argument("-o", "--out", required=True)
        p.add_argument("--force", action="store_true", help="replace an existing -o file (never an input)")
        p.add_argument("--binarize", metavar="MODE",
                       help="convs to binarize. A Full checkpoint: all, a preset of its model (prb: the SEP-Nets' "
                            "pattern residual blocks, their default; inner: all but the stem conv) or module-name "
                            "globs ('all,!conv1'); a binarized checkpoint keeps its own. With --model: all "
                            "(default), inner, none or kernel sizes such as 3x3, 5x5, 3x3,5x5")
        g = p.add_argument_group("any PyTorch model (docs/byo-model.md)")
        g.add_argument("--model", metavar="SPEC",
                       help="package.module:callable or path/to/file.py:callable returning the nn.Module")
        g.add_argument("--weights", metavar="STATE_DICT.pt", help="state dict to load into it (keys must match)")
        g.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"))
        g.add_argument("--labels", metavar="FILE", help="class names, one a line, in logit order")
        g.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                       help="on the 0..1 pixel scale (default: ImageNet's)")
        g.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"))
        g.add_argument("--resize", choices=("stretch", "center_crop"),
                       help="default: center_crop above 64 pixels, else stretch")
        g.add_argument("--channel-order", choices=("RGB", "BGR"))
        p.add_argument("--calib", metavar="DATA", help="calibration images: folder or tar")
        p.add_argument("--calib-limit", type=int, default=256, help="at most this many calibration images, spread evenly over the sorted files")
        p.add_argument("--check", metavar="DATA", help="validation images (<class>/<image>) for the parity check")
        p.add_argument("--check-limit", type=int, default=1000,
                       help="at most this many check images, spread evenly over the sorted files; 0: all "
                            "(provenance.val_images records the count)")

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
    from . import convert, torch_convert
    fn = {"seprt": convert.to_seprt, "tflite": convert.to_tflite, "init": convert.init}[args.cmd]
    if args.cmd == "tflite" and args.binarize:
        args.binarized = True
    try:
        if args.cmd != "init":
            convert.refuse_overwrite(args.out, args.force)
            if args.model and args.ckpt:
                raise convert.ConvertError("give a checkpoint or --model SPEC, not both")
            if args.model:
                fn = {"seprt": torch_convert.to_seprt, "tflite": torch_convert.to_tflite}[args.cmd]
            elif not args.ckpt:
                raise convert.ConvertError("give a checkpoint (CKPT) or --model SPEC")
            else:
                extra = [o for o in ("weights", "input_size", "labels", "mean", "std", "resize", "channel_order")
                         if getattr(args, o)]
                if extra:
                    raise convert.ConvertError(f"--{extra[0].replace('_', '-')} applies to --model only")
        fn(args)
    except (ValueError, FormatError, OSError) as e:   # ConvertError, checkpoint errors, files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"converters: error: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
