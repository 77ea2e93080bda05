"""Quickstart through the Python API: phantom -> dataset -> train -> evaluate -> translate.

    python examples/quickstart.py                      # about 2 minutes on 2 CPU cores
    python examples/quickstart.py --subjects 4 --size 32 --width 8 --epochs 1   # seconds
"""

import argparse
from pathlib import Path

from gan_mri.baseline import IntensityRemap
from gan_mri.config import get_preset
from gan_mri.data.dataset import prepare
from gan_mri.data.phantom import simulate
from gan_mri.evaluation import evaluate
from gan_mri.models import build_model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="quickstart-out", help="folder for everything written")
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)

    # 1. Simulated T1w/T2w/tissue-label volumes as a BIDS tree (no download).
    simulate(args.subjects, out / "phantom", seed=0, overwrite=True)
    # 2. Axial slices, normalized to [-1, 1], split by subject; the manifest holds every volume's
    #    intensity landmarks and the training volumes' reference (gan_mri.standardization).
    data = prepare(out / "phantom", out / "dataset", image_shape=(args.size, args.size), overwrite=True)
    print("dataset slices:", data.counts)
    standardization = data.standardization

    # 3. The paper's best variant, narrowed for a CPU.
    config = get_preset("sa-enc-cl-sn", image_shape=(args.size, args.size), base_width=args.width)
    model = build_model(config)
    model.standardization = standardization  # saved with the model; translate_volume applies it
    # The default recipe's generators see the training split's brain-intensity remap (gan_mri.remap_prior):
    # fit it on the training slices, as the model will see them, before fit (gan_mri.training.train does this).
    model.set_intensity_remap(IntensityRemap.from_dataset(data, standardization))
    model.compile()
    train = data.train_dataset(batch_size=4, seed=0, standardization=standardization)
    history = model.fit(train, epochs=args.epochs, verbose=2)
    print("final losses:", {k: round(v[-1], 4) for k, v in history.history.items()})

    # 4. SSIM/PSNR/MAE per direction on the paired test subjects (the model translates the
    #    standardized "a_input"/"b_input"; "a"/"b" are the ground truth).
    test = data.test_dataset(batch_size=16, standardization=standardization)
    results = evaluate(model, test)
    for direction, values in results.items():
        print(f"{direction}: SSIM {values['ssim']:.4f}  PSNR {values['psnr']:.2f} dB  MAE {values['mae']:.4f}")

    # 5. Translate a batch and save the model (reloads with keras.models.load_model).
    batch = next(iter(data.test_dataset(batch_size=4, standardization=standardization)))
    t2w = model.translate(batch["a_input"], "A2B")
    print("translated batch:", tuple(t2w.shape))
    model.save(out / "quickstart.keras")
    print("model saved to", out / "quickstart.keras")


if __name__ == "__main__":
    main()
