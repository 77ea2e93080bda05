"""A run folder's file names and paths, in one place: `gan_mri.training` writes them, `gan_mri.inference`,
`gan_mri.pretrained` and `gan_mri.ablation` read them through :class:`RunFolder` and `find_model_file` (the
layout is in docs/architecture.md)."""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path

from gan_mri.config import config_from_dict

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """Paths inside one training run folder (see the module docstring)."""

    root: Path

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def model_file(self) -> Path:
        return self.root / MODEL_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def history_file(self) -> Path:
        return self.root / "history.csv"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunFolder":
        """Opens an existing run folder.

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            ValueError: if ``path`` is not a gan-mri run folder (no run.json / config.json).
        """
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"run folder {root} does not exist")
        missing = [name for name in (RUN_FILE, CONFIG_FILE) if not (root / name).is_file()]
        if not root.is_dir() or missing:
            raise ValueError(
                f"{root} is not a gan-mri run folder: expected a folder with {RUN_FILE} and "
                f"{CONFIG_FILE} (written by `gan-mri train`), missing {', '.join(missing) or 'folder'}"
            )
        return cls(root)

    def read_run_info(self) -> dict:
        """Returns the contents of run.json."""
        return json.loads(self.run_file.read_text(encoding="utf-8"))

    def load_config(self):
        """Returns the model config recorded in config.json (as the run's version wrote it)."""
        return config_from_dict(json.loads(self.config_file.read_text(encoding="utf-8")), saved=True)

    def checkpoint_state(self) -> dict | None:
        """The committed checkpoint's state.json (epoch, weights file, RNG), or None."""
        state = self.checkpoint_dir / "state.json"
        return json.loads(state.read_text(encoding="utf-8")) if state.is_file() else None

    def checkpoint_weights(self) -> Path | None:
        """The weights file of the committed checkpoint, or None."""
        state = self.checkpoint_state()
        return None if state is None else self.checkpoint_dir / state["weights"]

    def epochs_done(self) -> int:
        """Number of epochs the latest checkpoint holds (0 when there is none)."""
        state = self.checkpoint_state()
        return 0 if state is None else int(state["epoch"])


def find_model_file(path: str | os.PathLike) -> Path:
    """The ``.keras`` file that ``path`` (a run folder or a ``.keras`` file) names, checked as far as
    can be done without Keras: `gan_mri.inference.load_model` then loads it, and the CLI calls this first,
    so that a wrong path is reported before TensorFlow's import.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: ``not a gan-mri run or model: <path> (...)`` saying what was expected and found: a
            folder without a final model, another kind of file, or a ``.keras`` file that is not a
            complete Keras archive (Keras itself reports "File not found" for a truncated or random file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path {path} does not exist")
    expected = (
        f"expected a run folder with {CONFIG_FILE} and {MODEL_FILE} (written at the end of "
        f"`gan-mri train`) or a .keras file"
    )
    if path.is_dir():
        run = RunFolder(path)
        if not run.model_file.is_file():
            found = (
                f"found {CONFIG_FILE} but no {MODEL_FILE}: training has not finished"
                if run.config_file.is_file()
                else f"found no {CONFIG_FILE} and no {MODEL_FILE}"
            )
            raise ValueError(f"not a gan-mri run or model: {path} ({expected}; {found})")
        model_file = run.model_file
    elif path.suffix == ".keras":
        model_file = path
    else:
        kind = path.suffix or "suffix-less"
        raise ValueError(f"not a gan-mri run or model: {path} ({expected}; found a {kind} file)")
    problem = None
    if not zipfile.is_zipfile(model_file):
        size = model_file.stat().st_size
        problem = "empty file" if size == 0 else f"not a zip archive ({size} bytes: truncated or not a model file)"
    else:
        try:
            with zipfile.ZipFile(model_file) as archive:
                missing = {"config.json", "model.weights.h5"} - set(archive.namelist())
                damaged = archive.testzip()
            if missing:
                problem = f"zip archive without {', '.join(sorted(missing))} (not a Keras model file)"
            elif damaged is not None:
                problem = f"damaged archive: {damaged} fails its CRC check"
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            problem = f"damaged zip archive ({err}: truncated?)"
    if problem:
        raise ValueError(f"not a gan-mri run or model: {path} ({model_file}: {problem})")
    return model_file
