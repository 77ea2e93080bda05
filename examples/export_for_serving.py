"""Export a trained model as a SavedModel for TF Serving and check it like a server would.

    python examples/export_for_serving.py saved_models/my-run --out /tmp/gan_mri/1

Then serve it (see docs/serving.md):
    docker run -p 8501:8501 -v /tmp/gan_mri:/models/gan_mri -e MODEL_NAME=gan_mri tensorflow/serving
"""

import argparse

import numpy as np
import tensorflow as tf

from gan_mri.export import export_saved_model
from gan_mri.inference import load_model
from gan_mri.pretrained import pretrained_model_path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="run folder or .keras file (default: the shipped model)")
    parser.add_argument("--out", required=True, help="SavedModel folder (TF Serving wants <name>/<version>)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    model = load_model(args.model or pretrained_model_path())
    path = export_saved_model(model, args.out, overwrite=args.overwrite)

    # What TF Serving does: load the SavedModel and call a signature by name.
    served = tf.saved_model.load(str(path))
    print("signatures:", sorted(served.signatures))
    height, width = model.image_shape
    image = np.zeros((1, height, width, model.channels), dtype=np.float32) - 1.0
    for name in ("serving_default", "a2b", "b2a", "a2b_uncertainty", "b2a_uncertainty"):
        outputs = served.signatures[name](image=tf.constant(image))
        print(f"{name}: input {image.shape} -> " + ", ".join(
            f"{key} {tuple(value.shape)}, range [{float(tf.reduce_min(value)):.3f}, {float(tf.reduce_max(value)):.3f}]"
            for key, value in sorted(outputs.items())))


if __name__ == "__main__":
    main()
