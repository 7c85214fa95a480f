"""Every file reader fed damaged files (hypothesis): truncated, bit-flipped, overwritten, empty,
and another format's bytes under the name (a PNG renamed). Each either reads the file or raises
one of grukit's user errors (what the command line prints as one line, exit status 2) whose
message names the file; never another exception from deep inside, and never memory in
proportion to a size the file merely declares (checked in a subprocess under RLIMIT_AS).

The default profile tries a few derandomized files per reader; ``make fuzz`` many more.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
from itertools import count
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import event, example, given, note, settings
from hypothesis import strategies as st

import grukit
from grukit.cli._errors import is_user_error, one_line

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489") + b"\0" * 40

# -- the seeds: one valid file (or folder) per reader -------------------------------------------


def _wav(path: Path) -> None:
    import soundfile as sf

    t = np.arange(4000) / 8000
    sf.write(path, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, subtype="PCM_16")


def _onnx(path: Path) -> None:
    grukit.convert.export_onnx(grukit.GRU(2, 3, reset_after=True), path)


def _forecaster(path: Path) -> None:
    from grukit.apps.forecast import GRUForecaster

    rng = np.random.default_rng(0)
    series = [np.sin(np.arange(40) / 3) + 0.1 * rng.standard_normal(40) + 2 for _ in range(3)]
    train = {"epochs": 1, "batch_size": 16, "steps_per_epoch": 2, "progress": "off", "patience": None}
    GRUForecaster(4, 4, train=train, hidden_size=4).fit(series).save(path)


def _checkpoint(root: Path) -> None:
    from grukit.train import checkpoint

    model = torch.nn.GRU(2, 3)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 1, 2))[0].sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "epoch": 1, "rng": torch.get_rng_state(), "history": [0.5]}
    checkpoint.save(root, epoch=1, model=model, trainer_state=state, meta={"epoch": 1}, best=True)


def _read_checkpoint(root: Path):
    from grukit.train import checkpoint

    return checkpoint.load(root)


def _read_forecaster(path: Path):
    from grukit.apps.forecast import GRUForecaster

    return GRUForecaster.load(path)


def _read_series(path: Path):
    from grukit.data.series import read_csv

    return read_csv(path)


def _read_signal(path: Path):
    """The anomaly command's CSV readers, whole and in chunks (``grukit anomaly score``)."""
    from grukit.cli import anomaly

    anomaly._read(path, None, "time", "label")
    return list(anomaly._read_chunks(path, None, "time", "label", 50))


def _read_text(path: Path):
    from grukit.data.text import read_text

    return read_text(path, level="char")


def _read_wav(path: Path):
    from grukit.data.audio import read_audio

    return read_audio(path)


def _discord(path: Path) -> None:
    from grukit.apps.anomaly.discord import DiscordDetector

    det = DiscordDetector(20, false_alarm_rate=0.01)  # as fit() leaves it, without stumpy
    det.reference_, det.threshold_ = np.sin(np.arange(200) / 3.0)[:, None], 1.5
    det.save(path)


def _read_discord(path: Path):
    from grukit.apps.anomaly.discord import DiscordDetector

    return DiscordDetector.load(path)


# name: (suffix, writer of the seed, reader)
FILES = {
    "csv": (
        ".csv",
        lambda p: p.write_text(
            "id,time,value\n" + "".join(f"s{i % 2},2020-{1 + i // 2:02d}-01,{i * 1.5}\n" for i in range(24))
        ),
        _read_series,
    ),
    "signal": (
        ".csv",
        lambda p: p.write_text(
            "time,value,label\n"
            + "".join(
                f"2020-01-01 00:{i // 60:02d}:{i % 60:02d},{(i % 7) * 0.3},{int(i % 50 == 0)}\n"
                for i in range(120)
            )
        ),
        _read_signal,
    ),
    "text": (".txt", lambda p: p.write_text("the quick brown fox, über alles\n" * 20), _read_text),
    "wav": (".wav", _wav, _read_wav),
    "safetensors": (".safetensors", lambda p: grukit.save(grukit.GRU(2, 3, 2), p), grukit.load),
    "pt": (".pt", lambda p: torch.save(torch.nn.GRU(2, 3).state_dict(), p), grukit.convert.read_model),
    "onnx": (".onnx", _onnx, grukit.convert.read_model),
    "keras": (
        ".keras",
        lambda p: grukit.convert.save_keras(grukit.GRU(2, 3, reset_after=True), p),
        grukit.convert.read_model,
    ),
    "discord": (".safetensors", _discord, _read_discord),
}
# name: (writer of the seed folder, reader)
FOLDERS = {"forecaster": (_forecaster, _read_forecaster), "checkpoint": (_checkpoint, _read_checkpoint)}


