"""Where the test suite finds the repository and the real-output samples (tests/fixtures/samples)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Copies of the public real outputs, each with its origin (see fixtures/samples/ORIGIN.src); the suite
# never reads outside the repository, so a fresh clone with nothing beside it passes.
SAMPLES = REPO / "tests" / "fixtures" / "samples"
TALOS_SAMPLES = SAMPLES / "talos"
K8S_SAMPLES = SAMPLES / "k8s"


def sample(relative: str, *, strip_comments: bool = True) -> str:
    """Text of a sample file; leading '#' provenance lines are dropped unless asked to keep them."""
    text = (SAMPLES / relative).read_text()
    if not strip_comments:
        return text
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)
