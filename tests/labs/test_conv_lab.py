"""Lab `conv` through the real CLI: complete figures, the hand convolution within 1e-5, the weights path."""

import json
from pathlib import Path

import pytest
import torch

from dlconcepts.cli import main
from dlconcepts.data.imagenet import imagenet_class_names
from dlconcepts.data.images import imagenet_preprocess, load_photo
from dlconcepts.nets.cnn import build_cnn

FIGURES = ("preprocessing", "filters", "feature_maps_course_cnn", "feature_maps_alexnet_conv1",
           "feature_maps_alexnet_conv2", "max_pool")


def run_conv(tmp_path: Path, *sets: str) -> Path:
    args = ["run", "conv", "--quick", "--out", str(tmp_path), "--quiet"]
    for pair in sets:
        args += ["--set", pair]
    assert main(args) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return run_dir


def test_quick_run_writes_every_figure_and_the_hand_convolution_is_within_1e_5(tmp_path):
    run_dir = run_conv(tmp_path)
    for name in FIGURES:
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 10_000, name
    assert not (run_dir / "figures" / "top5.png").exists()
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["alexnet_conv1_shape"] == [1, 64, 55, 55]  # the course's slide
    assert m["alexnet_shapes_by_formula"]["features.0"] == [1, 64, 55, 55]
    assert m["alexnet_pool1_shape"] == [1, 64, 27, 27] and m["alexnet_conv2_shape"] == [1, 192, 27, 27]
    assert m["course_cnn_conv1_shape"] == [1, 32, 64, 64] and m["course_cnn_conv2_shape"] == [1, 8, 32, 32]
    assert m["network_input_shape"] == [1, 3, 224, 224] and m["crop_top_left"] == [16, 80]
    assert len(m["filter_max_abs_diff"]) == 7
    assert max(m["filter_max_abs_diff"].values()) == m["hand_conv_max_abs_diff"] <= 1e-5
    assert m["hand_conv_within_bound"] is True
    # the networks' first layers recomputed by hand (measured 9.5e-07 and 4.5e-06 with seed 0)
    assert m["course_cnn_conv1_max_abs_diff"] <= 1e-5 and m["alexnet_conv1_max_abs_diff"] <= 1e-5
    assert all(v == 0.0 for v in m["max_pool_max_abs_diff"].values())  # a max picks an input: exact
    assert m["top5"] == [] and m["weights"] == ""
    saved = torch.load(run_dir / "model.pt", weights_only=True)  # the filters behind the maps shown
    assert saved["model"]["alexnet.features.0.weight"].shape == (64, 3, 11, 11)
    assert saved["model"]["course_cnn.features.3.weight"].shape == (8, 32, 3, 3)
    report = (run_dir / "report.md").read_text()
    assert "random weights (seed 0)" in report and "--set weights=FILE" in report
    assert "[1, 64, 55, 55]" in report


def test_weights_file_classifies_the_crop_with_the_1000_imagenet_names(tmp_path):
    torch.manual_seed(3)
    model = build_cnn("alexnet")
    weights = tmp_path / "alexnet_random.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "runs"
    run_dir = run_conv(out, f"weights={weights}", "photo=flower")
    m = json.loads((run_dir / "metrics.json").read_text())
    names = imagenet_class_names()
    top5 = m["top5"]
    assert [t["rank"] for t in top5] == [1, 2, 3, 4, 5]
    assert all(t["name"] == names[t["index"]] for t in top5)
    probs = [t["probability"] for t in top5]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    # the same five classes from the model itself (random weights: meaningless, but the path is the real one)
    with torch.no_grad():
        expected = torch.softmax(model.eval()(imagenet_preprocess(load_photo("flower")).batch), dim=1)[0].topk(5)
    assert [t["index"] for t in top5] == expected.indices.tolist()
    assert probs == pytest.approx(expected.values.tolist(), rel=1e-5)
    assert (run_dir / "figures" / "top5.png").is_file()
    report = (run_dir / "report.md").read_text()
    assert f"top-1: {top5[0]['name']}" in report and "alexnet_random.pt" in report


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"this is not a weight file", "not a PyTorch weights file"),
    ("resnet18", "seems to be for 'resnet18'"),
])
def test_a_missing_garbage_or_mismatched_weights_file_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    weights = tmp_path / "weights.pt"
    if content == "resnet18":
        torch.save(build_cnn("resnet18").state_dict(), weights)
    elif content is not None:
        weights.write_bytes(content)
    code = main(["run", "conv", "--quick", "--out", str(tmp_path / "runs"), "--quiet", "--set", f"weights={weights}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("dlc: error:") and message in err and "Traceback" not in err
