"""Every command line the docs show parses with the current command-line parsers.

Collected from README.md, docs/*.md and weights/MODEL_CARD.md: the lines of the ```bash / ```sh / ```
blocks that run `vidcorr`, `python -m vidcorr`, `torchrun ... -m vidcorr` or `python benchmarks/<x>.py` /
`python scripts/<x>.py` (through the script's `build_parser()`), and the prose's code spans that start so.
A concrete line is parsed by argparse as the shell would pass it (types, choices, required arguments),
nothing run. A synopsis (`[--resume]`, `crw|uvc`, `...`, `[model args]`) or a prose span is a fragment:
its sub-command words, option names and choice values are checked, not its completeness. Every option
written must be one of its parser's option strings exactly: argparse also takes a unique prefix
(`--overlay` for `--overlays`), a command that breaks once another option starts the same way. A
--recipe name must be a shipped recipe (configs/train/), as load_recipe would look it up. Options
named alone (`--overlays` in the prose, in a # comment) must be some parser's.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import importlib.util
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import torch

from vidcorr.cli import build_parser as vidcorr_parser
from vidcorr.train.recipe_files import recipe_path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "weights" / "MODEL_CARD.md"]
FENCE = re.compile(r"^\s*```(\S*)\s*$")
SHELL_FENCES = {"bash", "sh", "shell", "console", ""}
SEPARATORS = {"|", "||", "&&", ";", "&"}
ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
WRAPPERS = {"nice", "time", "nohup", "exec"}  # run the command after them
SCRIPT = re.compile(r"(benchmarks|scripts)/\w+\.py")
FLAG = re.compile(r"--?(\[no-\])?[A-Za-z][\w-]*")  # --[no-]window-first: both
# An upper-case word stands for a value (N, W.safetensors, NAME=VALUE, VIDEO_OR_FOLDER)
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(?![A-Za-z0-9])")


@dataclass(frozen=True)
class DocCommand:
    where: str  # "docs/training.md:15": the line it starts on
    program: str  # "vidcorr" or the script's path, "benchmarks/propagation.py"
    args: tuple[str, ...]
    fragment: bool  # a synopsis or a prose span: checked word by word, not parsed whole
    prose: bool = False  # a code span of the text, not a line of a shell block


# --- collecting ---------------------------------------------------------------------------------------

def _tokens(text: str) -> list[str] | None:
    """``text`` split as the shell would, `# comments` dropped; None for an unclosed quote."""
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return None


def _shell_blocks(lines: list[str]) -> Iterator[list[tuple[int, str]]]:
    """The ```bash / ```sh / ``` blocks of ``lines``, each as its (1-based line number, line)s."""
    block: list[tuple[int, str]] = []
    fence = None
    for number, line in enumerate(lines, 1):
        match = FENCE.match(line)
        if match and fence is None:
            fence, block = match.group(1), []
        elif match and not match.group(1):
            if fence in SHELL_FENCES:
                yield block
            fence = None
        elif fence is not None:
            block.append((number, line))


def _shell_lines(lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, tokens) of each logical line of the shell blocks."""
    for block in _shell_blocks(lines):
        yield from _logical_lines(block)


def _logical_lines(block: list[tuple[int, str]]) -> Iterator[tuple[int, list[str]]]:
    """Backslash continuations joined, a quoted argument spanning lines (`python -c "...`) kept whole."""
    i = 0
    while i < len(block):
        start, text = block[i]
        i += 1
        while text.rstrip().endswith("\\") and i < len(block):
            text = text.rstrip()[:-1] + " " + block[i][1]
            i += 1
        tokens, j = _tokens(text), i
        while tokens is None and j < len(block):  # an open quote: the argument goes on below
            text += "\n" + block[j][1]
            j += 1
            tokens = _tokens(text)
        if tokens is not None:  # never closed: output text, not a command; the next line is tried alone
            i = j
            yield start, tokens


