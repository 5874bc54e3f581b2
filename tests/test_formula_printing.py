import pytest
import torch

from evoprune.formula import OPERATORS, compile_formula, parse_formula, to_latex, to_python_source, to_text

FORMULAS = ["abs(W)*X", "(rownorm(abs(W)) + colnorm(abs(W)))*X**0.5", "W**2*mms(G)", "div(W, X) - zscore(G)**-2",
            "log(abs(W)*X) + exp(G) - tanh(Hinv)", "sqrt(W)*pow(G, 1.5) + pow(X, -0.5)", "mul(sqr(W), W) + W**-3",
            "neg(W) + 2.5*colnorm(X) - rownorm(Hinv)", "div(W, W - W) + div(1, X)", "mms(2) + W", "1e38*W",
            "div(log(sqrt(abs(W))), mms(zscore(G)))**-1", "exp(exp(exp(W)))*sub(W, G)"]


def _leaves(kind: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    if kind == "random":
        return {"W": torch.randn(6, 9, generator=gen), "X": torch.rand(1, 9, generator=gen),
                "G": torch.rand(6, 9, generator=gen), "Hinv": torch.rand(1, 9, generator=gen)}
    w = torch.zeros(6, 9)
    w[0, :4] = torch.tensor([1e30, -1e30, 1e-30, -3.0])
    return {"W": w, "X": torch.zeros(1, 9), "G": torch.ones(6, 9), "Hinv": torch.full((1, 9), 1e-20)}


def test_every_operator_is_exercised_by_the_printer_tests():
    used = {name for text in FORMULAS for name in OPERATORS if name + "(" in text}
    assert used | {"add", "sub", "mul", "neg", "pow", "sqr", "abs"} >= set(OPERATORS)


@pytest.mark.parametrize("text", FORMULAS)
@pytest.mark.parametrize("kind", ["random", "edge"])
def test_python_source_computes_exactly_what_compile_computes(text, kind):
    expr = parse_formula(text)
    source = to_python_source(expr)
    assert "evoprune" not in source and source.startswith("import torch")
    namespace: dict = {}
    exec(compile(source, "<formula>", "exec"), namespace)  # noqa: S102 -- our own generated code
    leaves = _leaves(kind)
    got = namespace["score"](**leaves)
    want = compile_formula(expr)(leaves)
    assert got.dtype == torch.float32 and got.shape == leaves["W"].shape
    assert torch.equal(got.nan_to_num(), want.nan_to_num()), (text, got, want)


def test_latex_and_text():
    ria = parse_formula("(rownorm(abs(W)) + colnorm(abs(W)))*X**0.5")
    assert r"\operatorname{rownorm}\left(\left|{W}\right|\right)" in to_latex(ria)
    assert to_latex(parse_formula("div(W, Hinv)")) == r"\frac{W}{H^{-1}}"
    assert to_text(ria) == "X^0.5·(colnorm(|W|) + rownorm(|W|))"
    assert to_latex(parse_formula("log(X)")) == r"\log\left|X\right|"
