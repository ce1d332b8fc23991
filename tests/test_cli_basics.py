from __future__ import annotations

import subprocess
import sys

import torch

from cdan.cli import main
from cdan.models import build_model


def test_help_lists_commands(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "convert-official" in err


def test_python_dash_m_runs():
    out = subprocess.run(
        [sys.executable, "-m", "cdan", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("cdan ")


def test_convert_official_cli_user_error_is_one_line(tmp_path, capsys):
    code = main(["convert-official", str(tmp_path / "nope.pth"), str(tmp_path / "o.safetensors")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not found" in err


def test_convert_official_cli(tmp_path, capsys):
    torch.manual_seed(0)
    sd = build_model("paper").state_dict()
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "CDAN.pth")
    assert (
        main(["convert-official", str(tmp_path / "CDAN.pth"), str(tmp_path / "c.safetensors"), "--json"]) == 0
    )
    assert '"parameters"' in capsys.readouterr().out