def _prose_spans(lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, tokens) of the code spans outside the fenced blocks, a span broken over lines
    included (a paragraph is searched whole)."""
    paragraph: list[tuple[int, str]] = []
    fenced = False
    for number, line in [*enumerate(lines, 1), (len(lines) + 1, "")]:
        if FENCE.match(line):
            fenced = not fenced
        if fenced or FENCE.match(line) or not line.strip():
            yield from _spans_of(paragraph)
            paragraph = []
        else:
            paragraph.append((number, line))


def _spans_of(paragraph: list[tuple[int, str]]) -> Iterator[tuple[int, list[str]]]:
    if not paragraph:
        return
    text = "\n".join(line for _, line in paragraph)
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        tokens = _tokens(match.group(1).replace("\n", " "))
        # "vidcorr eval davis: stopped by SIGTERM" quotes what a command printed, not a command
        if tokens and not any(t.endswith(":") for t in tokens):
            yield paragraph[0][0] + text.count("\n", 0, match.start()), tokens


def _commands(tokens: list[str]) -> Iterator[list[str]]:
    """The commands of one line: split at `|`, `&&`, `;` ..., but not at a synopsis's `[A | B]`."""
    current: list[str] = []
    depth = 0
    for token in tokens:
        if depth == 0 and token in SEPARATORS:
            yield current
            current = []
            continue
        depth += token.count("[") - token.count("]")
        if depth == 0 and token.endswith(";"):  # `cd x; vidcorr ...`
            current.append(token[:-1])
            yield current
            current = []
        else:
            current.append(token)
    yield current


def _program(tokens: list[str]) -> tuple[str, list[str]] | None:
    """("vidcorr" or "benchmarks/<x>.py", its arguments) when ``tokens`` run one of them."""
    while tokens and (ENV_ASSIGNMENT.match(tokens[0]) or tokens[0] in WRAPPERS):
        tokens = tokens[1:]
    if not tokens:
        return None
    head, rest = Path(tokens[0]).name, tokens[1:]  # .venv/bin/vidcorr, .venv/bin/python
    if head == "vidcorr":
        return "vidcorr", rest
    if head not in ("python", "python3", "torchrun"):
        return None
    if "-m" in rest:  # python -m vidcorr, torchrun --nproc_per_node=4 -m vidcorr
        module = rest.index("-m") + 1
        return ("vidcorr", rest[module + 1:]) if rest[module:module + 1] == ["vidcorr"] else None
    if head != "torchrun" and rest and SCRIPT.fullmatch(rest[0]) and _has_parser(rest[0]):
        return rest[0], rest[1:]
    return None


def _has_parser(script: str) -> bool:
    """Whether ``script`` parses options with argparse (results_table.py reads sys.argv itself)."""
    return "ArgumentParser(" in (ROOT / script).read_text()


def _is_fragment(args: list[str]) -> bool:
    return any(c in token for token in args for c in "[]|") or "..." in args


def collect() -> list[DocCommand]:
    """The commands of every doc, in the order they are written."""
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        name = doc.relative_to(ROOT).as_posix()
        for source, prose in ((_shell_lines(lines), False), (_prose_spans(lines), True)):
            for number, tokens in source:
                for command in _commands(tokens):
                    program = _program(command)
                    if program:
                        found.append(DocCommand(f"{name}:{number}", program[0], tuple(program[1]),
                                                prose or _is_fragment(program[1]), prose))
    return found


COMMANDS = collect()


def collect_lone_options(doc: Path) -> list[tuple[int, str]]:
    """(line number, option) of the options no command line holds: in the prose's code spans that
    start with one ("`--overlays`", "`--threads 1`") and in the shell blocks' # comments."""
    lines = doc.read_text().splitlines()
    found = []
    for number, tokens in _prose_spans(lines):
        if tokens[0].startswith("--"):
            found += [(number, name) for token in tokens if FLAG.match(token.strip("[]"))
                      for name in _option_names(token.strip("[]"))]
    for block in _shell_blocks(lines):
        for number, line in block:
            comment = re.search(r"(?:^|\s)#(.*)", line)
            if comment:
                found += [(number, name) for word in re.findall(r"(?<![\w-])--[\w[\]/-]+", comment.group(1))
                          for name in _option_names(word)]
    return found


# Other programs' options the prose names: torchrun's, pytest's, the DAVIS metric case generator's
# (shared/metric-goldens) and the original papers' code (CRW's test.py, TimeCycle, UVC, STT) compared with ours.
FOREIGN_OPTIONS = {
    "--nnodes": "torchrun", "--rdzv-endpoint": "torchrun", "--monitor-interval": "torchrun", "--pdb": "pytest",
    "--verify": "make_metric_cases.py", "--videoLen": "CRW", "--cropSize": "CRW", "--topk_vis": "CRW",
    "--lamda": "TimeCycle", "--scale_size": "UVC", "--pre_num": "UVC", "--val_txt": "UVC", "--weight_decay": "STT",
}


# --- checking ------------------------------------------------------------------------------------------

@functools.cache
def _script_parser(script: str) -> argparse.ArgumentParser:
    """The script's `build_parser()`, the module imported as it would run (benchmarks/ on the path
    for its `from report import ...`), nothing run."""
    path = ROOT / script
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"_doc_command_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    assert hasattr(module, "build_parser"), f"{script} builds its parser inside main(): give it a build_parser()"
    return module.build_parser()


