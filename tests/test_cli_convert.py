"""``grukit convert IN OUT`` as a user runs it."""

import os
import subprocess
import sys

import pytest
import torch

import grukit
from grukit.cli.main import main
from grukit.serialization import load, save

pytest.importorskip("onnx")


def _state_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_chain_through_every_format_comes_back_bit_for_bit(tmp_path, capsys):
    pytest.importorskip("keras")
    ref = torch.nn.GRU(5, 8, num_layers=2, bidirectional=True)
    torch.save(ref.state_dict(), tmp_path / "m.pt")
    chain = ["m.pt", "m.onnx", "m.keras", "m.safetensors", "back.pt"]
    for src, dst in zip(chain, chain[1:]):
        assert main(["convert", str(tmp_path / src), str(tmp_path / dst)]) == 0
        out = capsys.readouterr().out
        assert "GRU(5, 8, num_layers=2" in out and "bidirectional=True, reset_after=True" in out
        assert f"wrote   {tmp_path / dst}" in out and "verified: outputs agree" in out
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert _state_equal(back, ref.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(chain)  # no temporary files left


def test_spec_formulation_goes_to_onnx_and_keras_but_not_to_a_torch_state_dict(tmp_path, capsys):
    model = grukit.GRU(3, 4, reset_after=False)
    save(model, tmp_path / "m.safetensors")
    assert (
        main(
            [
                "convert",
                str(tmp_path / "m.safetensors"),
                str(tmp_path / "m.onnx"),
                "--sequence-lens",
                "--initial-state",
                "--opset",
                "18",
            ]
        )
        == 0
    )
    assert "reset_after=False" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "m.safetensors"), str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grukit: error: to_torch: this model has reset_after=False")
    assert err.count("\n") == 1 and not (tmp_path / "m.pt").exists()
    # ONNX records the formulation: a contradicting flag is refused
    assert (
        main(["convert", str(tmp_path / "m.onnx"), str(tmp_path / "x.safetensors"), "--reset-after", "true"])
        == 2
    )
    assert "holds a reset_after=False model" in capsys.readouterr().err


def test_a_bare_state_dict_takes_the_formulation_from_the_flag(tmp_path, capsys):
    model = grukit.GRU(3, 4, reset_after=False)
    torch.save(model.state_dict(), tmp_path / "spec.pt")
    assert (
        main(
            [
                "convert",
                str(tmp_path / "spec.pt"),
                str(tmp_path / "spec.safetensors"),
                "--reset-after",
                "false",
            ]
        )
        == 0
    )
    back = load(tmp_path / "spec.safetensors")
    assert not back.reset_after and _state_equal(back.state_dict(), model.state_dict())


def test_existing_output_is_kept_unless_forced(tmp_path, capsys):
    torch.save(torch.nn.GRU(3, 4).state_dict(), tmp_path / "m.pt")
    (tmp_path / "m.onnx").write_bytes(b"precious")
    assert main(["convert", str(tmp_path / "m.pt"), str(tmp_path / "m.onnx")]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "m.onnx").read_bytes() == b"precious"
    assert main(["convert", str(tmp_path / "m.pt"), str(tmp_path / "m.onnx"), "--force"]) == 0


def test_a_failed_verification_writes_nothing(tmp_path, capsys, monkeypatch):
    import grukit.convert

    torch.save(torch.nn.GRU(3, 4).state_dict(), tmp_path / "m.pt")
    monkeypatch.setattr(grukit.convert, "verify_file", lambda model, path: float("nan"))
    assert main(["convert", str(tmp_path / "m.pt"), str(tmp_path / "m.onnx")]) == 2
    assert "verification failed" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


@pytest.mark.parametrize(
    "make, args, message",
    [
        (None, ["missing.pt", "out.onnx"], "no such file: "),
        (None, ["m.txt", "out.onnx"], "unknown format '.txt'"),
        (b"garbage", ["m.pt", "out.onnx"], "torch.load(weights_only=True) can read"),
        (b"garbage", ["m.onnx", "out.pt"], "not a readable ONNX model"),
        (b"garbage", ["m.safetensors", "out.pt"], "not a readable safetensors file"),
        ("module", ["m.pt", "out.onnx"], "pickled modules and other objects are refused"),
        ("lstm", ["m.pt", "out.onnx"], "expected weight_hh_l0 of shape (3H, H)"),
        ("gru", ["m.pt", "out.safetensors", "--opset", "17"], "apply to .onnx output only"),
        ("gru", ["m.pt", "m.pt"], "exists; pass --force"),
        ("gru", ["m.pt", "nofolder/out.onnx"], "no such folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, make, args, message):
    src = tmp_path / args[0]
    if isinstance(make, bytes):
        src.write_bytes(make)
    elif make == "module":
        torch.save(torch.nn.GRU(3, 4), src)
    elif make == "lstm":
        torch.save(torch.nn.LSTM(3, 4).state_dict(), src)
    elif make == "gru":
        torch.save(torch.nn.GRU(3, 4).state_dict(), src)
    argv = [
        "convert",
        *[str(tmp_path / a) if not a.startswith("--") and not a.isdigit() else a for a in args],
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("grukit: error: ") and message in err and err.count("\n") == 1


def test_convert_help_and_console_script(tmp_path):
    torch.save(torch.nn.GRU(3, 4).state_dict(), tmp_path / "m.pt")
    grukit_bin = os.path.join(os.path.dirname(sys.executable), "grukit")
    r = subprocess.run([grukit_bin, "convert", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and ".safetensors" in r.stdout and "--reset-after" in r.stdout
    r = subprocess.run(
        [grukit_bin, "convert", str(tmp_path / "m.pt"), str(tmp_path / "m.pt")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_single_layer_to_keras_is_verified_with_an_initial_state(tmp_path, capsys):
    pytest.importorskip("keras")
    model = grukit.GRU(3, 4, reset_after=False)
    with torch.no_grad():
        model.bias_hh_l0.uniform_(-1, 1)  # folded into Keras's single bias
    save(model, tmp_path / "m.safetensors")
    assert main(["convert", str(tmp_path / "m.safetensors"), str(tmp_path / "m.keras")]) == 0
    assert "verified" in capsys.readouterr().out
    from grukit.convert.files import verify_file

    assert verify_file(model, tmp_path / "m.keras") < 1e-5
    with torch.no_grad():
        model.weight_hh_l0.add_(0.1)  # a different model must not verify
    assert verify_file(model, tmp_path / "m.keras") > 1e-3


def test_an_internal_error_is_a_bug_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import tempfile

    import grukit.convert

    crash = tmp_path / "tmp"
    crash.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(crash))
    monkeypatch.delenv("GRUKIT_DEBUG", raising=False)
    torch.save(torch.nn.GRU(3, 4).state_dict(), tmp_path / "m.pt")

    def verify_with_a_bug(model, path):
        raise TypeError("internal")  # a TypeError was once reported as the user's mistake

    monkeypatch.setattr(grukit.convert, "verify_file", verify_with_a_bug)
    assert main(["convert", str(tmp_path / "m.pt"), str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("grukit: internal error: TypeError: internal. This is a bug in grukit")
    [written] = crash.iterdir()
    assert "verify_with_a_bug" in written.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "tmp"]


def test_onnx_output_without_onnx_names_the_extra(tmp_path, capsys, monkeypatch):
    torch.save(torch.nn.GRU(3, 4).state_dict(), tmp_path / "m.pt")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    assert main(["convert", str(tmp_path / "m.pt"), str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grukit: error: ") and "pip install 'grukit[onnx]'" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
