"""The model flags: every command that loads a model takes the same ``--separator``,
``--encoders`` and ``--device`` (cli.options.add_model_flags), and the old spellings still work
with one deprecation note on stderr."""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli import build_parser, main
from cli.options import RenamedOption, SeparatorAction
from conftest import write_tone

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ("--separator", "--encoders", "--device")
#: Which of the three flags each command takes (the others load no model of that kind).
EXPECTED: dict[str, set[str]] = {
    "train": {"--separator", "--device"},
    "evaluate": {"--separator", "--encoders", "--device"},
    "library add": {"--separator", "--encoders", "--device"},
    "library scan": {"--separator", "--encoders", "--device"},
    "library index": set(),  # builds indexes from stored vectors
    "library status": set(),
    "library repair": set(),
    "library remove": set(),
    "match": {"--separator", "--encoders", "--device"},
    "separate": {"--separator", "--device"},  # --query/--class: --qsep-model
    "remix": {"--separator", "--encoders", "--device"},  # --encoders: for --similarity
    "corpus": set(),  # synthesis only
    "multitracks": set(),
    "train-qsep": {"--device"},
    "calibrate-qsep": set(),  # CPU, the validation split
}


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser by its name, e.g. ``"library add"``."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix}{name}"
                nested = _commands(sub, f"{full} ")
                out.update(nested or {full: sub})
    return out


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {o: a for a in parser._actions for o in a.option_strings if o in (*FLAGS, "--model")}


COMMANDS = _commands(build_parser(full=True))


def test_every_command_is_listed() -> None:
    assert set(COMMANDS) == set(EXPECTED)


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_command_takes_its_model_flags(command: str) -> None:
    flags = _flags(COMMANDS[command])
    assert set(flags) - {"--model"} == EXPECTED[command]


def _same(actions: list[argparse.Action], *, ignore_default: bool = False) -> None:
    first = actions[0]
    for a in actions[1:]:
        assert type(a) is type(first) and a.choices == first.choices and a.type == first.type
        assert a.metavar == first.metavar and a.dest == first.dest and a.nargs == first.nargs
        if ignore_default:
            strip = re.compile(r"default: .*$")
            assert strip.sub("", str(a.help)) == strip.sub("", str(first.help))
        else:
            assert a.help == first.help and a.default == first.default


def test_the_flags_are_the_same_everywhere() -> None:
    by_flag: dict[str, list[argparse.Action]] = {f: [] for f in FLAGS}
    for command, parser in COMMANDS.items():
        for flag, action in _flags(parser).items():
            if flag == "--model":
                continue
            if command == "train" and action.default == argparse.SUPPRESS:
                # 'train' leaves its defaults to TrainConfig (so --config's values stand
                # unless a flag is typed): they must be the same defaults
                from training.trainer import TrainConfig

                action = copy.copy(action)
                action.default = getattr(TrainConfig(data="", out=""), action.dest)
            by_flag[flag].append(action)
    for flag, actions in by_flag.items():
        assert len(actions) == sum(flag in want for want in EXPECTED.values())
    # --separator defaults to Spleeter 2-stems, except evaluate's (the trained one): the same
    # help up to the default
    seps = by_flag["--separator"]
    assert all(isinstance(a, SeparatorAction) for a in seps)
    _same([a for a in seps if a.default == "spleeter-2stems"])
    _same(seps, ignore_default=True)
    assert COMMANDS["evaluate"]._option_string_actions["--separator"].default is None
    _same(by_flag["--encoders"])
    _same(by_flag["--device"])
    assert by_flag["--device"][0].default == "auto"


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser(argv[0]).parse_args(argv)


def test_old_model_flag_still_works_and_warns_once(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["separate", "a.wav", "-o", "out", "--model", "tiny", "--model", "tiny"])
    assert args.separator == "tiny" and not hasattr(args, "model")
    err = capsys.readouterr().err
    assert err.count("--model is deprecated; use --separator") == 1
    args = _parse(["remix", "a.wav", "b.wav", "-o", "x.wav", "--model", "tiny"])
    assert args.separator == "tiny"
    assert "crossmix: warning: --model is deprecated; use --separator\n" == capsys.readouterr().err
    # evaluate's --model named the encoders
    args = _parse(["evaluate", "--data", "d", "--model", "run/best.safetensors"])
    assert args.encoders == "run/best.safetensors" and args.separator is None
    assert "--model is deprecated; use --encoders" in capsys.readouterr().err


def test_old_separator_name_still_works_and_warns(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["train", "--data", "d", "--out", "o", "--separator", "spleeter"],
                 ["evaluate", "--data", "d", "--separator", "spleeter"]):
        assert _parse(argv).separator == "spleeter-2stems"
        err = capsys.readouterr().err
        assert "--separator spleeter is deprecated; use --separator spleeter-2stems" in err
    # the new spellings say nothing
    _parse(["train", "--data", "d", "--out", "o", "--separator", "tiny", "--device", "cpu"])
    _parse(["separate", "a.wav", "-o", "out", "--separator", "spleeter-2stems"])
    assert capsys.readouterr().err == ""


def test_old_flags_are_hidden_from_help() -> None:
    for command in ("separate", "remix", "evaluate"):
        action = COMMANDS[command]._option_string_actions["--model"]
        assert isinstance(action, RenamedOption) and action.help == argparse.SUPPRESS
        assert "--model" not in COMMANDS[command].format_help()


def test_unknown_separator_is_a_usage_error_listing_the_names(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parse(["match", "song.wav", "--separator", "spleter"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --separator" in err and "'spleter' not found: use spleeter-2stems, tiny" in err


def test_train_qsep_runs_where_the_others_do_by_default() -> None:
    assert _parse(["train-qsep", "--data", "d", "--out", "o"]).device == "auto"


def test_separate_with_the_old_flag_end_to_end(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    song = write_tone(tmp_path / "tone.wav", seconds=1.0)
    assert main(["separate", str(song), "-o", str(tmp_path / "out"), "--model", "tiny",
                 "--device", "cpu", "--no-cache"]) == 0
    out = capsys.readouterr()
    assert out.err.count("deprecated") == 1 and "tone.wav -> tone_vocals.wav" in out.out
    assert (tmp_path / "out" / "tone_vocals.wav").is_file()


def test_the_flags_module_imports_no_model() -> None:
    code = "import sys\nimport cli.options\nprint('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def _readme_commands() -> list[str]:
    """The README's command summary: one entry per ``crossmix ...`` line, with its continuation lines."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("\ncrossmix                       open the app"):]
    block = block[:block.index("```")]
    entries: list[str] = []
    for line in block.strip("\n").splitlines():
        if line.startswith("crossmix"):
            entries.append(line)
        else:
            entries[-1] += " " + line.strip()
    return entries


def test_the_readme_lists_every_command_with_flags_that_exist() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"^(<<<<<<<|=======|>>>>>>>)", text, re.M), "merge-conflict markers in the README"
    named: set[str] = set()
    for entry in _readme_commands():
        words = entry.split()
        if words[1] in ("open", "SONG"):
            continue  # 'crossmix' and 'crossmix SONG': the app
        command = words[1]
        subs = words[2].split("|") if command == "library" else [""]
        parsers = [COMMANDS[f"{command} {s}".strip()] for s in subs]
        named.update(f"{command} {s}".strip() for s in subs)
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", entry):
            assert any(flag in p._option_string_actions for p in parsers), (entry, flag)
    # every command but the library's maintenance ones has a line
    assert {c for c in COMMANDS if not c.startswith("library ")} <= named | {"library"}
