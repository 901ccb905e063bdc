"""``localcode setup``: fetch the dataset and build the test image."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click

from localcode.errors import DatasetError

DATASET_URL = "https://github.com/Aider-AI/polyglot-benchmark"
CLONE_TIMEOUT_S = 900


def clone_dataset(dest: Path, url: str | None = None) -> None:
    """``git clone --depth 1 url dest`` (default ``DATASET_URL``). Raises DatasetError (with what to do) on failure."""
    url = url or DATASET_URL
    if shutil.which("git") is None:
        raise DatasetError(f"git is not installed, so {url} cannot be cloned: install git, or pass --dataset PATH")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    cmd = ["git", "-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=60",
           "clone", "--depth", "1", url, str(partial)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CLONE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        shutil.rmtree(partial, ignore_errors=True)
        raise DatasetError(f"cloning {url} took over {CLONE_TIMEOUT_S} s: check the network, or pass --dataset PATH") from None
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        reason = (proc.stderr.strip().splitlines() or ["git failed"])[-1]
        raise DatasetError(
            f"could not clone {url} ({reason}): check the network, or pass --dataset PATH "
            "to a copy of the polyglot-benchmark"
        )
    partial.rename(dest)


@click.command("setup")
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Use this dataset folder instead of cloning (checked, not copied).")
@click.option("--no-image", is_flag=True, help="Do not build the Docker test image.")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="CA bundle the image build trusts for package registries (e.g. behind a TLS proxy).")
def command(dataset: Path | None, no_image: bool, ca_bundle: Path | None) -> None:
    """Fetch the dataset and build the test image.

    \b
    1. Dataset: clones github.com/Aider-AI/polyglot-benchmark (git, shallow) into
       $LOCALCODE_HOME/datasets/polyglot-benchmark, unless it is already there or
       --dataset (or $LOCALCODE_DATASET) names a folder in the same layout
       (<lang>/exercises/practice/<name>/.meta/config.json), which is checked instead.
    2. Test image: builds the Docker image that runs the tests (tagged by a hash of
       its sources, so an unchanged image is reused). Skipped with --no-image.
       'localcode bench' also builds it on demand.
    """
    import os

    from localcode import paths
    from localcode.harness.dataset import dataset_identity, load_dataset

    chosen = dataset or os.environ.get("LOCALCODE_DATASET")
    if chosen:
        root = Path(chosen).expanduser()
        if not root.is_dir():
            raise DatasetError(f"dataset not found at {root}: pass an existing folder to --dataset")
    else:
        root = paths.default_dataset_dir()
        if not root.is_dir():
            click.echo(f"cloning {DATASET_URL} into {root} ...", err=True)
            clone_dataset(root)
    load = load_dataset(root)
    commit, chash = dataset_identity(root)
    per_lang: dict[str, int] = {}
    for e in load.exercises:
        per_lang[e.language] = per_lang.get(e.language, 0) + 1
    langs = ", ".join(f"{k} {v}" for k, v in sorted(per_lang.items()))
    ident = f"commit {commit}" if commit else f"content sha256 {chash[:12] if chash else '?'}"
    click.echo(f"dataset {root.resolve()}: {len(load.exercises)} exercises ({langs}); {ident}"
               + (f"; {len(load.problems)} malformed skipped" if load.problems else ""), err=True)
    if no_image:
        return
    from localcode.harness.image import ensure_image

    image = ensure_image(ca_bundle=ca_bundle) if ca_bundle else ensure_image()
    click.echo(f"test image {image} ready", err=True)