_START: dict[str, int] = {}


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes on Linux


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("keras")
    with open("/proc/self/statm") as f:  # resident pages now, and the peak so far
        _START.update(rss=int(f.read().split()[1]) * resource.getpagesize(), peak=_peak_rss())
    root = tmp_path_factory.mktemp("seeds")
    out = {}
    for name, (suffix, write, read) in FILES.items():
        out[name] = root / f"{name}{suffix}"
        write(out[name])
        read(out[name])  # the seed itself reads
    for name, (write, read) in FOLDERS.items():
        write(root / name)
        read(root / name)
        out[name] = root / name
    return out


# -- mutations ----------------------------------------------------------------------------------

MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(
        st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=6)
    ),
    st.tuples(
        st.just("flip_head"),
        st.lists(st.tuples(st.integers(0, 255), st.integers(0, 7)), min_size=1, max_size=4),
    ),
    st.tuples(st.just("overwrite"), st.floats(0, 1), st.binary(min_size=1, max_size=32)),
    st.tuples(st.just("empty")),
    st.tuples(st.just("png")),
)


def mutate(data: bytes, mutation: tuple) -> bytes:
    kind, *args = mutation
    if kind == "empty":
        return b""
    if kind == "png":  # another format's file under this name
        return PNG
    if kind == "truncate":
        return data[: int(args[0] * len(data))]
    buf = bytearray(data)
    if kind in ("flip", "flip_head"):  # anywhere, or in the first 256 bytes (the header)
        for where, bit in args[0]:
            i = min(int(where * len(buf)), len(buf) - 1) if kind == "flip" else where % len(buf)
            buf[i] ^= 1 << bit
    else:  # overwrite
        i = int(args[0] * len(buf))
        buf[i : i + len(args[1])] = args[1]
    return bytes(buf)


_names = count()


def _check_outcome(read, target: Path, named: Path, what: str) -> None:
    """``read(target)`` succeeds or raises a user error, on one line, naming ``named``. The
    outcome is counted (``--hypothesis-show-statistics`` lists the counts per reader)."""
    try:
        read(target)
        event(f"{what}: read")
    except Exception as exc:  # noqa: BLE001 - the kind of exception is what is tested
        event(f"{what}: {type(exc).__name__}")
        note(f"{type(exc).__name__}: {exc}")
        assert is_user_error(exc), f"{type(exc).__name__} is not a user error: {exc}"
        line = one_line(exc)
        assert line and (named.name in line or str(named) in line), line


# a damaged file is read in milliseconds: five times the profile's examples
MORE = settings(max_examples=5 * settings().max_examples)


@MORE
@given(name=st.sampled_from(sorted(FILES)), mutation=MUTATIONS)
@example(name="onnx", mutation=("flip", [(0.296875, 7)]))  # an op_type no longer UTF-8 (was a TypeError)
def test_a_damaged_file_reads_or_gives_a_clear_error(seeds, tmp_path_factory, name, mutation):
    seed = seeds[name]
    target = tmp_path_factory.getbasetemp() / f"fuzz-{next(_names)}{seed.suffix}"
    target.write_bytes(mutate(seed.read_bytes(), mutation))
    try:
        _check_outcome(FILES[name][2], target, target, name)
    finally:
        target.unlink()


@MORE
@given(name=st.sampled_from(sorted(FOLDERS)), pick=st.integers(0, 99), mutation=MUTATIONS)
def test_a_damaged_model_folder_or_checkpoint_reads_or_gives_a_clear_error(
    seeds, tmp_path_factory, name, pick, mutation
):
    folder = tmp_path_factory.getbasetemp() / f"fuzz-{next(_names)}"
    shutil.copytree(seeds[name], folder)
    try:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        victim = files[pick % len(files)]
        note(f"mutated {victim.relative_to(folder)}")
        victim.write_bytes(mutate(victim.read_bytes(), mutation))
        _check_outcome(FOLDERS[name][1], folder, folder, f"{name} {victim.relative_to(folder)}")
    finally:
        shutil.rmtree(folder)


def test_fuzzing_in_process_stays_within_memory(seeds):
    """After the fuzz tests above (same module, run before this one), the process's peak
    resident memory has grown by less than 2 GiB over what it held when the seeds were made
    (or stayed below an earlier test's peak): far below any size a damaged file might declare."""
    peak = _peak_rss()
    assert peak <= max(_START["peak"], _START["rss"] + 2 * 2**30), (
        f"peak resident memory {peak / 2**30:.1f} GiB, {_START['rss'] / 2**30:.1f} GiB before the fuzzing"
    )


