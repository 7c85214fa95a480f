"""A model traced before it ever ran eagerly still gets the fused cpu backend (the kernels load on
first use; torch.export and torch.compile must not make that first load fail for the process)."""

import subprocess
import sys

import pytest

CODE = """
import warnings, torch, grukit
warnings.simplefilter("error", RuntimeWarning)  # a fallback warning fails the run
gru = grukit.GRU(3, 4, reset_after={ra})
class Wrapper(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = gru
    def forward(self, x):
        return self.gru(x)[0]
x = torch.randn(5, 2, 3)
want = torch.nn.GRU(3, 4) if {ra} else None
if "{how}" == "export":
    ep = torch.export.export(Wrapper(), (x,), strict=False)
    ops = {{str(n.target) for n in ep.graph.nodes}}
    assert "grukit.gru_layer_forward.default" in ops, ops
    got = ep.module()(x)
else:
    got = torch.compile(Wrapper(), fullgraph=True)(x)
ref = grukit.GRU(3, 4, reset_after={ra}, backend="reference")
ref.load_state_dict(gru.state_dict())
torch.testing.assert_close(got, ref(x)[0])
gru(x)
assert gru.backend_used == "cpu", gru.backend_used
print("ok")
"""


# each case is a fresh process (8-16 s on 2 cores); the default suite runs each tracer once and
# each formulation once, the slow suite the other two pairings
@pytest.mark.parametrize(
    "how, reset_after",
    [
        ("compile", False),
        ("export", True),
        pytest.param("compile", True, marks=pytest.mark.slow),
        pytest.param("export", False, marks=pytest.mark.slow),
    ],
)
def test_tracing_before_any_eager_call_keeps_the_cpu_backend(how, reset_after):
    proc = subprocess.run(
        [sys.executable, "-c", CODE.format(how=how, ra=reset_after)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
