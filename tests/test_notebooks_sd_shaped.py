"""Every notebook also runs with Stable Diffusion's shapes (tiny-sd15 and tiny-sd21).

The pocket model draws 128x128 images from 4x16x16 latents with a 64-wide
text context; SD 1.5 has 4x64x64 latents and a 77x768 context, SD 2.1-base a
77x1024 context and a tokenizer that pads with 0. A notebook that hard-codes
a pocket size would break on the real models, which the tests cannot
download. So each notebook in notebooks/ is run here, in a fresh Jupyter
kernel, with SDNOTES_MODEL set to the two random-weight SD-shaped models of
sdnotes/tiny.py (their images are noise; only the code paths are checked).

* Only notebooks present at collection time are run.
* The kernel's environment comes from scripts/notebook_kernel.py, as for
  every kernel the tests start: this checkout of sdnotes on PYTHONPATH,
  PyTorch on one thread, and SDNOTES_MODEL set to the SD-shaped model.
* A cell that raises fails the test with that cell's error. NOTEBOOK_TIMEOUT_S
  is a per-cell hang guard, not a speed check.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from notebook_kernel import kernel_environment  # scripts/ is on sys.path (conftest.py)

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SD_SHAPED_MODELS = ["tiny-sd15", "tiny-sd21"]
NOTEBOOK_TIMEOUT_S = 120


@pytest.mark.parametrize("model", SD_SHAPED_MODELS)
@pytest.mark.parametrize("notebook_path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_with_sd_shaped_model(notebook_path, model):
    notebook = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=NOTEBOOK_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook_path.parent)}},
    )
    try:
        client.execute(env=kernel_environment(model=model))
    except CellExecutionError as error:
        pytest.fail(f"{notebook_path.name} with SDNOTES_MODEL={model}: a cell raised\n{error}", pytrace=False)
    except (CellTimeoutError, DeadKernelError) as error:
        pytest.fail(f"{notebook_path.name} with SDNOTES_MODEL={model}: {type(error).__name__}: {error}",
                    pytrace=False)
