"""Train on your own BIDS folder (sub-*/[ses-*/]anat/*_T1w.nii.gz and *_T2w.nii.gz).

    python examples/train_bids.py /data/my_bids --out saved_models/my-run --epochs 75

The run folder gets config.json, checkpoints (resume with --resume), history.csv, TensorBoard
logs, per-epoch metrics with the paper's Table 7(b), figures and model.keras.
"""

import argparse
from pathlib import Path

from gan_mri.config import get_preset
from gan_mri.data.dataset import PreparedDataset, prepare
from gan_mri.training import train


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bids_dir", help="BIDS root")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--data", help="prepared dataset folder (default: <out>-data)")
    parser.add_argument("--preset", default="sa-enc-cl-sn")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64, help="base width (64 = the paper's)")
    parser.add_argument("--epochs", type=int, default=75)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--eval-epochs", default="1,25,50,75")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    data_dir = Path(args.data or f"{args.out.rstrip('/')}-data")
    if data_dir.exists():
        data = PreparedDataset.open(data_dir)
    else:
        data = prepare(args.bids_dir, data_dir, image_shape=(args.size, args.size), layout="bids")
    print("dataset slices:", data.counts)

    config = get_preset(args.preset, image_shape=(args.size, args.size), base_width=args.width)
    eval_epochs = [int(e) for e in args.eval_epochs.split(",") if int(e) <= args.epochs]
    _, run = train(config, data, args.out, epochs=args.epochs, batch_size=args.batch_size,
                   eval_epochs=eval_epochs, resume=args.resume)
    print("run written to", run.root)
    print((run.metrics_dir / "ssim_table.md").read_text())


if __name__ == "__main__":
    main()
