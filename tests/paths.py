"""Where the test suite finds the repository and the shared reference samples."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "reference" / "samples"
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