def test_a_time_column_mixing_time_zones_is_a_data_error(tmp_path):
    """Found by the fuzzer: one flipped bit made a '+' in a date, and pandas raised ValueError."""
    from grukit.data.series import DataError, read_csv

    path = tmp_path / "tz.csv"
    path.write_text("time,value\n2020-01-01 00:00:00,1\n2020-01-01 00:00:01+01:00,2\n2020-01-01 00:00:02,3\n")
    with pytest.raises(DataError, match="tz.csv: the time column cannot be read as dates and times: Mixed"):
        read_csv(path)


@pytest.mark.parametrize(
    "direction, match",
    [(b"forw\xe1rd", "attribute 'direction' is damaged"), (b"sideways", "expected direction 'forward'")],
)
def test_an_onnx_gru_attribute_damaged_is_a_conversion_error(seeds, tmp_path, direction, match):
    """Found by the fuzzer: one flipped bit in "forward" made a string that is not UTF-8, and its
    UnicodeDecodeError escaped load_onnx."""
    import onnx

    from grukit.convert import ConversionError, read_model

    proto = onnx.load(str(seeds["onnx"]))
    node = next(n for n in proto.graph.node if n.op_type == "GRU")
    node.attribute.append(onnx.helper.make_attribute("direction", "forward"))
    node.attribute[-1].s = direction
    path = tmp_path / "damaged.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ConversionError, match=f"damaged.onnx: GRU node .*{match}"):
        read_model(path)


# -- enormous headers, under a memory limit -----------------------------------------------------

_ENORMOUS = r"""
import json, os, resource, struct, sys, zipfile
os.environ.setdefault("KERAS_BACKEND", "torch")
from pathlib import Path
import numpy as np, torch, onnx, keras, soundfile
from onnx import TensorProto, helper
import grukit
from grukit.cli._errors import is_user_error, one_line
from grukit.convert import read_model
from grukit.data.audio import read_audio

d = Path(sys.argv[1])
cases = {}


def case(f):
    cases[f.__name__] = f
    return f


@case
def safetensors_header_claims_100_GB():
    header = json.dumps({"weight_ih_l0": {"dtype": "F32", "shape": [25_000_000_000],
                                          "data_offsets": [0, 100_000_000_000]}}).encode()
    p = d / "claims.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    grukit.load(p, reset_after=True)


@case
def safetensors_config_claims_hidden_size_1e9():
    from safetensors.torch import save_file
    gru = grukit.GRU(2, 3)
    config = {k: getattr(gru, k) for k in grukit.convert._common.CONFIG_KEYS} | {"hidden_size": 10**9}
    p = d / "config.safetensors"
    save_file(dict(gru.state_dict()), str(p), metadata={"format": "grukit.GRU/1", "config": json.dumps(config)})
    grukit.load(p)


@case
def state_dict_names_claim_1e7_layers():
    from safetensors.torch import save_file
    state = dict(torch.nn.GRU(2, 3).state_dict()) | {"weight_hh_l9999999": torch.zeros(9, 3)}
    save_file(state, str(d / "layers.safetensors"))
    grukit.load(d / "layers.safetensors", reset_after=True)


@case
def onnx_declares_hidden_size_1e9():
    H = 10**9
    def stored(name, dims):
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
        t.raw_data = bytes(24)
        return t
    node = helper.make_node("GRU", ["X", "W", "R"], ["Y"], hidden_size=H)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [5, 1, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              initializer=[stored("W", [1, 3 * H, 2]), stored("R", [1, 3 * H, H])])
    (d / "big.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    read_model(d / "big.onnx")


@case
def wav_header_claims_2_to_31_frames():
    p = d / "big.wav"
    soundfile.write(p, (0.5 * np.sin(np.arange(8000) / 5)).astype(np.float32), 8000, subtype="PCM_16")
    data = bytearray(p.read_bytes())
    struct.pack_into("<I", data, data.find(b"data") + 4, 2 * 2**31 - 2)  # 2**31 16-bit frames
    struct.pack_into("<I", data, 4, 0xFFFFFFF0)  # and the RIFF size to match
    p.write_bytes(bytes(data))
    wave, rate = read_audio(p)
    assert len(wave) <= 8000, len(wave)  # what the file holds, not what it claims


@case
def legacy_pt_storage_claims_4_GB():
    p = d / "legacy.pt"
    torch.save(torch.nn.GRU(2, 3).state_dict(), p, _use_new_zipfile_serialization=False)
    data = p.read_bytes()
    i = data.find(b"X\x03\x00\x00\x00cpuq") + 10  # the first storage's element count follows 'cpu'
    assert data[i:i + 1] == b"K", data[i - 10:i + 4]
    p.write_bytes(data[:i] + b"J" + struct.pack("<i", 2**30) + data[i + 2:])
    read_model(p)


@case
def keras_config_declares_1e9_units():
    p = d / "seed.keras"
    grukit.convert.save_keras(grukit.GRU(2, 3, reset_after=True), p)
    with zipfile.ZipFile(p) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    members["config.json"] = members["config.json"].replace(b'"units": 3', b'"units": 1000000000')
    with zipfile.ZipFile(d / "big.keras", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    read_model(d / "big.keras")


@case
def forecaster_folder_declares_hidden_size_1e9():
    from grukit.apps.forecast import GRUForecaster
    series = [np.sin(np.arange(40) / 3) + 2 for _ in range(3)]
    train = {"epochs": 1, "batch_size": 16, "steps_per_epoch": 1, "progress": "off", "patience": None}
    GRUForecaster(4, 4, train=train, hidden_size=4).fit(series).save(d / "fc")
    meta = json.loads((d / "fc" / "forecaster.json").read_text())
    meta["forecaster"]["hidden_size"] = 10**9
    (d / "fc" / "forecaster.json").write_text(json.dumps(meta))
    GRUForecaster.load(d / "fc")


@case
def anomaly_folder_declares_hidden_size_1e9():
    from grukit.apps.anomaly import GRUAnomalyDetector
    train = {"epochs": 1, "batch_size": 16, "steps_per_epoch": 1, "progress": "off", "patience": None}
    signal = np.sin(np.arange(600) / 3)
    GRUAnomalyDetector("signal", window=20, hidden_size=4, train=train).fit(signal).save(d / "det")
    meta = json.loads((d / "det" / "detector.json").read_text())
    meta["detector"]["hidden_size"] = 10**9
    (d / "det" / "detector.json").write_text(json.dumps(meta))
    GRUAnomalyDetector.load(d / "det")


@case
def discord_reference_claims_100_GB():
    from grukit.apps.anomaly.discord import FORMAT, DiscordDetector
    meta = {"format": FORMAT, "window": "20", "false_alarm_rate": "0.01", "threshold": "1.5"}
    header = json.dumps({"__metadata__": meta, "reference": {"dtype": "F64", "shape": [12_500_000_000, 1],
                                                              "data_offsets": [0, 100_000_000_000]}}).encode()
    p = d / "discord.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    DiscordDetector.load(p)


def vm_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))


torch.set_num_threads(1)
torch.zeros(1) @ torch.zeros(1)  # threads and allocator started before the limit
limit = vm_bytes() + int(sys.argv[2]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
results = {}
for name, f in cases.items():
    try:
        f()
        results[name] = ["read", ""]
    except BaseException as exc:
        results[name] = [type(exc).__name__ if not is_user_error(exc) else "user error", one_line(exc)]
print(json.dumps(results))
"""

