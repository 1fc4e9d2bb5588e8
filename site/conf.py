"""Sphinx configuration of the course website (used by scripts/build_site.py; not run by hand).

Sphinx + MyST-NB + the Sphinx Book Theme (the "Jupyter Book 1" stack), chosen
because it builds fully offline from PyPI packages: the theme, its icons and
fonts ship inside the wheels, MathJax 3 ships in `sphinx-mathjax-offline`, and
notebooks are rendered from their stored outputs (never executed here).
scripts/build_site.py checks the output for references to other hosts.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import colab_links  # noqa: E402  (the one repository URL setting)

project = "sdnotes"
author = "the sdnotes authors"
copyright = "the sdnotes authors; code Apache-2.0, pocket model pictures CC BY-SA 4.0"
html_title = "sdnotes: how Stable Diffusion turns a prompt into a picture"

extensions = ["myst_nb", "sphinx-mathjax-offline"]
nb_execution_mode = "off"  # pages show the outputs the notebooks were run with
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "**.ipynb_checkpoints", "answers/**"]  # answers/: downloads, not pages
suppress_warnings = ["myst.header"]  # notebooks start sections at ## under one # title

html_theme = "sphinx_book_theme"
html_static_path = []
html_theme_options = {
    "repository_url": colab_links.repository_url(),
    "repository_branch": colab_links.BRANCH,
    "path_to_docs": "",
    "use_repository_button": True,
    "use_download_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
html_last_updated_fmt = None
html_show_sourcelink = False
html_copy_source = False  # the notebooks with outputs would double the site's size
