"""The small pretrained model that ships with the package.

The repository keeps it in ``saved_models/phantom-sa-enc-cl-sn/`` (a complete run folder:
config, model, history, metrics); `setup.py` installs that folder as the package data
``gan_mri/pretrained_models/``, so `gan-mri translate` can use it right after `pip install`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from gan_mri.run_files import MODEL_FILE

PRETRAINED_NAME = "phantom-sa-enc-cl-sn"


def pretrained_model_path(name: str = PRETRAINED_NAME) -> Path:
    """Returns the run folder of a shipped pretrained model.

    Looks in the installed package data first, then in the source checkout's ``saved_models/``.

    Raises:
        FileNotFoundError: if the model is in neither place (naming both).
    """
    installed = Path(str(resources.files("gan_mri"))) / "pretrained_models" / name
    checkout = Path(__file__).resolve().parent.parent / "saved_models" / name
    for candidate in (installed, checkout):
        if (candidate / MODEL_FILE).is_file():
            return candidate
    raise FileNotFoundError(f"pretrained model {name!r} not found in {installed} or {checkout}; "
                            "pass --model with a run folder or .keras file")
