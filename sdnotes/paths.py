"""Where the repository's asset folders are, however the package was installed: the one place that names them.

The course's trained files ship with the repository, beside the notebooks, not
inside the Python package:

    POCKET_DIR             assets/pocket/             the pocket model (a diffusers pipeline folder,
                                                      its CLIP tokenizer files in tokenizer/)
    POCKET_JUDGE_DIR       assets/pocket-judge/       the pocket judge (CLIP image tower)
    POCKET_CONCEPT_DIR     assets/pocket-concept/     notebook 11's concept: pictures, embeddings, LoRAs
    POCKET_CONTROLNET_DIR  assets/pocket-controlnet/  notebook 12's box ControlNet
    POCKET_CASCADE_DIR     assets/pocket-cascade/     notebook 13's pixel cascade (base/ and super_resolution/)

Every module, script, test and notebook takes these folders from here.
`find_assets_dir()` looks for assets/, in this order, in

1. the folder named by the environment variable SDNOTES_ASSETS, if it is set;
2. assets/ next to the package: a clone, or an editable install
   (`pip install -e .`, as the Colab cell does);
3. assets/ in the working directory or one of its parents: a plain
   `pip install .` puts the package in site-packages, and Jupyter runs each
   notebook in notebooks/, one folder below the clone's assets/.

A folder counts when it holds pocket/model_index.json. If none does, the
folder of step 2 is returned, so that error messages name where the files were
expected. The folders above are found once, when this module is imported.
"""

import os
from pathlib import Path

ASSETS_ENVIRONMENT_VARIABLE = "SDNOTES_ASSETS"
PACKAGE_ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


def is_assets_dir(folder):
    """True if `folder` holds the pocket model (pocket/model_index.json)."""
    return (Path(folder) / "pocket" / "model_index.json").is_file()


def find_assets_dir():
    """The repository's assets/ folder (see the module docstring for where it looks)."""
    from_environment = os.environ.get(ASSETS_ENVIRONMENT_VARIABLE)
    if from_environment:
        return Path(from_environment).expanduser().resolve()
    if is_assets_dir(PACKAGE_ASSETS_DIR):
        return PACKAGE_ASSETS_DIR
    try:
        working_directory = Path.cwd().resolve()
    except OSError:  # the working directory was deleted
        return PACKAGE_ASSETS_DIR
    for folder in [working_directory, *working_directory.parents]:
        if is_assets_dir(folder / "assets"):
            return folder / "assets"
    return PACKAGE_ASSETS_DIR


ASSETS_DIR = find_assets_dir()
POCKET_DIR = ASSETS_DIR / "pocket"
POCKET_JUDGE_DIR = ASSETS_DIR / "pocket-judge"
POCKET_CONCEPT_DIR = ASSETS_DIR / "pocket-concept"
POCKET_CONTROLNET_DIR = ASSETS_DIR / "pocket-controlnet"
POCKET_CASCADE_DIR = ASSETS_DIR / "pocket-cascade"
