"""Session fixtures of the training tests: datasets made from real photos, models trained
once through the real CLI, and embeddings computed once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camclassd.preprocess import Preprocessor
from camclassd.training import dataset
from camclassd.training.augment import Augment, image_rng, views
from camclassd.training.embed import Embedder
from camclassd.training.quantize import dequantize
from camclassd.training.validate import Views
from tests.conftest import UINT8_MODEL, run_cli
from tests.training.data import object_dataset, state_dataset

OBJECT_PER_CLASS = 10
STATE_PER_CLASS = 12


@pytest.fixture(scope="session")
def object_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return object_dataset(tmp_path_factory.mktemp("objects") / "objects", OBJECT_PER_CLASS)


@pytest.fixture(scope="session")
def state_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return state_dataset(tmp_path_factory.mktemp("state") / "door", STATE_PER_CLASS)


@pytest.fixture(scope="session")
def object_holdout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Other views of the same photos, from another seed: never seen in training."""
    return object_dataset(tmp_path_factory.mktemp("objects-new") / "objects", 6, seed=101)


@pytest.fixture(scope="session")
def state_holdout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return state_dataset(tmp_path_factory.mktemp("state-new") / "door", 10, seed=102)


def train(dataset_dir: Path, out: Path, *extra: str) -> Path:
    done = run_cli(
        "train",
        str(dataset_dir),
        "--out",
        str(out),
        "--no-progress",
        "--views",
        "3",
        *extra,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (out / "stdout.txt").write_text(done.stdout)
    return out


@pytest.fixture(scope="session")
def object_model(object_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(object_data, tmp_path_factory.mktemp("trained") / "objects", "--float")


@pytest.fixture(scope="session")
def state_model(state_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(state_data, tmp_path_factory.mktemp("trained") / "door", "--float")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder(UINT8_MODEL, num_threads=2)


@pytest.fixture(scope="session")
def state_views(state_data: Path, embedder: Embedder) -> tuple[Views, tuple[str, ...]]:
    """Embeddings of the state dataset's views (3 per image), computed once per session."""
    data = dataset.scan(state_data)
    preprocess = Preprocessor(size=embedder.input_size)
    embeddings, image, labels = [], [], []
    for index, example in enumerate(data.examples):
        frame = dataset.decode(example.path)
        assert frame is not None
        rng = image_rng(0, example.path.name)
        for view in views(frame, preprocess, 3, rng, Augment()):
            embeddings.append(embedder(view))
            image.append(index)
        labels.append(example.label)
    stacked = np.stack(embeddings)
    return Views(
        embeddings=stacked,
        features=dequantize(stacked, embedder.quantization),
        image=np.asarray(image),
        image_labels=np.asarray(labels),
        quantization=embedder.quantization,
    ), data.classes
