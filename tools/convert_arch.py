"""Convert original FasterSeg arch files (legacy pickles) to the project's safe format.

Usage:
    python tools/convert_arch.py SRC.pt DST.pt          # one file
    python tools/convert_arch.py SRC_DIR DST_DIR        # every arch_*.pt in SRC_DIR

The legacy files are read with a restricted unpickler (tools/utils/legacy_files.py): a file that would run
code when unpickled is refused with one sentence and nothing from it runs.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import glob  # noqa: E402

from tools.models.archfile import convert_arch  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def conversions(src, dst):
    """(source, destination) pairs for a file or a folder of arch_*.pt files."""
    if os.path.isdir(src):
        sources = sorted(glob.glob(os.path.join(src, "arch_*.pt")))
        if not sources:
            raise FileNotFoundError(f"folder {src} holds no arch_*.pt file to convert.")
        return [(path, os.path.join(dst, os.path.basename(path))) for path in sources]
    return [(src, dst)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="legacy arch file, or a folder of arch_*.pt files")
    parser.add_argument("dst", help="output file, or output folder when src is a folder")
    args = parser.parse_args(argv)
    for source, destination in conversions(args.src, args.dst):
        record = convert_arch(source, destination)
        print(f"{source} -> {destination} (arch_idx {record['arch_idx']})")


if __name__ == "__main__":
    sys.exit(run_script(main))