LIMIT_MB = 512  # above the memory in use once everything is imported


def test_enormous_declared_sizes_are_refused_before_allocation(tmp_path):
    """A safetensors header claiming a 100 GB tensor, a configuration or an ONNX graph declaring
    hidden_size=10**9, a state dict's names declaring 10**7 layers, a WAV header claiming 2**31
    frames, a legacy .pt storage of 4 GB, a .keras config of 10**9 units, a forecaster's or an
    anomaly detector's folder describing hidden_size=10**9, a discord baseline's reference
    claiming 100 GB: each is refused with a
    user error (or, the WAV, read as what it holds) while the process may allocate at most
    LIMIT_MB more than it had: no reader allocated what the file merely declared."""
    script = tmp_path / "enormous.py"
    script.write_text(_ENORMOUS)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(LIMIT_MB)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, KERAS_BACKEND="torch", OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 10
    for name, (outcome, message) in results.items():
        if name.startswith("wav"):
            assert outcome == "read", (name, outcome, message)
        else:
            assert outcome == "user error", (name, outcome, message)
            assert "allocate" not in message and "memory" not in message.lower(), (name, message)
            assert "/" in message, (name, message)  # it names the file or folder


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["onnx", "safetensors"])
def test_the_cli_reports_a_corrupt_file_in_one_line_with_status_2(seeds, tmp_path, name):
    bad = tmp_path / f"bad{seeds[name].suffix}"
    bad.write_bytes(seeds[name].read_bytes()[:200])  # truncated
    proc = subprocess.run(
        [sys.executable, "-m", "grukit", "convert", str(bad), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grukit: error: ") and str(bad) in lines[0], proc.stderr
    assert not (tmp_path / "out.pt").exists()
