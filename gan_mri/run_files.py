"""The names of a run folder's files, in one place: `gan_mri.training` writes them, `gan_mri.inference`,
`gan_mri.pretrained` and `gan_mri.ablation` read them (the layout is in docs/architecture.md)."""

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
