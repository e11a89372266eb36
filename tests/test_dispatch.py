"""Work that reaches ATen without a Python-level torch function (torchflops._dispatch).

Each case used to count 0 and report nothing. The oracles: hand counts, PyTorch's FlopCounterMode
(which works at the same level), and the eager module an exported graph came from.
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf

# an n x n by n x n product: n^2 outputs, each summing n products
MM_5 = 5 * 5 * 5


@pytest.fixture(scope="module")
def scripted_mm():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)      # torch.jit is deprecated, still used

        @torch.jit.script
        def square(a: torch.Tensor) -> torch.Tensor:
            return torch.mm(a, a)
    return square


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_torchscript_function_called_from_forward_is_counted(scripted_mm, device):
    class Caller(nn.Module):
        def forward(self, x):
            return scripted_mm(x)

    class WithParameter(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(5, 5))

        def forward(self, x):
            return scripted_mm(x) + self.w

    for model in (Caller(), WithParameter()):
        prof = tf.count(model, input_size=(5, 5), device=device, strict=True)
        assert prof.total.macs == MM_5
        assert [(r.name, r.type) for r in prof.records] == [("", "aten::mm")]


def test_direct_aten_calls_are_counted():
    class Direct(nn.Module):
        def forward(self, x):
            return torch.ops.aten.mm.default(x, x) + torch.ops.aten.mm(x, x)

    x = torch.randn(5, 5, requires_grad=True)
    prof = tf.count(Direct(), x, strict=True)
    assert prof.total.macs == 2 * MM_5
    # both operands need a gradient: 2 FLOPs per MAC for each, as FlopCounterMode counts backward
    with FlopCounterMode(display=False) as counter:
        Direct()(x).sum().backward()
    assert prof.total.flops + prof.total.backward_flops == counter.get_total_flops()


def _define_custom_op():
    name = "torchflops_test::scaled_square"
    if not hasattr(torch.ops.torchflops_test, "scaled_square"):
        @torch.library.custom_op(name, mutates_args=())
        def scaled_square(x: torch.Tensor) -> torch.Tensor:
            return x @ x * 2

        @scaled_square.register_fake
        def _(x):
            return torch.empty_like(x)
    return name


class CustomCaller(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x):
        return torch.ops.torchflops_test.scaled_square(self.fc(x))


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_custom_op_without_a_formula_is_reported_never_free(device):
    name = _define_custom_op()
    with pytest.warns(tf.UnsupportedWarning, match=f"{name}.*formulas=\\{{'{name}': fn\\}}"):
        prof = tf.count(CustomCaller(), input_size=(5, 5), device=device)
    assert prof.unsupported == {name: 1}
    assert prof.total.macs == 5 * 5 * 5                 # the Linear alone
    with pytest.raises(tf.UnsupportedError, match=name):
        tf.count(CustomCaller(), input_size=(5, 5), device=device, strict=True)


@pytest.mark.parametrize("key", ["name", "packet", "overload"])
def test_a_custom_op_formula_counts_it(key):
    name = _define_custom_op()
    target = {"name": name, "packet": torch.ops.torchflops_test.scaled_square,
              "overload": torch.ops.torchflops_test.scaled_square.default}[key]
    seen = []

    def formula(module, call):
        seen.append(type(module).__name__)
        (x,) = call.input_tensors()
        return tf.Counts(macs=x.shape[0] * x.shape[1] * x.shape[1])

    prof = tf.count(CustomCaller(), input_size=(5, 5), formulas={target: formula}, strict=True)
    assert prof.total.macs == 2 * MM_5                  # the Linear and the op
    assert seen == ["CustomCaller"]                     # the enclosing module is passed
    assert [r.type for r in prof.records] == ["Linear", name]


def test_an_operator_name_without_a_namespace_is_refused():
    with pytest.raises(TypeError, match="mylib::op"):
        tf.count(nn.Linear(2, 2), input_size=(1, 2), formulas={"scaled_square": lambda m, c: tf.Counts()})


def test_sparse_products_are_reported():
    class Sparse(nn.Module):
        def forward(self, x):
            return torch.sparse.mm(x.to_sparse(), x)

    with pytest.warns(tf.UnsupportedWarning, match="_sparse_addmm"):
        prof = tf.count(Sparse(), torch.eye(5), device="cpu")
    assert prof.unsupported == {"aten::_sparse_addmm": 1}


def _eager_and_exported(model: nn.Module, x: torch.Tensor):
    exported = torch.export.export(model, (x,)).module()
    return tf.count(model, x), tf.count(exported, x)


def test_an_exported_resnet18_counts_like_the_eager_module():
    import torchvision
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 224, 224)
    eager, exported = _eager_and_exported(model, x)
    assert eager.total.macs == 1_814_073_344                    # torchvision's meta["_ops"]: 1.814 G
    # every field, bytes included, but elementwise_flops: an exported graph's elementwise ATen
    # operations are not given the eager functions' and modules' conventions
    assert exported.total == eager.total.replace(elementwise_flops=0)
    assert tf.count(torch.export.export(model, (x,)).module(), x, device="cpu").total.macs == 1_814_073_344
    # records take the names in the graph's nn_module_stack (the graph has no calls of free modules)
    assert [r.name for r in exported.records] == [r.name for r in eager.records
                                                  if r.counts.macs or r.counts.comparisons]
    assert exported.module("layer2.0.downsample").macs == eager.module("layer2.0.downsample").macs
    assert exported.unsupported == {}


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [
    ("alexnet", 224), ("vgg11", 224), ("resnet50", 224), ("googlenet", 224), ("densenet121", 224),
    ("mobilenet_v3_small", 224), ("efficientnet_b0", 224), ("regnet_x_400mf", 224), ("convnext_tiny", 224),
    ("squeezenet1_1", 224), ("shufflenet_v2_x1_0", 224), ("mnasnet0_5", 224), ("vit_b_16", 224),
])
def test_exported_torchvision_models_count_like_their_eager_modules(name, size):
    import torchvision
    kwargs = {"init_weights": True, "aux_logits": False} if name == "googlenet" else {}
    model = torchvision.models.get_model(name, **kwargs).eval()
    x = torch.randn(1, 3, size, size)
    eager, exported = _eager_and_exported(model, x)
    for field in ("macs", "muls", "adds", "comparisons", "grad_input_flops", "grad_weight_flops"):
        assert getattr(exported.total, field) == getattr(eager.total, field), field
    assert exported.unsupported == {}


# -- shared modules and rows that add up ---------------------------------------------------------
class Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


class SharedInner(nn.Module):
    def __init__(self):
        super().__init__()
        inner = nn.Linear(10, 10, bias=False)       # 100 MACs on a 1x10 input, 100 parameters
        self.a, self.b = Wrapper(inner), Wrapper(inner)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_a_shared_module_credits_each_caller_and_answers_under_each_name():
    prof = tf.count(SharedInner(), input_size=(1, 10))
    assert [r.name for r in prof.records] == ["a.inner", "b.inner"]
    assert (prof.module("a").macs, prof.module("b").macs) == (100, 100)
    # the shared module has both calls under both of its names; its parameters count once
    assert prof.module("a.inner").macs == prof.module("b.inner").macs == 200
    assert prof.module("b.inner").params == 100 and prof.total.params == 100
    rows = prof.table(depth=1).splitlines()
    assert [line.split()[0] for line in rows[2:4]] == ["a", "b"]


def test_folded_rows_carry_a_module_s_parameters_once():
    class Thrice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(10, 10)             # 110 parameters, called three times

        def forward(self, x):
            return self.fc(self.fc(self.fc(x)))

    prof = tf.count(Thrice(), input_size=(1, 10))
    fc_row = prof.table(depth=1).splitlines()[2].split()
    assert fc_row[:2] == ["fc", "Linear"] and fc_row[4] == "110"
    # one row per call repeats the parameters, and the table says so
    assert "rows repeat parameters" in prof.table()
    assert "rows repeat" not in prof.table(depth=1)


def test_a_module_s_own_functional_call_shows_its_name_type_and_parameters():
    class Mixer(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(32, 32))  # 1,024 parameters

        def forward(self, x):
            return torch.einsum("ij,jk->ik", x, self.w)

    model = nn.Sequential(Mixer())
    prof = tf.count(model, input_size=(2, 32))
    row = prof.table().splitlines()[2]
    assert row.split()[:3] == ["0", "Mixer", "(einsum)"]
    assert "1.02 K" in row                              # its 1,024 parameters
    assert prof.records[0].counts.params == 0          # the data keeps the record's own count


# -- inputs the stand-ins must not change ------------------------------------------------------------
def test_a_non_leaf_input_keeps_in_place_operations_legal():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(10, 10)

        def forward(self, x):
            return self.fc(x.relu_())

    x = torch.randn(10, 10, requires_grad=True).clone()
    # 10 rows x 10 outputs x 10 products; the input needs a gradient: 2 x 1,000 input + 2 x 1,000 weight
    for device in ("meta", "cpu"):
        counts = tf.count(InPlace(), x, device=device).total
        assert (counts.macs, counts.grad_input_flops, counts.grad_weight_flops) == (1000, 2000, 2000)


def test_nested_tensors_are_refused_with_the_reason():
    class Attention(nn.Module):
        def forward(self, q):
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    q = torch.nested.nested_tensor([torch.randn(2, 3, 8), torch.randn(2, 5, 8)], layout=torch.jagged)
    for device in ("meta", "cpu"):
        with pytest.raises(ValueError, match="nested \\(jagged\\) tensor"):
            tf.count(Attention(), q, device=device)


# -- bytes moved ---------------------------------------------------------------------------------------
class Attention(nn.Module):
    def forward(self, q):
        return torch.nn.functional.scaled_dot_product_attention(q, q, q)


class InPlaceAndViews(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        y = self.fc(x).relu_()                      # in place: reads and writes the same storage
        z = y.t().contiguous()                      # a view moves nothing; the copy reads all of y
        return z[:, :2] * 2 + x[:, :1]              # partial views: only the bytes they span


@pytest.mark.parametrize("build,shape", [
    (lambda: nn.Conv2d(3, 8, 3, padding=1), (2, 3, 8, 8)),
    (lambda: nn.Linear(16, 8), (4, 16)),
    (lambda: Attention(), (2, 3, 5, 4)),
    (lambda: nn.LayerNorm(16), (4, 16)),
    (lambda: nn.BatchNorm2d(3).eval(), (2, 3, 4, 4)),
    (lambda: nn.Sequential(nn.ReLU(inplace=True), nn.GELU(), nn.Softmax(-1)), (4, 16)),
    (lambda: InPlaceAndViews(), (6, 6)),
])
def test_bytes_moved_equal_a_brute_force_over_every_element(build, shape):
    from oracles import brute_force_bytes
    torch.manual_seed(0)
    model = build()
    x = torch.randn(shape)
    prof = tf.count(model, x, device="cpu")
    assert (prof.total.bytes_read, prof.total.bytes_written) == brute_force_bytes(model, x)


def test_a_linear_record_reads_its_input_and_weights_and_writes_its_output():
    # 4x16 float32 input (256 B), 8x16 weight (512 B), 8 bias (32 B); a 4x8 output (128 B)
    prof = tf.count(nn.Linear(16, 8), input_size=(4, 16))
    counts = prof.records[0].counts
    assert (counts.bytes_read, counts.bytes_written) == (256 + 512 + 32, 128)