@functools.cache
def _vidcorr_parser() -> argparse.ArgumentParser:
    return vidcorr_parser()


def _parser(program: str) -> argparse.ArgumentParser:
    return _vidcorr_parser() if program == "vidcorr" else _script_parser(program)


def _sub_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices if actions else {}


def _option_names(word: str) -> list[str]:
    """The options a written flag stands for: "--[no-]window-first" and "--topk/--radius" are two,
    "--size=240" one."""
    flag = word.split("=", 1)[0]
    if re.fullmatch(r"--[\w-]+(/--[\w-]+)+", flag):
        return flag.split("/")
    negatable = re.fullmatch(r"--\[no-\]([\w-]+)", flag)
    return [f"--{negatable.group(1)}", f"--no-{negatable.group(1)}"] if negatable else [flag]


def _typed(action: argparse.Action, value: str):
    """``value`` as the option reads it ("1" -> 1 for --split); None where it cannot."""
    try:
        return action.type(value) if callable(action.type) else value
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        return None


def _value_problems(action: argparse.Action, value: str) -> list[str]:
    """A choice the option lacks, or a --recipe that is not shipped; "a|b" is each of a and b."""
    alternatives = value.split("|")
    if action.choices is not None:
        missing = [v for v in alternatives if _typed(action, v) not in action.choices]
        if missing and not PLACEHOLDER.match(value):
            return [f"{action.option_strings[-1]} {'|'.join(missing)}: not among its choices {sorted(action.choices)}"]
    if action.dest == "recipe" and not PLACEHOLDER.match(value):
        return [f"--recipe {v}: no such recipe (no {recipe_path(v).name} in configs/train/)"
                for v in alternatives if not v.endswith(".toml") and not recipe_path(v).is_file()]
    return []


def word_problems(program: str, args: list[str]) -> list[str]:
    """Each sub-command word, option name and option value of ``args`` against the parser that
    reads it; a synopsis's "otb|vot" is both sub-commands, its options checked on each."""
    branches = [(program, _parser(program))]
    problems: list[str] = []
    awaiting: argparse.Action | None = None  # the option the next word is the value of
    for token in args:
        word = token.strip("[]")
        if FLAG.match(word):
            awaiting = None
            for name in _option_names(word):
                for label, parser in branches:
                    action = parser._option_string_actions.get(name)
                    if action is None:
                        options = list(parser._option_string_actions)
                        close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
                        problems.append(f"`{label}` has no option {name}"
                                        + (f" (did you mean {close[0]}?)" if close else ""))
                    elif "=" in word:
                        problems += _value_problems(action, word.split("=", 1)[1])
                    elif action.nargs != 0:
                        awaiting = action
        elif awaiting is not None:
            problems += _value_problems(awaiting, word)
            awaiting = None
        elif word and word != "..." and all(_sub_commands(parser) for _, parser in branches):
            chosen = []
            for label, parser in branches:
                for name in word.split("|"):
                    if name in _sub_commands(parser):
                        chosen.append((f"{label} {name}", _sub_commands(parser)[name]))
                    else:
                        problems.append(f"`{label}` has no sub-command {name!r} "
                                        f"(it has {', '.join(_sub_commands(parser))})")
            branches = chosen or branches
            if not chosen:
                break
    return problems


def parse_problems(program: str, args: list[str]) -> list[str]:
    """argparse's own error for ``args``, as the command would print it, or none."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            _parser(program).parse_args(args)
        except SystemExit as stop:
            if stop.code:  # --help and --version exit 0
                return [stderr.getvalue().strip().splitlines()[-1]]
    return []


def problems_of(command: DocCommand) -> list[str]:
    args = list(command.args)
    parsed = [] if command.fragment else parse_problems(command.program, args)
    return parsed + word_problems(command.program, args)


@pytest.fixture(autouse=True)
def _any_gpu(monkeypatch):
    """`--device cuda` parses on a CPU-only machine: the parser checks the device exists."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_the_docs_command_parses(command):
    problems = problems_of(command)
    shown = " ".join(shlex.quote(a) for a in [command.program, *command.args])
    assert not problems, f"{command.where}: `{shown}`\n  " + "\n  ".join(problems)


