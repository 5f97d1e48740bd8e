"""Storage, card and protocol pieces of the hub on their own."""

from __future__ import annotations

import subprocess

import pytest

from peluk.serve.hub import cards, protocol
from peluk.serve.hub.storage import (Conflict, Delete, DeleteFolder, EntryNotFound, Identity, Invalid, LfsRules, Put,
                                     Storage, check_path, default_gitattributes, parse_pointer, lfs_pointer,
                                     valid_ref_name)

ME = Identity("tester")


def test_lfs_rules_agree_with_git_check_attr(tmp_path):
    text = default_gitattributes("model").decode() + "".join(
        LfsRules.line_for(p) + "\n" for p in ["big file.txt", "dir/x[1].dat", "#odd!.txt"])
    text += "docs/*.md filter=lfs diff=lfs merge=lfs -text\n*.json -filter\nkeep.bin -filter\n"
    paths = ["a.bin", "x/y/model.safetensors", "saved_model/v1/vars", "big file.txt", "big_file.txt",
             "dir/x[1].dat", "dir/x1.dat", "#odd!.txt", "docs/a.md", "docs/sub/a.md", "a.json", "keep.bin",
             "runs/events.out.tfevents.1", "notes.txt", "x.tar.gz", "model.gguf"]
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitattributes").write_text(text)
    out = subprocess.run(["git", "-C", str(repo), "check-attr", "filter", "--", *paths], capture_output=True,
                         text=True, check=True).stdout
    truth = {line.rsplit(": filter: ", 1)[0]: line.endswith(": filter: lfs") for line in out.splitlines()}
    truth = {eval(p) if p.startswith('"') else p: v for p, v in truth.items()}  # git quotes unusual names
    rules = LfsRules(text)
    assert {p: p in rules for p in paths} == truth


def test_commits_compare_and_swap_and_clashes(tmp_path):
    storage = Storage(tmp_path)
    repo = storage.create("model", "alice", "r", ME)
    head = repo.head("refs/heads/main")
    blob = repo.write_blob(b"hello")
    c1 = repo.commit("refs/heads/main", [Put("a/b.txt", blob), Put("c.txt", blob)], "one", ME)
    with pytest.raises(Conflict):
        repo.commit("refs/heads/main", [Put("d.txt", blob)], "stale", ME, parent=head)
    with pytest.raises(Invalid, match="is a file"):
        repo.commit("refs/heads/main", [Put("c.txt/x", blob)], "clash", ME)
    with pytest.raises(Invalid, match="folder"):
        repo.commit("refs/heads/main", [Put("a", blob)], "clash", ME)
    with pytest.raises(EntryNotFound, match="doesn't exist"):
        repo.commit("refs/heads/main", [Delete("nope.txt")], "missing", ME)
    c2 = repo.commit("refs/heads/main", [DeleteFolder("a/"), Put("a", blob)], "folder → file", ME, parent=c1)
    assert [e.path for e in repo.tree(c2)] == [".gitattributes", "a", "c.txt"]
    assert [c.id for c in repo.log(c2)] == [c2, c1, head]
    with pytest.raises(Invalid):
        repo.commit("refs/heads/main", [Put("../x", blob)], "escape", ME)
    big = storage.lfs.put(b"x" * 100)
    c3 = repo.commit("refs/heads/main", [Put("w.dat", repo.write_blob(lfs_pointer(big, 100)), lfs=True)], "lfs", ME)
    entry = repo.entry(c3, "w.dat")
    assert entry.lfs.oid == big and entry.size == 100 and "w.dat" in LfsRules(repo.read_file(c3, ".gitattributes").decode())
    assert subprocess.run(["git", "--git-dir", str(repo.path), "fsck", "--strict"], capture_output=True).returncode == 0


def test_small_pieces():
    assert parse_pointer(lfs_pointer("a" * 64, 12)).size == 12 and parse_pointer(b"hello") is None
    for good in ("main", "feature/x", "v1.0", "refs/pr/1"):
        assert valid_ref_name(good)
    for bad in ("", "-x", "a..b", "a b", "a~1", "HEAD@{0}", "x.lock", "a//b", "/x", "x/", ".hidden", "a:b"):
        assert not valid_ref_name(bad), bad
    for bad in ("../x", "/x", "a/.git/x", "a\\b", "a\0b", "a//b", ""):
        with pytest.raises(Invalid):
            check_path(bad)
    assert check_path("sub/dir/file name.txt") == "sub/dir/file name.txt"
    assert protocol.byte_range("bytes=2-5", 10) == (2, 6) and protocol.byte_range("bytes=-3", 10) == (7, 10)
    assert protocol.byte_range("bytes=0-3,5-6", 10) is None and protocol.byte_range(None, 10) is None
    with pytest.raises(protocol.RangeNotSatisfiable):
        protocol.byte_range("bytes=10-", 10)
    assert protocol.date(0.0) == "1970-01-01T00:00:00.000Z"
    assert protocol.ignored("logs/a.txt", "logs/\n") and protocol.ignored("x/y.pyc", "*.pyc\n!keep.pyc")
    assert not protocol.ignored("keep.pyc", "*.pyc\n!keep.pyc") and not protocol.ignored("logs", "logs/")
    assert protocol.client_uploads_lfs("unknown/None; hf_hub/0.36.2; python/3.11")
    assert not protocol.client_uploads_lfs("transformers/5.23.0; hf_hub/2.4.0; python/3.11")


def test_cards():
    readme = "---\nlicense: mit\ndate: 2024-01-02\nlanguage:\n- en\n---\n# Title\n"
    assert cards.metadata(readme) == {"license": "mit", "date": "2024-01-02", "language": ["en"]}
    assert cards.metadata("# no front matter") == {}
    assert cards.validate(readme) == ([], [])
    errors, _ = cards.validate("---\n- a list\n---\n")
    assert "mapping" in errors[0]
    errors, _ = cards.validate("---\nkey: [unclosed\n---\n")
    assert "Invalid YAML" in errors[0]
    errors, warnings = cards.validate("---\nlicense: my-own\npipeline_tag: 3\n---\n")
    assert errors == ['"pipeline_tag" must be a string, not int'] and "not a known license" in warnings[0]
    tags = cards.search_tags({"license": "mit", "pipeline_tag": "fill-mask", "datasets": ["imdb"], "language": "id"},
                             "model", ["model.safetensors"])
    assert tags == ["fill-mask", "dataset:imdb", "id", "safetensors", "license:mit"]
    assert cards.search_tags({"language": ["id"]}, "dataset", []) == ["language:id"]
