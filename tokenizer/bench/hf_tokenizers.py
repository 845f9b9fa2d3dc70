#!/usr/bin/env python3
"""Encode a text file with Hugging Face `tokenizers`, one thread, and print MB/s.

The peer of `dsv32 tokenize --bench FILE` (same file, same protocol):

    dsv32 tokenize --tokenizer T.json --bench /tmp/mixed.txt   # writes 4 MB of mixed text if absent
    python3 tokenizer/bench/hf_tokenizers.py T.json /tmp/mixed.txt

Protocol: the file is cut after each newline; every line is encoded on its own
with `Tokenizer.encode(line, add_special_tokens=False)` (no encode_batch, so no
thread pool; RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false are set all the
same). A first pass starts with an empty cache; then whole passes run for at
least two seconds. Prints MB/s of wall time and MB per CPU second for both, and
the number of ids (which should equal the Go side's).

--mode batch uses encode_batch over all lines instead (still one thread, through
RAYON_NUM_THREADS=1); --mode whole encodes the file as one string.
T.json may be gzipped (testdata/tokenizer/deepseek_v32.json.gz).
"""
import argparse
import gzip
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import Tokenizer  # noqa: E402  (after the environment is set)
import tokenizers  # noqa: E402


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return Tokenizer.from_str(data.decode("utf-8"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tokenizer")
    ap.add_argument("text")
    ap.add_argument("--mode", choices=["lines", "batch", "whole"], default="lines")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()

    tok = load(args.tokenizer)
    with open(args.text, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")
    # Cut only after "\n", as the Go side does (str.splitlines would also cut
    # at \r, \x0b, \x0c, \x85, \u2028, ...).
    lines = [text]
    if args.mode != "whole":
        parts = text.split("\n")
        lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])

    def one_pass():
        if args.mode == "batch":
            return sum(len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False))
        n = 0
        for l in lines:
            n += len(tok.encode(l, add_special_tokens=False).ids)
        return n

    c0, t0 = time.process_time(), time.perf_counter()
    ids = one_pass()  # the first pass fills the tokenizer's cache
    cold_wall, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
    passes = 0
    c0, t0 = time.process_time(), time.perf_counter()
    while passes == 0 or time.perf_counter() - t0 < args.seconds:
        one_pass()
        passes += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    mb = len(raw) * passes / 1e6
    print(f"hf tokenizers {tokenizers.__version__} ({args.mode}): {args.text}, {len(raw)} bytes, "
          f"{len(lines)} lines, {ids} ids, {passes} passes")
    print(f"  first pass: {len(raw) / 1e6 / cold_wall:.2f} MB/s (wall), {len(raw) / 1e6 / cold_cpu:.2f} MB per CPU second")
    print(f"  later passes: {mb / wall:.2f} MB/s (wall), {mb / cpu:.2f} MB per CPU second")


if __name__ == "__main__":
    sys.exit(main())
