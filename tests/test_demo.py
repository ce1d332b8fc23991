"""The end-to-end demo on a tiny budget: every stage runs and the report shows learning."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from cdan.cli import main


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.h2 = [], []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs).get("src", ""))
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data.strip())
            self._in_h2 = False


def test_demo_tiny_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--minutes", "1.5", "--num", "60", "--preset", "tiny", "--no-progress"]
    assert main([*args, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["train"]["step"] > 0 and s["dataset"]["faces"] == 60
    assert s["comparison"]["psnr"]["improved"], s["comparison"]["psnr"]
    assert s["metrics"]["last"]["ed"] is not None and s["metrics"]["last"]["acd"] is not None
    assert s["metrics"]["last"]["fid"] is None and "fid" in s["metrics"]["last"]["unavailable"]
    assert s["prepare_check"].get("faces_found", 0) > 0
    page = _Collect()
    page.feed((out / "report.html").read_text())
    assert "Metrics: first vs last checkpoint" in page.h2 and "Global expression patterns" in page.h2
    assert len(page.imgs) >= 4
    for name in ("patterns/patterns.png", "figures/rec_last.png", "figures/loss.png"):
        assert (out / name).is_file()
    n_rec = len(list((out / "rec_last").glob("*_xrec.png")))
    assert n_rec == s["dataset"]["test"]
    # A second run resumes: nothing is retrained.
    assert main([*args, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["train"]["step"] == s["train"]["step"] and again["timings_s"]["train"] < 5