@functools.cache
def _every_option() -> frozenset[str]:
    """The option strings of every vidcorr (sub-)command and of every script a doc command runs."""
    parsers = [_vidcorr_parser(), *(_script_parser(p) for p in sorted({c.program for c in COMMANDS}) if p != "vidcorr")]
    options: set[str] = set()
    while parsers:
        parser = parsers.pop()
        options |= set(parser._option_string_actions)
        parsers += _sub_commands(parser).values()
    return frozenset(options)


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_the_options_named_alone_exist(doc):
    """An option named outside a command (`--overlays` in the prose, "# --resume continues") is one
    of vidcorr's or the scripts', or another program's in FOREIGN_OPTIONS; whose cannot be told."""
    unknown = [f"{doc.relative_to(ROOT).as_posix()}:{number}: {name}" for number, name in collect_lone_options(doc)
               if name not in _every_option() and name not in FOREIGN_OPTIONS]
    assert not unknown, ("options no parser has (another program's? add it to FOREIGN_OPTIONS):\n  "
                         + "\n  ".join(unknown))


def test_the_commands_are_found():
    """The collection itself, so that a broken extractor cannot pass the tests above on nothing:
    every shell-block line that starts with one of the commands (a plain look at the text) is
    collected; synopses, continued lines and spans broken over lines are read whole."""
    starts = re.compile(r"\s*([A-Z_]+=\S*\s+)*(nice\s+)?(vidcorr\s|torchrun\s.*-m vidcorr\s|"
                        r"(\.venv/bin/)?python\s+(-m\s+vidcorr\s|benchmarks/|scripts/))")
    written = {f"{doc.relative_to(ROOT).as_posix()}:{number}" for doc in DOCS
               for block in _shell_blocks(doc.read_text().splitlines())
               for number, line in block if starts.match(line)}
    found = [c for c in COMMANDS if not c.prose]
    assert len([c for c in found if not c.fragment]) >= 85 and written <= {c.where for c in found}
    assert {c.program.split("/")[0] for c in COMMANDS} == {"vidcorr", "benchmarks", "scripts"}
    assert any(c.where.startswith("weights/MODEL_CARD.md") and not c.fragment for c in COMMANDS)
    # the README's `vidcorr train uvc ... \` + `    --run-dir runs/uvc --export ...`, one command
    assert any(c.where.startswith("README.md") and {"--autoencoder", "--export"} <= set(c.args) for c in found)
    assert any(c.fragment and not c.prose and "[--resume]" in c.args for c in COMMANDS)
    # docs/uvc.md's `vidcorr\npropagate <car-shadow frames> --mask 00000.png --preset uvc`
    assert any(c.prose and c.args[:2] == ("propagate", "<car-shadow") for c in COMMANDS)


@pytest.mark.parametrize("args, problem", [
    (["eval", "davis", "--root", "R", "--out", "O", "--overlay"], "has no option --overlay (did you mean --overlays?)"),
    (["eval", "davis", "--root", "R", "--out", "O", "--bogus"], "unrecognized arguments: --bogus"),
    (["eval", "davis", "--root", "R", "--out", "O", "--preset", "crx"], "invalid choice: 'crx'"),
    (["eval", "dvais", "--root", "R"], "invalid choice: 'dvais'"),
    (["train", "uvc", "--data", "D", "--recipe", "uvc-gpu"], "--recipe uvc-gpu: no such recipe"),
    (["propagate", "v.mp4", "--mask", "m.png"], "the following arguments are required: --out"),
])
def test_a_wrong_command_is_refused(args, problem):
    """The checks can fail: an abbreviation argparse itself accepts, an unknown option, choice,
    sub-command and recipe, a missing required option."""
    problems = problems_of(DocCommand("doc.md:1", "vidcorr", tuple(args), fragment=False))
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("args, problem", [
    (["score", "otb|vat", "--root", "ROOT"], "`vidcorr score` has no sub-command 'vat'"),
    (["score", "otb|vot", "--protocol", "vot-baseline"], "`vidcorr score otb` has no option --protocol"),
    (["eval", "otb", "[--tracker", "localise|dfc]"], "--tracker dfc: not among its choices"),
    (["eval", "jhmdb", "[--[no-]window-firs]"], "has no option --no-window-firs"),
])
def test_a_wrong_synopsis_is_refused(args, problem):
    problems = problems_of(DocCommand("doc.md:1", "vidcorr", tuple(args), fragment=True))
    assert any(problem in p for p in problems), problems


def test_a_script_command_is_parsed_by_its_own_parser():
    problems = problems_of(DocCommand("doc.md:1", "benchmarks/training.py", ("--recipe", "uvc", "--step", "3"), False))
    assert problems == ["`benchmarks/training.py` has no option --step (did you mean --steps?)"]
