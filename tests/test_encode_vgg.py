"""VGG16 features: torchvision-format weights load strictly; perceptual losses (CPU, random weights)."""

import pytest
import torch
import torch.nn.functional as F

from aging.encode import vgg as V
from aging.encode.losses import ImageLoss, working_resolution

# torchvision's vgg16: (index, in, out) of every conv in `features`; the classifier is ignored.
TORCHVISION_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
                     (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
                     (26, 512, 512), (28, 512, 512)]


def random_state_dict(seed=0):
    """A state dict in torchvision's vgg16 format (features + a small stand-in classifier)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for i, cin, cout in TORCHVISION_CONVS:
        sd[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
        sd[f"features.{i}.bias"] = torch.randn(cout, generator=gen) * 0.01
    sd["classifier.0.weight"] = torch.zeros(4, 8)  # shapes of classifier entries are not checked
    sd["classifier.6.bias"] = torch.zeros(4)
    return sd


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    sd = random_state_dict()
    torch.save(sd, path)
    return path, sd


def test_layout_matches_torchvision():
    table = V.features_table()
    want = {}
    for i, cin, cout in TORCHVISION_CONVS:
        want[f"features.{i}.weight"] = (cout, cin, 3, 3)
        want[f"features.{i}.bias"] = (cout,)
    assert table == want
    feats = V.make_features()
    assert len(feats) == 31
    assert [i for i, m in enumerate(feats) if isinstance(m, torch.nn.MaxPool2d)] == [4, 9, 16, 23, 30]
    assert all(isinstance(feats[t], torch.nn.ReLU) for t in V.DEFAULT_TAPS)


def test_loads_a_torchvision_state_dict_file(weights):
    path, sd = weights
    net = V.load_vgg16(path)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    for i, *_ in TORCHVISION_CONVS:
        assert torch.equal(net.features[i].weight, sd[f"features.{i}.weight"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    outs = net(x)
    assert [tuple(o.shape) for o in outs] == [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8), (2, 512, 4, 4),
                                              (2, 512, 2, 2)]
    # reference: the same network written out with functional ops from the state dict
    h = ((x + 1) / 2 - torch.tensor(V.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(V.IMAGENET_STD).view(1, 3, 1, 1)
    ref = []
    for i, *_ in TORCHVISION_CONVS:
        if i in (5, 10, 17, 24):
            h = F.max_pool2d(h, 2)
        h = F.relu(F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1))
        if i + 1 in V.DEFAULT_TAPS:
            ref.append(h)
    for a, b in zip(outs, ref):
        torch.testing.assert_close(a, b)


def test_found_in_the_cache(weights, tmp_path, monkeypatch):
    path, _ = weights
    monkeypatch.setenv("AGING_CACHE", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(V.VGGWeightsError, match="--vgg-weights"):
        V.find_weights()
    (tmp_path / "vgg16.pth").symlink_to(path)
    assert V.find_weights() == tmp_path / "vgg16.pth"
    assert V.load_vgg16().features[0].weight.shape == (64, 3, 3, 3)


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.update({"features.2.weight": torch.zeros(64, 64, 5, 5)}), r"features\.2\.weight has shape \[64, 64, 5, 5\], expected \[64, 64, 3, 3\]"),
    (lambda sd: sd.pop("features.28.bias"), r"missing key 'features\.28\.bias'"),
    (lambda sd: sd.update({"features.1.running_mean": torch.zeros(64)}), r"unexpected key 'features\.1\.running_mean'"),
    (lambda sd: sd.update({"features.0.weight": torch.zeros(64, 3, 3, 3, dtype=torch.int64)}), "not a floating-point"),
    (lambda sd: sd.update({"features.0.bias": torch.full((64,), float("nan"))}), "NaN"),
])
def test_wrong_state_dict_is_refused_clearly(weights, change, message):
    sd = dict(weights[1])
    change(sd)
    with pytest.raises(V.VGGWeightsError, match=message) as info:
        V.check_state_dict(sd, "bad.pth")
    assert str(info.value).startswith("bad.pth: ") and "\n" not in str(info.value)


def test_wrong_file_is_refused_with_its_name(weights, tmp_path):
    sd = dict(weights[1])
    sd["features.5.weight"] = torch.zeros(128, 32, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(V.VGGWeightsError, match=r"features\.5\.weight has shape") as info:
        V.load_vgg16(path)
    assert str(info.value).startswith(f"{path}: ")


def test_unreadable_or_unsafe_files_are_refused(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(V.VGGWeightsError, match="cannot read VGG16 weights"):
        V.load_vgg16(junk)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(V.VGGWeightsError, match="expected a state dict"):
        V.load_vgg16(listed)
    code = tmp_path / "code.pth"
    torch.save({"features.0.weight": torch.nn.Conv2d(1, 1, 1)}, code)  # a pickled module: refused unread
    with pytest.raises(V.VGGWeightsError, match="cannot read"):
        V.load_vgg16(code)
    with pytest.raises(V.VGGWeightsError, match="not found"):
        V.load_vgg16(tmp_path / "absent.pth")


def test_perceptual_loss_needs_weights():
    with pytest.raises(ValueError, match="needs VGG16 weights"):
        ImageLoss("lpips-vgg", resolution=32)
    ImageLoss("mse", resolution=32)  # pixel loss needs none


def test_perceptual_losses_per_photo(weights):
    net = V.load_vgg16(weights[0])
    loss = ImageLoss("lpips-vgg+vgg+mse", resolution=32, vgg=net)
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 64, 64, generator=gen) * 2 - 1
    b = torch.rand(3, 3, 64, 64, generator=gen) * 2 - 1
    prepared = loss.prepare(a)
    assert prepared.images.shape == (3, 3, 32, 32)  # targets are brought to the working resolution
    same = loss(a, prepared)
    assert set(same) == {"lpips-vgg", "vgg", "mse", "total"}
    assert all(torch.allclose(v, torch.zeros(3), atol=1e-5) for v in same.values())
    diff = loss(b, prepared)
    assert all((v > 0).all() for v in diff.values())
    assert (diff["lpips-vgg"] <= 20).all()  # 5 layers of unit-normalised features
    torch.testing.assert_close(diff["total"], diff["lpips-vgg"] + diff["vgg"] + diff["mse"])
    # photos are independent: one photo alone gets the same value as in the batch
    alone = loss(b[1:2], prepared.narrow(1, 1))
    torch.testing.assert_close(alone["lpips-vgg"], diff["lpips-vgg"][1:2], rtol=1e-4, atol=1e-6)
    # gradients reach the images
    x = b.clone().requires_grad_(True)
    loss(x, prepared)["total"].sum().backward()
    assert x.grad.abs().sum() > 0


def test_working_resolution():
    assert working_resolution(1024) == 256
    assert working_resolution(32) == 32
    assert working_resolution(1024, 512) == 512
    with pytest.raises(ValueError, match="exceeds"):
        working_resolution(32, 64)


def test_projection_and_cli_with_perceptual_loss(weights, tmp_path):
    """lpips-vgg gradients reach the latents; the CLI encodes with --vgg-weights FILE."""
    from click.testing import CliRunner
    from PIL import Image

    from aging.cli.encode import encode
    from aging.encode.options import ProjectOptions
    from aging.encode.projector import project
    from aging.stylegan import Generator, to_uint8
    from aging.stylegan.checkpoints import save_generator

    torch.manual_seed(0)
    G = Generator(z_dim=16, w_dim=16, img_resolution=32, mapping_layers=2, channel_base=256, channel_max=16)
    G.eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(256, 16))[:, 0].mean(0))
        targets = G.synthesis(G.mapping(torch.randn(2, 16), truncation_psi=0.7))
    loss = ImageLoss("lpips-vgg", resolution=32, vgg=V.load_vgg16(weights[0]))
    proj = project(G, targets, loss=loss, options=ProjectOptions(steps=15), w_std=1.0)
    assert (proj.losses["lpips-vgg"] < 0.8 * proj.history[0]).all()

    save_generator(G, tmp_path / "gen")
    (tmp_path / "photos").mkdir()
    for age, frame in zip((100, 200), to_uint8(targets)):
        Image.fromarray(frame).save(tmp_path / "photos" / f"{age}.jpg")
    r = CliRunner().invoke(encode, [str(tmp_path / "photos"), "-g", str(tmp_path / "gen"), "--vgg-weights",
                                    str(weights[0]), "--steps", "3", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "photos" / "latents").iterdir()) == ["100.npy", "200.npy"]
