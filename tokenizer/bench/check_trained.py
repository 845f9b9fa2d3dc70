#!/usr/bin/env python3
"""Check that Hugging Face `tokenizers` encodes like dsv32 with a tokenizer.json.

    dsv32 tokenizer train --vocab-size 4096 --out /tmp/trained.json corpus.txt
    dsv32 tokenize --tokenizer /tmp/trained.json --cases sample.txt > /tmp/go_ids.json
    python3 tokenizer/bench/check_trained.py /tmp/trained.json /tmp/go_ids.json

go_ids.json is {"cases": [{"text": ..., "ids": [...]}, ...]} (the layout of
testdata/tokenizer/cases.json; `dsv32 tokenize --cases FILE` writes one case per
line of FILE). For each case the script encodes the text with
encode(text, add_special_tokens=False), compares the ids, and checks that
decode(ids, skip_special_tokens=False) gives the text back. It prints the first
mismatches and exits 1 if there is any. Works for any tokenizer.json, DeepSeek's
included (gzipped or not).
"""
import gzip
import json
import sys

from tokenizers import Tokenizer


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return Tokenizer.from_str(data.decode("utf-8"))


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    tok = load(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    bad_ids = bad_text = 0
    for i, c in enumerate(cases):
        got = tok.encode(c["text"], add_special_tokens=False).ids
        if got != c["ids"]:
            bad_ids += 1
            if bad_ids <= 5:
                print(f"case {i} {c['text'][:80]!r}:\n  hf {got[:40]}\n  go {c['ids'][:40]}")
        text = tok.decode(c["ids"], skip_special_tokens=False)
        if text != c["text"]:
            bad_text += 1
            if bad_text <= 5:
                print(f"case {i}: hf decode {text[:80]!r} != {c['text'][:80]!r}")
    print(f"{len(cases) - bad_ids}/{len(cases)} cases give the same ids; "
          f"{len(cases) - bad_text}/{len(cases)} decode back to their text")
    return 1 if bad_ids or bad_text else 0


if __name__ == "__main__":
    sys.exit(main())
