"""peluk attention (peluk/viz/cli.py), driven through its own parser (peluk/cli.py wiring is the lead's)."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from peluk.viz.cli import add_parser, cmd_attention


def _run(argv, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    assert cmd_attention(parser.parse_args(["attention", *argv])) == 0
    return capsys.readouterr().out


def test_cli_html_png_and_attributions(tiny_dir, tmp_path, capsys):
    path = str(tiny_dir("bert", "sequence-classification"))
    out = _run([path, "the cat sat", "--pair", "on the mat", "--out", str(tmp_path / "v.html"), "--json"], capsys)
    summary = json.loads(out)
    assert summary["attentions"]["encoder"][:2] == [3, 4]
    assert not re.search(r"https?://", (tmp_path / "v.html").read_text())
    pytest.importorskip("matplotlib")
    _run([path, "the cat sat", "--layer", "1", "--head", "2", "--out", str(tmp_path / "m.png")], capsys)
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    out = _run([path, "a good film", "--attributions", "--out", str(tmp_path / "w.html"), "--json"], capsys)
    assert json.loads(out)["label"] in {"NEG", "NEU", "POS"}


def test_cli_neurons_json(tiny_dir, tmp_path, capsys):
    import peluk.viz as viz

    path = str(tiny_dir("bert", "sequence-classification"))
    _run([path, "the cat sat", "--neurons", "--out", str(tmp_path / "v.json")], capsys)
    view = viz.AttentionView.load(tmp_path / "v.json")
    L, H, T, _ = view.attentions["encoder"].shape
    assert view.neurons["encoder"]["queries"].shape[:3] == (L, H, T)
    assert view.neurons["encoder"]["keys"].shape[:3] == (L, H, T)
