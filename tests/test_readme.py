"""README.md's commands are the contract with a new user; CI must run the same test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    test_command = ci_lines[-1]
    assert "pytest" in test_command
    assert f"\n{test_command}\n" in readme


def test_readme_first_command_runs_the_example_crawl() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "crawl run examples/bookstore.py" in readme
    assert (ROOT / "examples" / "bookstore.py").is_file()
